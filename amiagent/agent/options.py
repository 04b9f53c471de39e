"""What an agent is made of and how it runs: its modules, its cycle's timing, its options."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from amiagent.config import check_number
from amiagent.contracts import Actor, Configurator, Cost, Memory, Module, Perception, WorldModel
from amiagent.errors import ConfigError

MODULE_NAMES = ("configurator", "perception", "world_model", "cost", "memory", "actor", "mode1")
PLANNING_CHAIN = frozenset({"actor", "world_model", "cost"})
"""Modules a plan needs: while one is down, no plan is asked for."""

PLANNER_GRACE_S = 5.0
"""How long close(), apply() and start() wait for a plan in flight before declaring the planner hung."""
LOCKSTEP_GRACE_S = 60.0
"""start()'s limit in lockstep (evaluation): a loaded machine must not fail an episode at its start (a
warm-up plan once took over 5 s with six processes on two cores); a hung planner is still caught."""


@dataclass(frozen=True)
class LoopConfig:
    """Timing of the agent cycle.

    `rate_hz`: control rate. `deadline_s`: time a plan may take from the start
    of the cycle, at most one period (default: 80% of the period).
    `plan_validity`: how many steps of a plan may still be used after it was made.
    """

    rate_hz: float = 10.0
    deadline_s: float | None = None
    plan_validity: int = 5
    lockstep: bool = False
    """Wait for every plan, however late (it still counts as a missed deadline). For evaluation: results
    then depend on the seed only, not on how loaded the machine is. Never for a real body."""

    def __post_init__(self) -> None:
        if isinstance(self.rate_hz, bool) or not isinstance(self.rate_hz, (int, float)) or \
                not 0 < self.rate_hz < math.inf:
            raise ConfigError(f"agent.loop.rate_hz must be a finite number > 0, got {self.rate_hz!r}")
        if self.deadline_s is not None:
            if isinstance(self.deadline_s, bool) or not isinstance(self.deadline_s, (int, float)):
                raise ConfigError(f"agent.loop.deadline_s must be a number or null, got {self.deadline_s!r}")
            if not 0 < self.deadline_s <= self.period:
                raise ConfigError(
                    f"agent.loop.deadline_s must be > 0 and at most one control period ({self.period:g} s), "
                    f"got {self.deadline_s!r}"
                )
        if isinstance(self.plan_validity, bool) or not isinstance(self.plan_validity, int) or self.plan_validity < 1:
            raise ConfigError(f"agent.loop.plan_validity must be an integer >= 1, got {self.plan_validity!r}")
        if not isinstance(self.lockstep, bool):
            raise ConfigError(f"agent.loop.lockstep must be true or false, got {self.lockstep!r}")

    @property
    def period(self) -> float:
        return 1.0 / self.rate_hz

    @property
    def deadline(self) -> float:
        return self.deadline_s if self.deadline_s is not None else 0.8 * self.period


@dataclass(frozen=True)
class AgentOptions:
    """How an agent runs its modules, as `build_agent` reads them from config (`agent.loop`,
    `agent.safety`, `agent.goal_from`)."""

    loop: LoopConfig = field(default_factory=LoopConfig)
    safety_on_measured: bool = False
    """`agent.safety.state: measured`: the filter checks actions against the body's measured state
    (obs.state) rather than perception's estimate; for planners in a learned latent space."""
    goal_from_observation: bool = False
    """`agent.goal_from: observation`: the goal is perception's encoding of the task's goal observation."""
    safety_follows_planner: bool = True
    """The safety filter's model is a copy of the planner's plugin, swapped along with it."""
    safety_margin: float = 0.0
    """`agent.safety.extra_margin`: a cost swap rebuilds the filter's guardrails with it."""

    def __post_init__(self) -> None:
        if not isinstance(self.loop, LoopConfig):
            raise ConfigError(f"agent options: loop must be a LoopConfig, got {self.loop!r}")
        for name in ("safety_on_measured", "goal_from_observation", "safety_follows_planner"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"agent options: {name} must be true or false, got {getattr(self, name)!r}")
        check_number("agent.safety.extra_margin", self.safety_margin)


@dataclass(frozen=True)
class Modules:
    """The six modules of one agent (Mode 1 policy optional)."""

    configurator: Configurator
    perception: Perception
    world_model: WorldModel
    cost: Cost
    memory: Memory
    actor: Actor
    mode1: Actor | None = None

    def all(self) -> list:
        mods = [self.configurator, self.perception, self.world_model, self.cost, self.memory, self.actor]
        return mods + ([self.mode1] if self.mode1 is not None else [])

    def named(self) -> dict[str, Module]:
        """Module name -> module, for the modules present."""
        return {name: getattr(self, name) for name in MODULE_NAMES if getattr(self, name) is not None}

    def bind_actors(self) -> None:
        """Point the actors (Mode 2 and Mode 1) at the world model and cost they plan through."""
        self.actor.bind(self.world_model, self.cost)
        if self.mode1 is not None:
            self.mode1.bind(self.world_model, self.cost)
