"""The same training command gives the same model: the JEPA is trained with torch's deterministic algorithms
and a fixed thread count, so data, settings, seed and threads decide every weight; a time cap that stops a
run early is reported as such (that run depends on the machine's speed)."""

from __future__ import annotations

import logging

import pytest
import torch

from amiagent.learning.jepa import JEPAConfig
from amiagent.learning.train import TrainConfig, load_checkpoint, train
from tests.conftest import TINY_MODEL

SETTINGS = dict(steps=30, batch=16, eval_every=10, checkpoint_every=10, probe_steps=20, threads=2)


def _weights_and_metrics(path):
    saved = load_checkpoint(path)
    metrics = [{k: v for k, v in row.items() if k != "seconds"} for row in saved["history"]]
    return saved["model"], metrics, saved["info"]


def test_the_same_training_twice_gives_the_same_model_bit_for_bit(tiny_episodes, tmp_path):
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    runs = []
    for name in ("a.pt", "b.pt"):
        result = train(tiny_episodes, tmp_path / name, JEPAConfig(**TINY_MODEL), TrainConfig(**SETTINGS), resume=False)
        assert result.steps == 30 and not result.stopped_by_time
        runs.append(_weights_and_metrics(tmp_path / name))
    (first, metrics_a, info_a), (second, metrics_b, info_b) = runs
    assert first.keys() == second.keys()
    assert [k for k in first if not torch.equal(first[k], second[k])] == []
    assert metrics_a == metrics_b  # every held-out figure, to the last bit
    assert info_a["threads"] == info_b["threads"] == 2 and info_a["torch"] == torch.__version__
    # the caller's settings are back
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, deterministic)


def test_another_training_seed_gives_another_model(tiny_episodes, tmp_path):
    """What `bench jepa --train-seeds` spreads over: the seed reaches the initial weights and the sampling."""
    for seed in (0, 1):
        train(tiny_episodes, tmp_path / f"s{seed}.pt", JEPAConfig(**TINY_MODEL),
              TrainConfig(**{**SETTINGS, "steps": 10, "seed": seed}), resume=False)
    a, _, _ = _weights_and_metrics(tmp_path / "s0.pt")
    b, _, _ = _weights_and_metrics(tmp_path / "s1.pt")
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def test_a_time_cap_that_stops_training_early_says_so(tiny_episodes, tmp_path, caplog):
    # 1 s of budget against 100,000 steps of about 20 ms each: the cap, not the steps, ends this run
    cfg = TrainConfig(**{**SETTINGS, "steps": 100_000, "max_minutes": 1.0 / 60})
    with caplog.at_level(logging.WARNING, logger="amiagent.learning.train"):
        result = train(tiny_episodes, tmp_path / "capped.pt", JEPAConfig(**TINY_MODEL), cfg, resume=False)
    assert result.stopped_by_time and 1 <= result.steps < 100_000
    assert load_checkpoint(tmp_path / "capped.pt")["step"] == result.steps
    assert any("stopped training at step" in r.getMessage() and "depends on this machine" in r.getMessage()
               for r in caplog.records)
