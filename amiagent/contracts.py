"""The module contracts of an amiagent agent, and the values they exchange.

Six modules make an agent (Configurator, Perception, WorldModel, Cost, Memory,
Actor); a Body is what the agent controls and a World hosts bodies in
simulation. Every contract works on batched torch tensors. Shapes use:

    B  batch (candidate plans, or 1)      H  planning horizon, in control steps
    D  latent state dimension             A  action dimension
    T  number of cost terms

Units are SI throughout: metres, seconds, m/s, m/s^2. Contracts are base
classes with no-op lifecycle defaults, so a plugin overrides only what it needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from amiagent.errors import ConfigError

MODES = ("mode2", "mode1")


# --------------------------------------------------------------------------- values


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


# --------------------------------------------------------------------------- modules


class Module:
    """The lifecycle every module shares, with defaults that do nothing.

    `apply(settings)` may arrive at any time between cycles. An inactive module
    serves and publishes nothing. `close()` is safe to call twice.
    A plugin declares its parameters as a frozen dataclass named `Params`.
    """

    kind: ClassVar[str] = "module"
    Params: ClassVar[type] = NoParams

    def __init__(self, params: Any = None):
        self.params = params if params is not None else self.Params()
        self._active = False

    @property
    def active(self) -> bool:
        """Whether the module is serving."""
        return self._active

    def apply(self, settings: Settings) -> None:
        """Take new settings from the configurator."""

    def activate(self) -> None:
        """Start serving."""
        self._active = True

    def deactivate(self) -> None:
        """Stop serving; state is kept."""
        self._active = False

    def close(self) -> None:
        """Release resources. Safe to call more than once."""
        self._active = False


class Configurator(Module):
    """Turns a task into settings for the other modules."""

    kind = "configurator"

    def configure(self, task: Task) -> Settings:
        """Settings for `task`: goal, weights, guardrail parameters, horizon, mode."""
        raise NotImplementedError


class Perception(Module):
    """Observation -> state estimate."""

    kind = "perception"
    state_dim: int = 0
    needs_images: bool = False
    """True for a perception that reads camera frames: `run` and `eval` switch the world's camera on for it."""

    def encode(self, obs: Observation | Sequence[Observation]) -> torch.Tensor:
        """(B, D) float32 state for one observation (B = 1) or a sequence of B."""
        raise NotImplementedError


class WorldModel(Module):
    """Predicts future states from a state and an action sequence.

    `state_dim` D, `action_dim` A, `dt` seconds per step, and the action
    bounds `action_low` / `action_high`, (A,) float32 tensors.
    """

    kind = "world_model"
    state_dim: int = 0
    action_dim: int = 0
    dt: float = 0.1
    action_low: torch.Tensor
    action_high: torch.Tensor

    def rollout(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """`states` (B, D), `actions` (B, H, A) -> (B, H, D): the state after each action.

        `states` may also be (1, D): every sequence then starts from that state
        (planners use this rather than expanding the start state B times).
        """
        raise NotImplementedError

    def brake_action(self, states: torch.Tensor) -> torch.Tensor:
        """`states` (B, D) -> (B, A): the action that brings the body to rest fastest.

        The safety filter's fallback. The default (zero action) suits bodies whose
        zero command means stop; bodies with momentum must override it.
        """
        return torch.zeros(states.shape[0], self.action_dim)

    def goal_states(self, goal: torch.Tensor, tolerance: float) -> torch.Tensor:
        """`goal` (D,) from the settings -> (N, D) states that realise it, N >= 0.

        The agent calls it once per goal to decide whether the goal is feasible:
        a goal is feasible when one of these states, held at rest, satisfies
        every guardrail. The default is the goal state itself. Models whose goal
        is given in task space (an arm's end-effector target) return the states
        that reach it within `tolerance` (m), e.g. from inverse kinematics, and
        none (0, D) when it lies outside the reachable workspace.
        """
        return goal.reshape(1, -1)


class CostTerm(Module):
    """An ordinary intrinsic cost term; traded off against others by weight."""

    kind = "cost_term"

    def evaluate(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """`states` (B, H, D), `actions` (B, H, A) -> (B, H) cost per step, unweighted."""
        raise NotImplementedError


class Guardrail(Module):
    """A hard constraint: a violation amount per step, never traded against cost."""

    kind = "guardrail"

    def violation(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """`states` (B, H, D), `actions` (B, H, A) -> (B, H) violation amount, >= 0."""
        raise NotImplementedError


class Critic(Module):
    """A trainable estimate of the cost beyond the horizon."""

    kind = "critic"

    def value(self, states: torch.Tensor) -> torch.Tensor:
        """`states` (B, D) -> (B,) expected future cost."""
        raise NotImplementedError


class Cost(Module):
    """Intrinsic cost (terms and guardrails) plus an optional critic."""

    kind = "cost"

    def evaluate(self, states: torch.Tensor, actions: torch.Tensor) -> CostReport:
        """`states` (B, H, D), `actions` (B, H, A) -> CostReport over B candidates."""
        raise NotImplementedError


class Memory(Module):
    """Short-term memory of recent steps."""

    kind = "memory"

    def write(self, record: MemoryRecord) -> None:
        """Store one record."""
        raise NotImplementedError

    def recent(self, n: int) -> list[MemoryRecord]:
        """The last `n` records, oldest first."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[MemoryRecord]:
        """`n` records drawn uniformly with replacement."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class Actor(Module):
    """Chooses actions: Mode 2 plans through world model + cost; Mode 1 is a fast policy."""

    kind = "actor"

    def bind(self, world_model: WorldModel, cost: Cost) -> None:
        """Give the actor the modules it plans through."""

    def reset(self) -> None:
        """Forget warm-start state (new episode, new goal)."""

    def act(self, state: torch.Tensor) -> Plan:
        """`state` (1, D) -> Plan over the current horizon."""
        raise NotImplementedError


class Body:
    """What the agent controls: a simulated robot or a real one behind the body protocol.

    `action_low` / `action_high`: (A,) float64 bounds the body enforces itself.
    """

    action_low: np.ndarray
    action_high: np.ndarray

    def observe(self) -> Observation:
        """The body's current observation."""
        raise NotImplementedError

    def command(self, action: np.ndarray) -> None:
        """Hold `action` (A,) until the next command; rejects non-finite or misshaped input."""
        raise NotImplementedError

    def stop(self) -> None:
        """Brake to a standstill and hold."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the body. Safe to call twice."""


class World(Module):
    """A simulated world hosting one body; measures ground truth on its own.

    The world's violation counts are independent of the agent's cost module:
    they come from the simulator's geometry and contacts.
    """

    kind = "world"
    body: Body
    dt: float = 0.1

    def reset(self, seed: int) -> Task:
        """Start a new episode from `seed`; returns its task."""
        raise NotImplementedError

    def advance(self, seconds: float) -> None:
        """Step physics for `seconds` of simulated time."""
        raise NotImplementedError

    def violations(self) -> Mapping[str, int]:
        """Ground-truth violation counts since reset (physics steps in violation, per kind)."""
        raise NotImplementedError

    def layout(self) -> WorldLayout:
        """Geometry for plots."""
        raise NotImplementedError

    def distance_to_goal(self) -> float:
        """Distance (m) from what must reach the goal (robot centre, end effector) to the goal."""
        raise NotImplementedError

    def goal_speed(self) -> float:
        """Speed (m/s) of what must reach the goal; the goal counts as reached only nearly at rest."""
        raise NotImplementedError


CONTRACTS: dict[str, type[Module]] = {
    cls.kind: cls
    for cls in (Configurator, Perception, WorldModel, CostTerm, Guardrail, Critic, Cost, Memory, Actor, World)
}
