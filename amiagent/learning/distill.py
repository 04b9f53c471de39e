"""Distilling Mode 2 into Mode 1: record the planner's plans, fit a policy to them by behaviour cloning.

Collection (`amiagent.learning.demos`) records the planner's plans, with noise
injection and DAgger rounds widening the states they cover.

Training fits `PolicyNet` to the plans' first `steps` actions (mean squared
error in units of the action half-range), with a validation split by episode
(the loss on held-out episodes is reported; `keep="best"` keeps the weights of
the epoch where it is lowest rather than the last ones). The
checkpoint holds the config, normalisation and bounds; `<out>.metrics.csv` and
`<out>.png` show the loss per epoch of the last fit.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from amiagent.errors import ConfigError
from amiagent.learning.demos import Demonstrations, collect_plans
from amiagent.learning.policy import PolicyConfig, PolicyNet, save_policy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    """How to distil.

    Collection: `episodes` seeded Mode-2 episodes from `seed` (episode i uses
    seed + i); `noise`: std of the perturbation of each sent action, as a
    fraction of the action half-range (0: none); then `dagger_rounds` rounds of
    `dagger_episodes` episodes each driven by the policy fitted so far (seeds
    following on). Policy: `steps` actions per output, `zones` nearest keep-out
    zones seen within `sense` m, `hidden` x `layers` MLP. Training (after every round): `epochs`
    over the data in minibatches of `batch`, AdamW `lr` and `weight_decay`,
    `val_fraction` of the episodes held out, `keep` which epoch's weights
    (the last, or the best on validation), `train_seed` for initialisation,
    split and shuffling.
    """

    episodes: int = 40
    seed: int = 1000
    noise: float = 0.3
    dagger_rounds: int = 4
    dagger_episodes: int = 10
    steps: int = 8
    zones: int = 3
    sense: float = 2.0
    hidden: int = 128
    layers: int = 2
    epochs: int = 100
    batch: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    keep: str = "last"
    """"best": the weights of the epoch with the lowest validation loss; "last": those of the last epoch."""
    train_seed: int = 0

    def __post_init__(self) -> None:
        for name, minimum in (("episodes", 1), ("seed", 0), ("dagger_rounds", 0), ("dagger_episodes", 1),
                              ("epochs", 1), ("batch", 2), ("train_seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"distill.{name} must be an integer >= {minimum}, got {value!r}")
        for name in ("noise", "lr", "weight_decay", "val_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"distill.{name} must be a number, got {value!r}")
        if self.noise < 0 or self.lr <= 0 or self.weight_decay < 0 or not 0 <= self.val_fraction < 1:
            raise ConfigError(f"distill: noise >= 0, lr > 0, weight_decay >= 0 and val_fraction in [0, 1) "
                              f"required, got noise={self.noise}, lr={self.lr}, weight_decay={self.weight_decay}, "
                              f"val_fraction={self.val_fraction}")
        if self.keep not in ("best", "last"):
            raise ConfigError(f"distill.keep must be 'best' or 'last', got {self.keep!r}")
        self.policy_config(4, 2)  # the network's sizes are checked at launch too

    @property
    def total_episodes(self) -> int:
        """Episodes recorded over all rounds."""
        return self.episodes + self.dagger_rounds * self.dagger_episodes

    def round_seeds(self, round_: int) -> list[int]:
        """Seeds of round `round_`: 0 the planner's own episodes, 1.. the DAgger rounds (seeds follow on)."""
        if round_ == 0:
            return list(range(self.seed, self.seed + self.episodes))
        first = self.seed + self.episodes + (round_ - 1) * self.dagger_episodes
        return list(range(first, first + self.dagger_episodes))

    def policy_config(self, state_dim: int, action_dim: int) -> PolicyConfig:
        """The network shape for a world of `state_dim` D and `action_dim` A."""
        return PolicyConfig(state_dim=state_dim, action_dim=action_dim, steps=self.steps, zones=self.zones,
                            sense=self.sense, hidden=self.hidden, layers=self.layers)

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Any] | None) -> DistillConfig:
        """From the `distill` section of a config; unknown keys fail with the valid ones."""
        from amiagent.config import check_keys

        return cls(**check_keys("distill", spec, {f.name for f in dataclasses.fields(cls)}))


@dataclass(frozen=True)
class DistillResult:
    """What distillation ends with: the checkpoint, the last fit's loss history and kept epoch, data sizes,
    one summary per round (episodes, plans, how the driving policy fared) and the time spent (s)."""

    checkpoint: Path
    history: list[dict]
    kept_epoch: int
    samples: int
    train_episodes: int
    val_episodes: int
    rounds: list[dict]
    collect_s: float
    train_s: float


def split_episodes(count: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Episode indices for training and validation: a seeded shuffle, at least one of each when count >= 2."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = 0 if val_fraction == 0 or count < 2 else min(count - 1, max(1, round(val_fraction * count)))
    return sorted(order[n_val:]), sorted(order[:n_val])


def fit_policy(demos: Demonstrations, cfg: DistillConfig, out: str | Path,
               on_epoch: Callable[[int, dict], None] | None = None, info: Mapping[str, Any] | None = None
               ) -> DistillResult:
    """Behaviour cloning of `demos` into a PolicyNet, saved at `out` with its metrics and loss plot.

    `on_epoch(epoch, figures)` is called after every epoch.
    """
    started = time.perf_counter()
    out = Path(out)
    d, a = demos.states.shape[1], demos.actions.shape[2]
    if demos.actions.shape[1] < cfg.steps:
        raise ConfigError(f"distill.steps is {cfg.steps} but the demonstrations hold {demos.actions.shape[1]} "
                          "actions per plan")
    policy_cfg = cfg.policy_config(d, a)
    train_eps, val_eps = split_episodes(len(demos.obstacles), cfg.val_fraction, cfg.train_seed)
    feats = demos.features(policy_cfg)
    targets = demos.actions[:, : cfg.steps]
    in_train = torch.isin(demos.episode, torch.tensor(train_eps))
    x_train, y_train = feats[in_train], targets[in_train]
    x_val, y_val = feats[~in_train], targets[~in_train]
    if len(x_train) < 2:
        raise ConfigError(f"distill: {len(x_train)} training sample(s); record more episodes")

    torch.manual_seed(cfg.train_seed)
    net = PolicyNet(policy_cfg, demos.action_low, demos.action_high)
    std = x_train.std(dim=0)
    net.feature_mean.copy_(x_train.mean(dim=0))
    net.feature_std.copy_(torch.where(std > 1e-3, std, torch.ones_like(std)))  # constant features pass unscaled
    half = (demos.action_high - demos.action_low) / 2

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((net(x) - y) / half).pow(2).mean()

    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.train_seed)
    history: list[dict] = []
    best, kept_epoch, best_state = math.inf, 0, None
    for epoch in range(1, cfg.epochs + 1):
        # one pass over the training samples in shuffled minibatches
        net.train()
        total = 0.0
        for rows in torch.randperm(len(x_train), generator=generator).split(cfg.batch):
            loss = loss_of(x_train[rows], y_train[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        # validate on the held-out episodes; with none held out, the last epoch is kept
        net.eval()
        with torch.no_grad():
            train_loss = total / len(x_train)
            val_loss = float(loss_of(x_val, y_val)) if len(x_val) else math.nan
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
               "seconds": round(time.perf_counter() - started, 3)}
        history.append(row)
        score = val_loss if len(x_val) and cfg.keep == "best" else -epoch
        if score < best:
            best, kept_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if on_epoch is not None:
            on_epoch(epoch, row)
    net.load_state_dict(best_state)
    net.eval().requires_grad_(False)
    meta = {**dict(info or {}), "seeds": demos.seeds, "statuses": demos.statuses, "samples": len(feats),
            "train_episodes": [demos.seeds[e] for e in train_eps], "val_episodes": [demos.seeds[e] for e in val_eps],
            "kept_epoch": kept_epoch, "distill_config": asdict(cfg)}
    save_policy(out, net, history, meta)
    write_metrics(out, history, kept_epoch)
    return DistillResult(out, history, kept_epoch, len(feats), len(train_eps), len(val_eps), [], 0.0,
                         time.perf_counter() - started)


def distill(agent_cfg: Mapping[str, Any], world_cfg: Mapping[str, Any], cfg: DistillConfig, out: str | Path,
            on_episode: Callable[[int, int, str], None] | None = None,
            on_epoch: Callable[[int, int, dict], None] | None = None) -> DistillResult:
    """Record the Mode-2 agent's plans in the world, fit the policy, run the DAgger rounds; saved at `out`.

    `on_episode(done, total, status)` after each episode and `on_epoch(done,
    total, figures)` after each epoch count over all rounds.
    """
    collect_s = train_s = 0.0
    done_episodes, rounds = 0, []
    epochs_total = cfg.epochs * (cfg.dagger_rounds + 1)
    info = {"agent": agent_cfg.get("name", ""), "world": world_cfg.get("name", "")}
    demos: Demonstrations | None = None
    result: DistillResult | None = None
    for round_ in range(cfg.dagger_rounds + 1):
        # record: the planner drives in round 0, the policy fitted so far in the later ones
        started = time.perf_counter()

        def episode_done(status: str) -> None:
            nonlocal done_episodes
            done_episodes += 1
            if on_episode is not None:
                on_episode(done_episodes, cfg.total_episodes, status)

        seeds = cfg.round_seeds(round_)
        new = collect_plans(agent_cfg, world_cfg, seeds, cfg.steps, noise=cfg.noise if round_ == 0 else 0.0,
                            policy=None if round_ == 0 else out, on_episode=episode_done)
        collect_s += time.perf_counter() - started
        demos = new if demos is None else demos.merge(new)
        rounds.append({"round": round_, "driver": "mode2" if round_ == 0 else "mode1", "seeds": seeds,
                       "plans": len(new.states), "reached": sum(s == "reached" for s in new.statuses),
                       "episodes": len(seeds)})
        log.info("round %d: %d plans from %d episodes (%d reached) in %.1f s", round_, len(new.states), len(seeds),
                 rounds[-1]["reached"], time.perf_counter() - started)

        # fit on everything recorded so far
        def epoch_done(epoch: int, row: dict, round_=round_) -> None:
            if on_epoch is not None:
                on_epoch(round_ * cfg.epochs + epoch, epochs_total, {**row, "round": round_})

        result = fit_policy(demos, cfg, out, epoch_done, {**info, "rounds": rounds, "collect_s": round(collect_s, 3)})
        train_s += result.train_s
        rounds[-1]["val_loss"] = result.history[result.kept_epoch - 1]["val_loss"]
    return dataclasses.replace(result, rounds=rounds, collect_s=collect_s, train_s=train_s)


def write_metrics(checkpoint: Path, history: list[dict], kept_epoch: int) -> tuple[Path, Path]:
    """`<checkpoint>.metrics.csv` (loss per epoch) and `<checkpoint>.png` (its plot, the kept epoch marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    csv_path = checkpoint.with_suffix(".metrics.csv")
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "train_loss", "val_loss", "seconds"])
        writer.writeheader()
        writer.writerows(history)
    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [row["train_loss"] for row in history], label="train")
    ax.plot(epochs, [row["val_loss"] for row in history], label="validation (held-out episodes)")
    ax.axvline(kept_epoch, color="k", ls=":", lw=1, label=f"kept (epoch {kept_epoch})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("BC loss (MSE / half-range²)")
    ax.set_title("Mode-1 policy: behaviour cloning of Mode-2 plans")
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = checkpoint.with_suffix(".png")
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return csv_path, png
