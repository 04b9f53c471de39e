"""Training a JEPA world model on reward-free episodes, with checkpoints that resume and diagnostics.

One checkpoint file holds everything: the model (encoder, predictor, probe),
the optimiser, the step, the sampler's random state and the metric history, so
`train(...)` on an existing checkpoint carries on where it stopped. Metrics go
to `<checkpoint>.metrics.csv` and a plot to `<checkpoint>.png`.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from amiagent.errors import ConfigError
from amiagent.learning.checkpoints import load_payload, save_atomic
from amiagent.learning.data import Episodes, load_episodes, world_params
from amiagent.learning.jepa import JEPA, JEPAConfig, Normalizer
from amiagent.learning.regularizers import effective_rank

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "amiagent.jepa"


@dataclass(frozen=True)
class TrainConfig:
    """How to train. `steps`: optimiser steps in all (a resumed run trains up to this count).
    `batch`: windows per step. `lr`, `weight_decay`: AdamW. `val_fraction`: episodes held out.
    `eval_every` / `checkpoint_every`: steps between validations / checkpoints.
    `probe_steps`: refit the probe on the final, frozen encoder (0: don't): a linear probe is solved
    by least squares on up to 8192 training latents, a hidden-layer one trained this many steps.
    `max_minutes`: the whole run's wall-clock budget, the final probe fit and save included: the
    steps stop early enough for them (an estimate from the validations timed so far); 0: no limit.
    A run the budget stops early depends on the machine's speed and load (`TrainResult.stopped_by_time`).
    `threads`: torch threads while training (0: torch's default, one per core). `seed`: initialisation
    and sampling. The same data, settings, seed and thread count give the same model bit for bit;
    another thread count sums in another order and gives another model.
    """

    steps: int = 2000
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    eval_every: int = 100
    checkpoint_every: int = 200
    probe_steps: int = 300
    max_minutes: float = 0.0
    threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 2 or self.eval_every < 1 or self.checkpoint_every < 1:
            raise ConfigError(f"train: steps >= 1, batch >= 2, eval_every and checkpoint_every >= 1 required, got {self}")
        if not (self.lr > 0 and self.weight_decay >= 0 and 0 <= self.val_fraction < 1 and self.probe_steps >= 0
                and self.max_minutes >= 0 and self.threads >= 0):
            raise ConfigError(f"train: lr > 0, weight_decay >= 0, val_fraction in [0, 1), probe_steps, "
                              f"max_minutes, threads >= 0 required, got {self}")


@dataclass(frozen=True)
class TrainResult:
    """What a training run ends with: the checkpoint, the last validation figures and the time spent."""

    checkpoint: Path
    steps: int
    seconds: float
    final: dict
    history: list
    stopped_by_time: bool = False
    """`max_minutes` ended the run before `steps`: another run of the same command may stop elsewhere."""


FINISH_VALIDATIONS = 10
"""The work after the last step (two validations, the probe's 8192-frame encoding, saving), in validations."""


def train(data: str | Path, checkpoint: str | Path, model_cfg: JEPAConfig, cfg: TrainConfig,
          progress: Callable[[int, int, dict], None] | None = None, resume: bool = True) -> TrainResult:
    """Train (or carry on training) the JEPA of `model_cfg` on `data` into `checkpoint`.

    `progress(step, steps, figures)` is called after every step. With
    `resume=False` an existing checkpoint is overwritten. Training runs with torch's deterministic
    algorithms and `cfg.threads` threads; the caller's settings are restored afterwards.
    """
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.use_deterministic_algorithms(True)
        return _train(data, checkpoint, model_cfg, cfg, progress, resume)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(data: str | Path, checkpoint: str | Path, model_cfg: JEPAConfig, cfg: TrainConfig,
           progress: Callable[[int, int, dict], None] | None, resume: bool) -> TrainResult:
    started = time.perf_counter()
    checkpoint = Path(checkpoint)
    episodes = load_episodes(data)
    meta = episodes.meta
    if int(meta.get("image_size", model_cfg.image_size)) != model_cfg.image_size:
        raise ConfigError(f"the data's frames are {meta.get('image_size')} px but image_size is {model_cfg.image_size}")
    train_eps, val_eps = episodes.split(cfg.val_fraction)
    train_rows = torch.from_numpy(episodes.windows(train_eps, model_cfg.horizon, model_cfg.stride))
    val_rows = torch.from_numpy(episodes.windows(val_eps if len(val_eps) else train_eps, model_cfg.horizon,
                                                 model_cfg.stride))
    torch.manual_seed(cfg.seed)
    model = JEPA(model_cfg, episodes.actions.shape[1], episodes.states.shape[1], _normalizer(episodes, model_cfg))
    _set_probe_scale(model, episodes)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    step, history = 0, []
    if resume and checkpoint.exists():
        saved = load_checkpoint(checkpoint)
        if saved["config"] != model_cfg.as_dict():
            raise ConfigError(f"{checkpoint} was trained with other model settings: {saved['config']}; "
                              "train into another checkpoint path, or pass resume=false to start over")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        step, history = int(saved["step"]), list(saved["history"])
        log.info("resuming %s at step %d of %d", checkpoint, step, cfg.steps)
    val_batch = val_rows[torch.randperm(len(val_rows), generator=torch.Generator().manual_seed(1))[:512]]
    info = _info(episodes, data, cfg)
    deadline = started + cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    recent: list[dict] = []
    finish_s = 0.0  # what the run does after its last step, estimated from the validations so far
    model.train()
    while step < cfg.steps and time.perf_counter() < deadline - finish_s:
        rows = train_rows[torch.randint(len(train_rows), (cfg.batch,), generator=generator)]
        frames, states, actions = episodes.batch(rows, model_cfg.horizon, model_cfg.stride)
        loss, parts = model.loss(frames, states, actions, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        model.update_target()
        step += 1
        recent.append(parts)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            timed = time.perf_counter()
            figures = validate(model, episodes, val_batch)
            # the finish validates twice and encodes up to 8192 frames for the probe: about 10 validations' work
            finish_s = max(finish_s, FINISH_VALIDATIONS * (time.perf_counter() - timed))
            row = {"step": step, "seconds": time.perf_counter() - started,
                   **{f"train_{k}": float(np.mean([r[k] for r in recent])) for k in recent[0]}, **figures}
            history.append(row)
            recent = []
            log.info("step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "step"))
        if step % cfg.checkpoint_every == 0:
            save_checkpoint(checkpoint, model, optimizer, generator, step, history, info)
        if progress is not None:
            progress(step, cfg.steps, parts)
    stopped_by_time = step < cfg.steps
    if stopped_by_time:
        log.warning("%s: max_minutes=%g stopped training at step %d of %d; the model depends on this machine's "
                    "speed and load (max_minutes=0 lets the steps decide)", checkpoint, cfg.max_minutes, step,
                    cfg.steps)
    if recent:  # stopped by the time limit between validations
        history.append({"step": step, "seconds": time.perf_counter() - started,
                        **{f"train_{k}": float(np.mean([r[k] for r in recent])) for k in recent[0]},
                        **validate(model, episodes, val_batch)})
    fit_probe(model, episodes, train_rows, cfg)
    final = {"step": step, "seconds": time.perf_counter() - started, **validate(model, episodes, val_batch)}
    history.append({**history[-1], **final} if history else final)
    save_checkpoint(checkpoint, model, optimizer, generator, step, history, info)
    write_metrics(checkpoint, history)
    return TrainResult(checkpoint, step, time.perf_counter() - started, final, history, stopped_by_time)


@torch.no_grad()
def validate(model: JEPA, episodes: Episodes, rows: torch.Tensor) -> dict[str, float]:
    """Held-out figures: prediction error (and the copy-the-last-latent baseline), collapse diagnostics, probe error."""
    model.eval()
    cfg = model.cfg
    frames, states, actions = episodes.batch(rows, cfg.horizon, cfg.stride)
    b, k1 = frames.shape[:2]
    z = model.encode(frames.reshape(b * k1, *frames.shape[2:]), states.reshape(b * k1, -1)).reshape(b, k1, -1)
    current, errors = z[:, 0], []
    for k in range(k1 - 1):
        current = model.step(current, actions[:, k])
        errors.append((current - z[:, k + 1]).pow(2).mean())
    flat = z.reshape(b * k1, -1)
    std = flat[:, :cfg.latent_dim].std(dim=0)  # the image latent: what the regulariser keeps from collapsing
    probe = model.probe(flat)
    truth = states.reshape(b * k1, -1)
    err = probe - truth
    out = {
        "val_prediction": float(torch.stack(errors).mean()),
        "val_copy_baseline": float((z[:, 1:] - z[:, :1]).pow(2).mean()),
        "val_std_min": float(std.min()), "val_std_median": float(std.median()),
        "val_effective_rank": effective_rank(flat[:, :cfg.latent_dim]),
        "val_probe_position_rmse": float(err[:, :2].pow(2).sum(dim=1).mean().sqrt()),
    }
    if truth.shape[1] >= 4:
        out["val_probe_velocity_rmse"] = float(err[:, 2:4].pow(2).sum(dim=1).mean().sqrt())
    model.train()
    return out


def fit_probe(model: JEPA, episodes: Episodes, rows: torch.Tensor, cfg: TrainConfig) -> None:
    """Fit the probe on the final encoder's latents (the encoder moved while the probe learned)."""
    if cfg.probe_steps == 0:
        return
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    sample = rows[torch.randperm(len(rows), generator=generator)[:8192]]
    with torch.no_grad():
        model.eval()
        frames, states = episodes.frames[sample], episodes.states[sample]
        z = torch.cat([model.encode(frames[i:i + 512], states[i:i + 512]) for i in range(0, len(sample), 512)])
        model.train()
    target = (states - model.probe.mean) / model.probe.scale
    if isinstance(model.probe.net, nn.Linear):  # least squares: exact, where a few hundred SGD steps were not
        solve_linear_probe(model.probe.net, z, target)
        return
    optimizer = torch.optim.AdamW(model.probe.parameters(), lr=cfg.lr)
    for _ in range(cfg.probe_steps):
        pick = torch.randint(len(z), (256,), generator=generator)
        loss = ((model.probe(z[pick]) - states[pick]) / model.probe.scale).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def solve_linear_probe(layer: nn.Linear, z: torch.Tensor, target: torch.Tensor, ridge: float = 1e-4) -> None:
    """Set `layer` to the ridge least-squares map from latents `z` (N, D) to `target` (N, S)."""
    mean = z.mean(dim=0)
    x = (z - mean).double()
    gram = x.T @ x / len(x) + ridge * torch.eye(x.shape[1], dtype=torch.float64)
    weight = torch.linalg.solve(gram, x.T @ (target.double() - target.double().mean(dim=0)) / len(x)).T
    layer.weight.copy_(weight.float())
    layer.bias.copy_((target.mean(dim=0) - weight.float() @ mean))


def _normalizer(episodes: Episodes, cfg: JEPAConfig) -> Normalizer:
    high = episodes.meta.get("action_high")
    action_scale = torch.tensor(high, dtype=torch.float32) if high is not None else \
        episodes.actions.abs().amax(dim=0).clamp_min(1e-6)
    dims = list(cfg.proprio_dims)
    if dims and max(dims) >= episodes.states.shape[1]:
        raise ConfigError(f"proprio_dims {dims} exceed the data's state size {episodes.states.shape[1]}")
    proprio = episodes.states[:, dims]
    return Normalizer(action_scale, proprio.mean(dim=0), proprio.std(dim=0).clamp_min(1e-3))


def _set_probe_scale(model: JEPA, episodes: Episodes) -> None:
    model.probe.mean.copy_(episodes.states.mean(dim=0))
    model.probe.scale.copy_(episodes.states.std(dim=0).clamp_min(1e-3))


def _info(episodes: Episodes, data: str | Path, cfg: TrainConfig) -> dict:
    meta = episodes.meta
    return {
        "data": str(data), "world": meta.get("world", ""), "world_params": world_params(meta),
        "dt": float(meta.get("control_dt", 0.1)), "state_names": list(meta.get("state_names", [])),
        "action_low": [float(v) for v in meta.get("action_low", [])],
        "action_high": [float(v) for v in meta.get("action_high", [])],
        "episodes": int(episodes.count), "frames": int(len(episodes.frames)), "train_config": asdict(cfg),
        "threads": torch.get_num_threads(), "torch": str(torch.__version__),  # with the seed: what the floats depend on
    }


def save_checkpoint(path: Path, model: JEPA, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                    step: int, history: list, info: dict) -> None:
    """Write the checkpoint atomically (a crash mid-write leaves the previous one intact)."""
    payload = {
        "format": CHECKPOINT_FORMAT, "version": 1, "config": model.cfg.as_dict(),
        "action_dim": model.action_dim, "state_dim": model.state_dim,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
        "step": step, "history": history, "info": info,
    }
    save_atomic(payload, path)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's contents, read with `weights_only=True` (tensors and plain values; no code runs)."""
    return load_payload(path, CHECKPOINT_FORMAT,
                        f"no JEPA checkpoint at {path}: train one with `amiagent train world_model=jepa data=...`",
                        f"{path} is not an amiagent JEPA checkpoint")


def load_model(path: str | Path) -> tuple[JEPA, dict]:
    """The trained model of a checkpoint, in eval mode, and the checkpoint's info."""
    saved = load_checkpoint(path)
    cfg = JEPAConfig.from_dict(saved["config"])
    zeros = torch.zeros(saved["action_dim"])
    norm = Normalizer(zeros + 1, torch.zeros(len(cfg.proprio_dims)), torch.ones(len(cfg.proprio_dims)))
    model = JEPA(cfg, int(saved["action_dim"]), int(saved["state_dim"]), norm)
    model.load_state_dict(saved["model"])
    model.eval().requires_grad_(False)
    return model, {**saved["info"], "step": saved["step"], "history": saved["history"]}


def write_metrics(checkpoint: Path, history: list[dict]) -> tuple[Path, Path | None]:
    """`<checkpoint>.metrics.csv` and, with matplotlib, `<checkpoint>.png`: losses, collapse diagnostics, probe."""
    csv_path = checkpoint.with_suffix(".metrics.csv")
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "step", k))
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    try:
        from amiagent.learning.plots import plot_training
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return csv_path, None
    return csv_path, plot_training(history, checkpoint.with_suffix(".png"))


_SHARED: dict[tuple[str, int], tuple[JEPA, dict]] = {}


def shared_model(path: str | Path) -> tuple[JEPA, dict]:
    """`load_model(path)`, loaded once per process and file version: perception and world model share it."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.exists():
        raise ConfigError(f"no JEPA checkpoint at {resolved}: train one with "
                          "`amiagent train world_model=jepa data=... out=...`")
    key = (str(resolved), resolved.stat().st_mtime_ns)
    if key not in _SHARED:
        _SHARED[key] = load_model(resolved)
    return _SHARED[key]
