"""Hierarchical planning: levels of perception, world model, cost and actor, stacked.

Level 0 is the agent's own MPC. Each level above it has the same four
contracts on a coarser time scale: its perception gives an abstract state, its
world model takes one step for `every` control steps, its cost measures the way
to *its* goal (and binds its coarse guardrails), and its actor plans. What a
level hands down is a subgoal in the terms of the level below: some of the
below's goal dimensions (`subgoal_dims`) are set from the first dimensions of
the planned abstract state, `lookahead` steps ahead.

    level 2 ─ subgoal ─▶ level 1 ─ subgoal ─▶ level 0 (the agent's MPC) ─▶ action
       ▲ final goal          ▲                       │
       └─────── re-plan when due, reached or reported infeasible ◀──┘

A level re-plans when it has no plan yet, every `every` control steps, when
the level below has reached the subgoal (within `reached`, in this level's
abstract state), or when the level below has reported its subgoal infeasible
for `patience` cycles in a row (its best plan predicts a guardrail violation,
or the subgoal itself breaks a guardrail). Guardrails bind at every level:
each level's actor ranks plans feasibility-first, and the agent's safety filter
still checks every action that reaches the body.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field

import torch

from amiagent.contracts import Actor, Cost, Observation, Perception, Plan, Settings, WorldModel
from amiagent.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LevelConfig:
    """How one level above level 0 plans and hands down subgoals.

    `every`: control steps per step of this level, and the longest a plan is
    kept. `horizon`: steps of this level per plan. `reached` (units of the
    subgoal dims): the level below is at the subgoal. `subgoal_dims`: goal
    dimensions of the level below set from this level's state dims 0, 1, ...;
    this level's own goal is the below's goal read back from those dims.
    `lookahead`: which planned step (1 = the first) becomes the subgoal.
    `patience`: cycles of infeasibility reported from below before re-planning.
    """

    every: int = 10
    horizon: int = 16
    reached: float = 0.4
    subgoal_dims: tuple[int, ...] = (0, 1)
    lookahead: int = 1
    patience: int = 3

    def __post_init__(self) -> None:
        for name in ("every", "horizon", "lookahead", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"hierarchy level: {name} must be an integer >= 1, got {value!r}")
        if isinstance(self.reached, bool) or not isinstance(self.reached, (int, float)) or not self.reached > 0:
            raise ConfigError(f"hierarchy level: reached must be a number > 0, got {self.reached!r}")
        if not self.subgoal_dims or any(not isinstance(d, int) or d < 0 for d in self.subgoal_dims):
            raise ConfigError(f"hierarchy level: subgoal_dims must be non-empty dims >= 0, got {self.subgoal_dims!r}")
        if self.lookahead > self.horizon:
            raise ConfigError(f"hierarchy level: lookahead ({self.lookahead}) must not exceed horizon ({self.horizon})")


@dataclass
class Level:
    """One level: its modules, its config, and where it stands in the episode."""

    name: str
    config: LevelConfig
    perception: Perception
    world_model: WorldModel
    cost: Cost
    actor: Actor
    goal: tuple[float, ...] = ()
    """This level's goal in its own state terms (from the level above, or the task)."""
    plan: Plan | None = None
    planned_at: int = -1
    subgoal: tuple[float, ...] | None = None
    """What this level hands down, in the terms of the level below."""
    target: torch.Tensor | None = None
    """The planned abstract state the subgoal was read from (its first len(subgoal_dims) values); None when
    the subgoal is this level's own goal, or a place to hold: then reaching it is no reason to re-plan."""
    infeasible_for: int = 0
    settings: Settings | None = None
    replans: int = 0
    plan_ms: list[float] = field(default_factory=list)

    def modules(self) -> list:
        return [self.perception, self.world_model, self.cost, self.actor]


@dataclass(frozen=True)
class Step:
    """What the hierarchy decided in one cycle: level 0's goal (None: unchanged), why levels re-planned,
    and the time their planning took (ms)."""

    goal: tuple[float, ...] | None
    events: tuple[str, ...]
    plan_ms: float
    model_steps: float = 0.0
    """World-model steps the levels' actors evaluated (as their plans report it)."""


class Hierarchy:
    """Levels 1..N above an agent's own planner; `levels[0]` is level 1 (the one handing level 0 its goal)."""

    def __init__(self, levels: list[Level]):
        if not levels:
            raise ConfigError("a hierarchy needs at least one level above level 0")
        self.levels = levels
        for level in levels:
            level.actor.bind(level.world_model, level.cost)
            _check_dims(level)
        for below, above in zip(levels, levels[1:]):
            if max(above.config.subgoal_dims) >= below.world_model.state_dim:
                raise ConfigError(f"hierarchy level {above.name}: subgoal_dims {above.config.subgoal_dims} exceed "
                                  f"the state of level {below.name} ({below.world_model.state_dim} values)")
        self._base_goal: tuple[float, ...] = ()
        self._base_settings: Settings | None = None

    # ---------------------------------------------------------------- episode

    def start(self, settings: Settings, base_state_dim: int) -> None:
        """A new task: every level's goal comes from the configurator's (level-0) settings."""
        if max(self.levels[0].config.subgoal_dims) >= base_state_dim:
            raise ConfigError(f"hierarchy level {self.levels[0].name}: subgoal_dims "
                              f"{self.levels[0].config.subgoal_dims} exceed level 0's state ({base_state_dim} values)")
        self._base_settings = settings
        self._base_goal = tuple(settings.goal)
        below = self._base_goal
        for level in self.levels:
            level.plan, level.planned_at, level.subgoal, level.target = None, -1, None, None
            level.infeasible_for, level.replans, level.plan_ms = 0, 0, []
            self._set_goal(level, _read_goal(below, level))
            level.actor.reset()
            for module in level.modules():
                module.activate()
            below = level.goal

    def step(self, obs: Observation, index: int, below_infeasible: bool) -> Step:
        """Re-plan the levels that need it, top first; level 0's new goal if it changed.

        `below_infeasible`: level 0 reports its current subgoal infeasible this cycle.
        """
        if self._base_settings is None:
            raise ConfigError("Hierarchy.start(settings) must be called before step()")
        started = time.perf_counter()
        events: list[str] = []
        states = [level.perception.encode(obs) for level in self.levels]
        for i, level in enumerate(self.levels):  # what each level hears from the one below
            below = self.levels[i - 1].plan if i > 0 else None
            bad = below_infeasible if i == 0 else (below is not None and not below.feasible)
            level.infeasible_for = level.infeasible_for + 1 if bad else 0
        level1 = self.levels[0]
        changed_below, model_steps = False, 0.0
        for i in reversed(range(len(self.levels))):
            level = self.levels[i]
            reason = self._due(level, index, states[i], changed_below)
            changed_below = False
            if reason is None:
                continue
            plan = level.actor.act(states[i])
            level.plan, level.planned_at, level.replans = plan, index, level.replans + 1
            level.plan_ms.append(float(plan.info.get("plan_ms", math.nan)))
            model_steps += float(plan.info.get("model_steps", 0.0))
            level.infeasible_for = 0
            n = len(level.config.subgoal_dims)
            step = min(level.config.lookahead, plan.states.shape[0]) - 1
            target = plan.states[step, :n].clone()
            below_goal = self._base_goal if i == 0 else self.levels[i - 1].goal
            subgoal = list(below_goal)
            near_goal = float((target - torch.tensor(level.goal[:n])).norm()) <= level.config.reached
            moves = float((target - states[i][0, :n]).norm()) > level.config.reached
            if near_goal:  # the level below can take this level's own goal from here
                level.target = None
            else:  # a waypoint on the way (or, when no leg leads anywhere, the place to hold)
                level.target = target if moves else None
                for j, dim in enumerate(level.config.subgoal_dims):
                    subgoal[dim] = float(target[j])
            level.subgoal = tuple(subgoal)
            events.append(f"level {i + 1} ({level.name}) re-planned: {reason}"
                          + ("" if plan.feasible else "; no feasible plan, least violation kept"))
            if i > 0:
                self._set_goal(self.levels[i - 1], _read_goal(level.subgoal, self.levels[i - 1]))
                changed_below = True
        plan_ms = (time.perf_counter() - started) * 1e3
        return Step(goal=level1.subgoal if events else None, events=tuple(events), plan_ms=plan_ms,
                    model_steps=model_steps)

    def _due(self, level: Level, index: int, state: torch.Tensor, goal_changed: bool) -> str | None:
        """Why `level` must plan now (`state`: its abstract state now), or None."""
        if level.plan is None:
            return "first plan"
        if goal_changed:
            return "new goal from above"
        if index - level.planned_at >= level.config.every:
            return f"every {level.config.every} steps"
        if level.infeasible_for >= level.config.patience:
            return f"level below reported its subgoal infeasible for {level.infeasible_for} cycles"
        if self.reached(level, state):
            return "subgoal reached"
        return None

    def reached(self, level: Level, state: torch.Tensor) -> bool:
        """The level below stands at `level`'s subgoal, measured in `level`'s abstract state."""
        if level.target is None:
            return False
        n = len(level.config.subgoal_dims)
        return float((state[0, :n] - level.target).norm()) <= level.config.reached

    def _set_goal(self, level: Level, goal: tuple[float, ...]) -> None:
        level.goal = goal
        level.settings = dataclasses.replace(self._base_settings, goal=goal, horizon=level.config.horizon)
        for module in level.modules():
            module.apply(level.settings)

    def close(self) -> None:
        """Close every level's modules. Safe to call twice."""
        for level in self.levels:
            for module in level.modules():
                module.close()


def _read_goal(below_goal: tuple[float, ...], level: Level) -> tuple[float, ...]:
    """A level's goal from the goal of the level below: its subgoal dims, padded with zeros."""
    values = [float(below_goal[d]) for d in level.config.subgoal_dims]
    return tuple(values + [0.0] * (level.world_model.state_dim - len(values)))


def _check_dims(level: Level) -> None:
    if level.perception.state_dim != level.world_model.state_dim:
        raise ConfigError(f"hierarchy level {level.name}: perception gives {level.perception.state_dim} values "
                          f"but its world model expects {level.world_model.state_dim}")
    if len(level.config.subgoal_dims) > level.world_model.state_dim:
        raise ConfigError(f"hierarchy level {level.name}: {len(level.config.subgoal_dims)} subgoal dims but its "
                          f"state has only {level.world_model.state_dim} values")
