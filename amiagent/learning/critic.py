"""Fitting a critic: the discounted intrinsic cost beyond the planning horizon, learned by TD from memory.

The critic estimates the cost-to-go of a state s relative to the goal g,

    V(s) = sum_{k>=0} gamma^k c(s_{k+1}, a_k),   s_0 = s,

the cost the agent will still pay after a plan ends, so that
`plan cost = sum of the plan's step costs + critic_weight * V(last planned state)`.

Per-step cost. A `MemoryRecord.cost` is the chosen plan's total over its whole
horizon (terminal weights and any critic included), not the cost of one step,
so it is not used. Each recorded transition (s_t, a_t, s_t+1) is scored again
with the agent's own cost module, in the planner's convention (a step's cost is
read at the state its action leads to):

    c_t = cost of one non-terminal step (s_t+1, a_t) + violation_penalty * guardrail violation there

`Cost.evaluate` sums its terms over the horizon and some terms weight the last
step differently (`goal_distance`'s `terminal`), so the cost of one
*non-terminal* step is taken as the difference between evaluating the step
repeated twice and once (H=2 minus H=1): for any per-step term whose only
special step is the last, that is exactly its running weight times its step
cost. The tail beyond the horizon is made of running steps, so this is the
cost the critic must sum. Guardrail violations never enter `CostReport.total`;
here they are added with a large weight so that the value of states that lead
into violation is high. The critic is never part of `c_t` (only `terms` are
read), so fitting does not chase its own output.

Episodes. Records are consecutive control steps within an episode; a step in
`t` longer than `gap` times the typical one, or `t` going back (a body's time
restarts at every reset), starts a new segment, and no target bootstraps across
a segment boundary. A segment's end is a truncation, not an absorbing state:
the last record only serves as the bootstrap state of the step before it.

Goals. The intrinsic cost depends on the goal, so the critic reads states
relative to it (s - g, see `ValueNet`): one critic serves every goal of a
world. Each segment is scored and made relative under the settings of its own
episode (one Settings for all, or one per segment). The critic cannot see the
zones of the settings, so where the cost depends on them (geodesic distance,
guardrails) it learns their average effect over the episodes it is fitted on.

Fitting is TD(0), or n-step TD, toward a Polyak-averaged target network, in
minibatches under a fixed seed; `FitReport` holds the TD loss per epoch, the
mean value and the explained variance of the targets.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from amiagent.contracts import Cost, Memory, MemoryRecord, Settings
from amiagent.errors import ConfigError

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the network


class ValueNet(nn.Module):
    """V(s - g): an MLP over chosen dims of goal-relative states, with fixed input and output scales.

    `forward(rel)`: `rel` (B, D) states minus the goal -> (B,) value, in the
    cost's units. The input is standardised and the output scaled by buffers
    set at the first fit (saved with the weights). The last layer starts at
    zero, so an untrained net values every state at 0.
    """

    def __init__(self, state_dim: int, dims: Sequence[int], hidden: int):
        super().__init__()
        self.state_dim = state_dim
        k = len(dims)
        self.register_buffer("index", torch.tensor(list(dims), dtype=torch.long))
        self.register_buffer("in_mean", torch.zeros(k))
        self.register_buffer("in_scale", torch.ones(k))
        self.register_buffer("out_scale", torch.ones(()))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.body = nn.Sequential(nn.Linear(k, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                  nn.Linear(hidden, 1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    @property
    def is_fitted(self) -> bool:
        """Whether a fit (or a loaded checkpoint) has set the weights."""
        return bool(self.fitted)

    def forward(self, rel: torch.Tensor) -> torch.Tensor:
        x = (rel.index_select(-1, self.index) - self.in_mean) / self.in_scale
        return self.body(x).squeeze(-1) * self.out_scale

    def set_scales(self, rel: torch.Tensor, value_scale: float) -> None:
        """Standardise inputs like `rel` (N, D); outputs in units of `value_scale` (> 0)."""
        x = rel.index_select(-1, self.index)
        std = x.std(dim=0, unbiased=False) if x.shape[0] > 1 else torch.ones(x.shape[1])
        self.in_mean.copy_(x.mean(dim=0))
        self.in_scale.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
        self.out_scale.fill_(value_scale)


class TrainableCritic(Protocol):
    """What the fitting code needs of a critic plugin (e.g. `critic.td`)."""

    net: ValueNet
    gamma: float
    """Discount per control step: part of what the value means."""
    lr: float


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class FitConfig:
    """How to fit. `epochs`: passes over the transitions. `batch_size`: transitions per step.
    `n_step`: steps summed before bootstrapping (1: TD(0)). `tau`: Polyak rate of the target
    network per optimiser step. `violation_penalty`: cost per unit of guardrail violation.
    `gap`: a step in `t` over `gap` times the typical one starts a new segment. `grad_clip`: max
    gradient norm. `seed`: order of the minibatches.
    """

    epochs: int = 150
    batch_size: int = 64
    n_step: int = 5
    tau: float = 0.05
    violation_penalty: float = 100.0
    gap: float = 1.5
    grad_clip: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.n_step < 1:
            raise ConfigError(f"critic fit: epochs, batch_size and n_step must be >= 1, got {self}")
        if not 0 < self.tau <= 1:
            raise ConfigError(f"critic fit: tau must be in (0, 1], got {self.tau}")
        if not (self.violation_penalty >= 0 and self.gap > 1 and self.grad_clip > 0):
            raise ConfigError(f"critic fit: violation_penalty >= 0, gap > 1 and grad_clip > 0 required, got {self}")


@dataclass(frozen=True)
class Trajectories:
    """Recorded segments, flattened. M records; D state dims.

    `rel`: (M, D) float32 states minus their episode's goal. `costs`: (M,) cost
    of the step from record i to i+1 (0 at a segment's last record, unused).
    `ends`: (M,) long, index of the last record of i's segment.
    """

    rel: torch.Tensor
    costs: torch.Tensor
    ends: torch.Tensor

    @property
    def starts(self) -> torch.Tensor:
        """(N,) indices of records with a successor in their segment: the transitions."""
        return torch.nonzero(torch.arange(len(self.ends)) < self.ends).squeeze(-1)

    @property
    def segments(self) -> int:
        return int(torch.unique(self.ends).numel())


def split_segments(times: Sequence[float], gap: float = 1.5) -> list[tuple[int, int]]:
    """[start, stop) index ranges of runs of consecutive steps in `times` (s).

    A new segment starts where `t` does not increase or grows by more than
    `gap` times the typical (median) step.
    """
    t = torch.tensor([float(v) for v in times], dtype=torch.float64)
    if len(t) == 0:
        return []
    dt = t.diff()
    forward = dt[dt > 0]
    typical = float(forward.median()) if len(forward) else math.inf
    breaks = torch.nonzero((dt <= 0) | (dt > gap * typical)).squeeze(-1) + 1
    edges = [0, *breaks.tolist(), len(t)]
    return list(zip(edges[:-1], edges[1:]))


def step_costs(cost: Cost, next_states: torch.Tensor, actions: torch.Tensor,
               violation_penalty: float) -> torch.Tensor:
    """(N,) cost of N single non-terminal steps: `next_states` (N, D) reached by `actions` (N, A).

    Ordinary terms: evaluate(step twice) - evaluate(step once), which strips any
    terminal weighting (see the module docstring); plus `violation_penalty`
    times the guardrail violation of the step. The critic, if the cost has
    one, is left out.
    """
    s1, a1 = next_states[:, None], actions[:, None]
    once = cost.evaluate(s1, a1)
    twice = cost.evaluate(s1.expand(-1, 2, -1), a1.expand(-1, 2, -1))
    running = twice.terms.sum(dim=1) - once.terms.sum(dim=1)
    return running + violation_penalty * once.violation[:, 0]


def transitions_from_records(records: Sequence[MemoryRecord], cost: Cost, settings: Settings | Sequence[Settings],
                             config: FitConfig = FitConfig()) -> Trajectories:
    """Segments of `records` (oldest first) with per-step costs recomputed by `cost`.

    `settings`: the episode's settings, one for every segment or one per
    segment in order. Each is applied to `cost` before its segment is scored:
    `cost` is left with the last one (the next `Agent.start` applies the agent's
    own again).
    """
    segments = split_segments([r.t for r in records], config.gap)
    if sum(stop - start - 1 for start, stop in segments) < 1:
        raise ConfigError(f"critic fit: {len(records)} record(s) hold no transition (two consecutive steps); "
                          "run the agent for a few steps first")
    per_segment = [settings] * len(segments) if isinstance(settings, Settings) else list(settings)
    if len(per_segment) != len(segments):
        found = ", ".join(f"t={records[a].t:.2f}..{records[b - 1].t:.2f}" for a, b in segments)
        raise ConfigError(f"critic fit: {len(per_segment)} settings given for {len(segments)} segment(s) of memory "
                          f"({found}); give one Settings per episode, or one for all")
    states = torch.stack([torch.as_tensor(r.state, dtype=torch.float32) for r in records])
    actions = torch.stack([torch.as_tensor(r.action, dtype=torch.float32) for r in records])
    rel, costs, ends = torch.empty_like(states), torch.zeros(len(records)), torch.empty(len(records), dtype=torch.long)
    for (start, stop), seg_settings in zip(segments, per_segment):
        goal = seg_settings.goal_tensor()
        if goal.shape[0] != states.shape[1]:
            raise ConfigError(f"critic fit: settings.goal has {goal.shape[0]} values but the recorded states have "
                              f"{states.shape[1]}")
        rel[start:stop] = states[start:stop] - goal
        ends[start:stop] = stop - 1
        if stop - start > 1:
            cost.apply(seg_settings)
            with torch.no_grad():
                costs[start:stop - 1] = step_costs(cost, states[start + 1:stop], actions[start:stop - 1],
                                                   config.violation_penalty).float()
    if not bool(torch.isfinite(costs).all() and torch.isfinite(rel).all()):
        raise ConfigError("critic fit: recorded states or recomputed step costs are not finite")
    return Trajectories(rel, costs, ends)


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class FitReport:
    """Figures of one fit. `td_loss`: mean squared TD error per epoch (cost units^2).
    `mean_value`: mean V over the transitions' states after each epoch. `explained_variance`:
    1 - Var(target - V) / Var(target) at the end (1 is perfect). `mean_step_cost`: mean c_t.
    """

    td_loss: tuple[float, ...]
    mean_value: tuple[float, ...]
    explained_variance: float
    mean_step_cost: float
    transitions: int
    segments: int
    steps: int
    wall_s: float


def _n_step_returns(data: Trajectories, starts: torch.Tensor, n: int, gamma: float):
    """For each start: discounted cost of up to n steps, the bootstrap index and its discount."""
    taken = torch.minimum(starts + n, data.ends[starts]) - starts  # (N,) 1..n steps within the segment
    ret = torch.zeros(len(starts))
    for j in range(n):
        inside = j < taken
        ret += torch.where(inside, gamma ** j * data.costs[(starts + j).clamp(max=len(data.costs) - 1)], 0.0)
    return ret, starts + taken, gamma ** taken.float()


def fit_td(critic: TrainableCritic, data: Trajectories, config: FitConfig = FitConfig()) -> FitReport:
    """Fit `critic.net` to the discounted cost-to-go of `data` by n-step TD with a target network.

    The first fit of a net sets its input standardisation from `data` and its
    output scale to mean step cost / (1 - gamma); later fits keep them and go on
    from the current weights. The weights change in place: fit between
    episodes, not while an agent plans with the same critic.
    """
    started = time.perf_counter()
    net, gamma = critic.net, float(critic.gamma)
    starts = data.starts
    if len(starts) == 0:
        raise ConfigError("critic fit: no transitions to fit")
    mean_cost = float(data.costs[starts].mean())
    if not net.is_fitted:
        net.set_scales(data.rel, max(abs(mean_cost) / (1.0 - gamma), 1e-3))
    ret, boot, disc = _n_step_returns(data, starts, config.n_step, gamma)
    target_net = copy.deepcopy(net).requires_grad_(False)
    optimiser = torch.optim.Adam(net.parameters(), lr=float(critic.lr))
    generator = torch.Generator().manual_seed(config.seed)
    scale = float(net.out_scale)
    losses, means, steps = [], [], 0
    net.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(starts), generator=generator)
        total = 0.0
        for chunk in order.split(config.batch_size):
            # targets from the slow copy
            with torch.no_grad():
                target = ret[chunk] + disc[chunk] * target_net(data.rel[boot[chunk]])
            # regress, in units of the value scale
            error = (net(data.rel[starts[chunk]]) - target) / scale
            loss = error.square().mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
            optimiser.step()
            # track
            with torch.no_grad():
                for slow, fast in zip(target_net.parameters(), net.parameters()):
                    slow.lerp_(fast, config.tau)
            total += float(loss.detach()) * len(chunk)
            steps += 1
        losses.append(total / len(starts) * scale ** 2)
        with torch.no_grad():
            means.append(float(net(data.rel[starts]).mean()))
    net.eval()
    net.fitted.fill_(True)
    with torch.no_grad():
        target = ret + disc * target_net(data.rel[boot])
        residual = target - net(data.rel[starts])
        var = float(target.var(unbiased=False))
        explained = 1.0 - float(residual.var(unbiased=False)) / var if var > 0 else math.nan
    report = FitReport(tuple(losses), tuple(means), explained, mean_cost, len(starts), data.segments, steps,
                       time.perf_counter() - started)
    log.info("critic fit: %d transitions in %d segment(s), TD loss %.4g -> %.4g, explained variance %.3f",
             report.transitions, report.segments, losses[0], losses[-1], explained)
    return report


def fit_from_memory(critic: TrainableCritic, memory: Memory, cost: Cost, settings: Settings | Sequence[Settings],
                    config: FitConfig = FitConfig()) -> FitReport:
    """Fit `critic` on everything in `memory`, step costs recomputed by `cost` under `settings`.

    `settings`: one Settings for every episode in memory, or one per episode
    (segment), oldest first. See `transitions_from_records`.
    """
    records = memory.recent(len(memory))
    return fit_td(critic, transitions_from_records(records, cost, settings, config), config)
