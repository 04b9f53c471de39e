"""What a cycle reports (`Cycle`) and the counts kept over an episode (`Counters`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from amiagent.contracts import Observation

SOURCES = ("plan", "previous", "mode1", "stop")
"""Where a cycle's action came from: this cycle's plan, a step of the last valid plan, the Mode-1 policy,
or braking/stopping."""


@dataclass(frozen=True)
class Cycle:
    """Telemetry of one cycle. `action` is what was sent; `source` one of SOURCES."""

    index: int
    t: float
    state: tuple[float, ...]
    action: tuple[float, ...]
    source: str
    filtered: bool
    missed_deadline: bool
    plan_ms: float
    cycle_ms: float
    cost: float
    predicted_violation: float
    filter_reason: str = ""
    halt: bool = False
    """No valid action could be formed: the body must be stopped instead of commanded."""
    checked: bool = False
    """The action passed the safety filter (or the body is told to stop)."""
    events: tuple[str, ...] = ()
    """What changed before this cycle: modules down or back, hot swaps, upper levels re-planning."""
    goal: tuple[float, ...] = ()
    """Level 0's goal this cycle: the task's, or the subgoal an upper level handed down."""
    level_ms: float = 0.0
    """Time the upper levels of a hierarchy spent on the plans they handed down this cycle (ms); they plan
    on their own thread, so in real time this is not time level 0 waited."""
    model_steps: float = 0.0
    """World-model steps evaluated for this cycle's plans, all levels (the compute budget actors report)."""

    @classmethod
    def stopped(cls, index: int, obs: Observation, action_dim: int, reason: str, started: float,
                events: tuple[str, ...]) -> Cycle:
        """A cycle with no state to plan or check from: the body is stopped (`halt`)."""
        return cls(index=index, t=obs.t, state=tuple(float(v) for v in obs.state), action=(0.0,) * action_dim,
                   source="stop", filtered=True, missed_deadline=False, plan_ms=math.nan,
                   cycle_ms=(time.perf_counter() - started) * 1e3, cost=math.nan, predicted_violation=math.nan,
                   filter_reason=reason, halt=True, checked=True, events=events)


@dataclass
class Counters:
    """Running counts over an episode."""

    cycles: int = 0
    missed_deadlines: int = 0
    filtered: int = 0
    planner_errors: int = 0
    safety_errors: int = 0
    replans: int = 0
    """Plans made by the upper levels of a hierarchy."""
    infeasible_reports: int = 0
    """Times level 0 reported its subgoal infeasible to the level above (a streak counts once)."""
    sources: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SOURCES, 0))


def to_body_action(action: tuple[float, ...]) -> np.ndarray:
    """The cycle's action as the (A,) float64 array a body takes."""
    return np.asarray(action, dtype=np.float64)
