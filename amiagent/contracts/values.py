"""The values the contracts exchange: observations, tasks, settings, cost reports, plans, memory records.

Shapes use B (batch), H (horizon), D (state), A (action), T (cost terms), as in
`amiagent.contracts`. Units are SI throughout.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from amiagent.errors import ConfigError

MODES = ("mode2", "mode1")


@dataclass(frozen=True)
class NoParams:
    """Parameters of a plugin that takes none."""


@dataclass(frozen=True)
class Observation:
    """What a body reports at one instant.

    `t`: body time (s). `state`: (S,) float64 proprioceptive vector; for the
    point robot it is (x, y, vx, vy) in m and m/s. `images`: camera name ->
    (h, w, 3) uint8 frame, empty when the body has no camera.
    """

    t: float
    state: np.ndarray
    images: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """What the agent is asked to do, in world terms.

    `goal`: target position (m). `constraints`: guardrail name -> parameters the
    world imposes (e.g. `keep_out: {circles: [[x, y, r]], boxes: [[cx, cy, hx, hy]]}`,
    `speed_limit: {limit: 1.5}`); plain lists so a task crosses the wire as is.
    `goal_tolerance`: distance (m) that counts as reached. `max_steps`: control
    steps before the episode ends. `goal_observation`: what the body would
    observe at the goal, at rest (goals given as images); None when the world
    has no camera.
    """

    name: str
    goal: tuple[float, ...]
    constraints: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    goal_tolerance: float = 0.2
    max_steps: int = 400
    goal_observation: Observation | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.goal or not all(math.isfinite(float(g)) for g in self.goal):
            raise ConfigError(f"task {self.name!r}: goal must be finite numbers, got {self.goal!r}")
        if self.goal_tolerance <= 0:
            raise ConfigError(f"task {self.name!r}: goal_tolerance must be > 0, got {self.goal_tolerance}")
        if self.max_steps < 1:
            raise ConfigError(f"task {self.name!r}: max_steps must be >= 1, got {self.max_steps}")


@dataclass(frozen=True)
class Settings:
    """What the configurator hands every module; may change between cycles.

    `goal`: (D,) goal in state coordinates (for the point robot: x, y, vx, vy).
    `horizon`: planning horizon H in control steps. `weights`: cost term name ->
    weight (>= 0). `guardrails`: guardrail name -> parameters (zones, limits).
    `mode`: "mode2" plans through the world model, "mode1" uses the fast policy.
    `version`: increases with every new settings object of a run.
    """

    goal: tuple[float, ...]
    horizon: int = 16
    weights: Mapping[str, float] = field(default_factory=dict)
    guardrails: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    mode: str = "mode2"
    version: int = 0

    def __post_init__(self) -> None:
        if not self.goal or not all(math.isfinite(float(g)) for g in self.goal):
            raise ConfigError(f"settings.goal must be finite numbers, got {self.goal!r}")
        if not isinstance(self.horizon, int) or self.horizon < 1:
            raise ConfigError(f"settings.horizon must be an int >= 1, got {self.horizon!r}")
        for name, weight in self.weights.items():
            if not math.isfinite(float(weight)) or weight < 0:
                raise ConfigError(f"settings.weights[{name!r}] must be finite and >= 0, got {weight!r}")
        if self.mode not in MODES:
            raise ConfigError(f"settings.mode must be one of {MODES}, got {self.mode!r}")

    def goal_tensor(self) -> torch.Tensor:
        """The goal as a (D,) float32 tensor."""
        return torch.tensor(self.goal, dtype=torch.float32)

    def only(self, sections: Sequence[str] | None) -> Settings:
        """These settings with `guardrails` cut to `sections` (None: all of them): what a guardrail that
        declares `reads = sections` is handed."""
        if sections is None:
            return self
        return dataclasses.replace(self, guardrails={k: v for k, v in self.guardrails.items() if k in sections})


@dataclass(frozen=True)
class CostReport:
    """The cost of B candidate trajectories.

    `total`: (B,) weighted sum of the ordinary terms (plus critic), excluding
    guardrails. `terms`: (B, T) each term's weighted sum over the horizon, in
    the order of `names`. `violation`: (B, H) summed guardrail violation per
    step, >= 0; zero everywhere means feasible. Guardrails are never folded into
    `total`: planners rank by violation first (see `amiagent.planning.rank`).
    """

    total: torch.Tensor
    terms: torch.Tensor
    names: tuple[str, ...]
    violation: torch.Tensor

    @property
    def violation_total(self) -> torch.Tensor:
        """(B,) violation summed over the horizon."""
        return self.violation.sum(dim=-1)

    @property
    def feasible(self) -> torch.Tensor:
        """(B,) bool: no predicted violation at any step."""
        return self.violation_total <= 0

    def pick(self, index: int) -> CostReport:
        """The report of candidate `index`, as a batch of one."""
        sl = slice(index, index + 1)
        return CostReport(self.total[sl], self.terms[sl], self.names, self.violation[sl])

    def as_dict(self) -> dict[str, float]:
        """First candidate's figures as plain floats (telemetry, summaries)."""
        out = {f"cost.{n}": float(self.terms[0, i]) for i, n in enumerate(self.names)}
        out["cost.total"] = float(self.total[0])
        out["violation"] = float(self.violation_total[0])
        return out


@dataclass(frozen=True)
class Plan:
    """An actor's answer for one state.

    `actions`: (H, A) action sequence, within the world model's bounds.
    `states`: (H, D) states the world model predicts for those actions.
    `cost`: the plan's CostReport (a batch of one). `info`: figures about how
    it was found (iterations, time), for telemetry.
    """

    actions: torch.Tensor
    states: torch.Tensor
    cost: CostReport
    info: Mapping[str, float] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        """True when the plan predicts no guardrail violation."""
        return bool(self.cost.feasible[0])


@dataclass(frozen=True)
class MemoryRecord:
    """One step of experience: `state` (D,), `action` (A,), scalar `cost` and `violation`."""

    t: float
    state: torch.Tensor
    action: torch.Tensor
    cost: float
    violation: float


@dataclass(frozen=True)
class WorldLayout:
    """Static geometry of a world, for plots and reports.

    `bounds`: ((xmin, xmax), (ymin, ymax)). `walls`: boxes (cx, cy, hx, hy).
    `circles` / `boxes`: keep-out zones. `start`, `goal`: positions.
    """

    bounds: tuple[tuple[float, float], tuple[float, float]]
    walls: tuple[tuple[float, float, float, float], ...] = ()
    circles: tuple[tuple[float, float, float], ...] = ()
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    start: tuple[float, float] = (0.0, 0.0)
    goal: tuple[float, float] = (0.0, 0.0)
    robot_radius: float = 0.0
