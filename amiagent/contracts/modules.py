"""The module contracts (six modules, the body, the world) and the control endpoint of a running agent.

Contracts are base classes with no-op lifecycle defaults, so a plugin
overrides only what it needs. What crosses processes, and how, is declared
once in `amiagent.contracts.declared`.
"""

from __future__ import annotations

import math
import types
from concurrent.futures import Future
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from amiagent.contracts.values import CostReport, MemoryRecord, NoParams, Observation, Plan, Settings, Task, WorldLayout
from amiagent.contracts.spaces import Box


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
    info: Mapping[str, Any] = types.MappingProxyType({})
    """Plain data on how the perception was made; for a trained one its checkpoint's info, whose
    `world_params` say how its training frames were drawn (checked against the world's at launch)."""

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

    @property
    def action_space(self) -> Box:
        """`action_low` ... `action_high` as a Box: clip, contains and comparisons under one convention."""
        return Box.of_actions(self)

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
    """A hard constraint: a violation amount per step, never traded against cost.

    `reads`: the sections of `settings.guardrails` it reads (e.g. `("keep_out",)`): the cost module hands
    it only those, and a world's tasks must carry them for it to act. None: undeclared, handed them all.
    """

    kind = "guardrail"
    reads: ClassVar[tuple[str, ...] | None] = None

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

    @property
    def action_space(self) -> Box:
        """`action_low` ... `action_high` as a Box (a body may keep its own; the sim bodies do)."""
        return Box.of_actions(self)

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
    arrival_speed: float = 0.25
    """A goal counts as reached within the task's tolerance at no more than this `goal_speed` (m/s)."""
    params: Any = None
    """The world's settings (its `Params` dataclass instance), as the frame check and the CLI read them."""

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

    def min_clearance(self) -> float:
        """Smallest distance (m) between the body and any keep-out zone since reset (negative: overlap);
        inf when the world has no zones or does not measure it."""
        return math.inf


@runtime_checkable
class PlansAhead(Protocol):
    """An actor that can start a plan without waiting for it (a remote actor plans in its own process).
    The agent then skips its own planning thread."""

    def begin_act(self, state: torch.Tensor, limit: float | None = None) -> Future:
        """Start planning from `state` (1, D); the future gives the Plan. `limit`: seconds it may take."""


class Control:
    """What a running agent answers on its control endpoint (`amiagent swap`, `amiagent agents`)."""

    def swap(self, module: str, spec: Mapping[str, Any]) -> Mapping[str, Any]:
        """Replace `module`'s plugin by `spec` ({name, params}) at a cycle boundary.

        Returns {module, plugin (a label of the new one), applied (whether it took over already)}.
        """
        raise NotImplementedError

    def status(self) -> Mapping[str, Any]:
        """What the agent runs: {agent, pid, runtime, modules: {module: plugin}, down, cycles}."""
        raise NotImplementedError


CONTRACTS: dict[str, type[Module]] = {
    cls.kind: cls
    for cls in (Configurator, Perception, WorldModel, CostTerm, Guardrail, Critic, Cost, Memory, Actor, World)
}
