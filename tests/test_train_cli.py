"""`amiagent train` from the command line: a checkpoint that loads and resumes, and the time cap.

The runs go through a child process (`python -m amiagent.cli`, as `amiagent` runs) on the
shared `tiny_episodes`, with the tiny model of the other learning tests; what is checked is
what the command records (steps, history, settings), never how long it took.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from amiagent.learning.data import load_episodes
from amiagent.learning.train import load_checkpoint, load_model
from tests.conftest import TINY_MODEL

AMIAGENT = [sys.executable, "-m", "amiagent.cli"]
TINY = [f"world_model.model.{key}={list(value) if isinstance(value, tuple) else value}".replace(" ", "")
        for key, value in TINY_MODEL.items()]
"""`TINY_MODEL` as Hydra overrides of agents/world_model/jepa.yaml."""


def _train(data: Path, out: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*AMIAGENT, "train", "world_model=jepa", f"data={data}", f"out={out}", "progress=false",
                           *TINY, "world_model.train.batch=16", "world_model.train.threads=1", *overrides],
                          capture_output=True, text=True, timeout=110, env=env)


def _probe_fits_better_than_the_mean(checkpoint: Path, data: Path) -> None:
    """The probe was solved on the final encoder: on the training frames it was fitted to, each of x and y
    is read with less error than their mean gives (least squares with an intercept guarantees it)."""
    model, info = load_model(checkpoint)
    episodes = load_episodes(data)
    train_eps, _ = episodes.split(info["train_config"]["val_fraction"])
    rows = torch.from_numpy(episodes.windows(train_eps, model.cfg.horizon, model.cfg.stride))
    assert len(rows) <= 8192  # all of them went into the fit
    with torch.no_grad():
        z = model.encode(episodes.frames[rows], episodes.states[rows])
        read = model.probe(z)
    truth = episodes.states[rows]
    assert torch.isfinite(z).all() and torch.isfinite(read).all()
    error = (read[:, :2] - truth[:, :2]).pow(2).mean(dim=0)
    spread = truth[:, :2].var(dim=0, unbiased=False)
    assert (error < spread).all(), (error, spread)


def test_train_writes_a_checkpoint_that_loads_and_resumes_up_to_the_new_step_count(tiny_episodes, tmp_path):
    out = tmp_path / "m.pt"
    common = ("world_model.train.eval_every=2", "world_model.train.checkpoint_every=2",
              "world_model.train.max_minutes=0")
    first = _train(tiny_episodes, out, "world_model.train.steps=4", *common)
    assert first.returncode == 0, first.stderr
    assert f"{out}: 4 steps in" in first.stdout and "probe position RMSE" in first.stdout
    saved = load_checkpoint(out)
    assert saved["step"] == 4 and [row["step"] for row in saved["history"]] == [2, 4, 4]  # two evals, the final
    assert out.with_suffix(".metrics.csv").exists() and out.with_suffix(".png").exists()
    again = _train(tiny_episodes, out, "world_model.train.steps=6", *common)
    assert again.returncode == 0, again.stderr
    resumed = load_checkpoint(out)
    assert resumed["step"] == 6 and resumed["history"][:3] == saved["history"]  # carried on, not restarted
    assert resumed["config"] == saved["config"]
    _probe_fits_better_than_the_mean(out, tiny_episodes)


def test_the_time_cap_stops_training_early_and_still_saves_a_checkpoint_with_a_probe(tiny_episodes, tmp_path):
    """A cap of 6 ms with steps a run could never finish within it: whatever this machine manages in that time
    (often no step at all), the run stops far short of its step count, fits the probe and saves."""
    out, steps = tmp_path / "capped.pt", 1_000_000
    proc = _train(tiny_episodes, out, f"world_model.train.steps={steps}", "world_model.train.max_minutes=0.0001",
                  "world_model.train.eval_every=100000", "world_model.train.checkpoint_every=100000")
    assert proc.returncode == 0, proc.stderr
    saved = load_checkpoint(out)
    assert saved["step"] < steps
    assert saved["info"]["train_config"]["max_minutes"] == 0.0001 and saved["info"]["train_config"]["steps"] == steps
    last = saved["history"][-1]
    assert last["step"] == saved["step"]
    assert all(np.isfinite(last[key]) for key in ("val_prediction", "val_effective_rank", "val_probe_position_rmse"))
    assert f"{out}: {saved['step']} steps in" in proc.stdout
    _probe_fits_better_than_the_mean(out, tiny_episodes)


def test_train_refuses_a_missing_data_file_and_names_the_collect_command(tmp_path, capsys):
    from amiagent.cli import main

    assert main(["train", "world_model=jepa", f"data={tmp_path / 'nowhere.h5'}", f"out={tmp_path / 'm.pt'}"]) == 2
    out = capsys.readouterr().out
    assert "no data file at" in out and "amiagent collect" in out
    assert not (tmp_path / "m.pt").exists()
