"""The `local` runtime: every module of an agent in one process, called directly.

For debugging and fast tests; the same agent definition runs under other
runtimes. `run_episode` drives a world's body with an agent built by
`amiagent.build.build_agent`.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from amiagent.agent import Agent, Cycle, to_body_action
from amiagent.build import check_body_fits
from amiagent.contracts import World
from amiagent.evaluation.stats import INFEASIBLE_GOAL, MODULE_FAILED, REACHED, STALLED, TIMEOUT, EpisodeStats

log = logging.getLogger(__name__)

# With an infeasible goal, the episode ends once the planner has kept the body
# within STALL_RADIUS (m; or twice the goal tolerance, if smaller) for STALL_CYCLES
# planned cycles: it holds the closest safe place it can find.
STALL_CYCLES = 20
STALL_RADIUS = 0.15
# With a feasible goal, an episode that has kept the body within STALL_RADIUS (or
# the goal tolerance, if smaller) for STUCK_CYCLES planned cycles ends as "stalled" (a failure): a planner stuck in a
# local minimum, e.g. greedy behind a wall, does not get out by waiting.
STUCK_CYCLES = 60
# Seconds of braking after an episode ends, still watched for violations.
SETTLE_S = 1.0


@dataclass
class Episode:
    """The outcome of one episode, with its per-cycle telemetry."""

    seed: int
    status: str  # how it ended: one of amiagent.evaluation.stats.STATUSES (never "error")
    steps: int
    goal_feasible: bool
    violations: dict[str, int]
    final_distance: float
    min_clearance: float
    missed_deadlines: int
    filtered: int
    planner_errors: int
    sources: dict[str, int]
    wall_s: float
    infeasible_reports: int = 0
    """Times level 0 reported its (sub)goal infeasible to a level above."""
    replans: int = 0
    """Plans made by the upper levels of a hierarchy."""
    cycles: list[Cycle] = field(default_factory=list, repr=False)

    @property
    def stats(self) -> EpisodeStats:
        """Its figures by the one definition of success, infeasible and violation (amiagent.evaluation.stats)."""
        return EpisodeStats.of(self)

    @property
    def success(self) -> bool:
        return self.stats.success

    @property
    def total_violations(self) -> int:
        return self.stats.total_violations

    def cycle_ms(self) -> np.ndarray:
        return np.array([c.cycle_ms for c in self.cycles])

    def model_steps(self) -> np.ndarray:
        """World-model steps evaluated for each cycle's plans, all levels."""
        return np.array([c.model_steps for c in self.cycles])

    def planning_ms(self) -> np.ndarray:
        """Planning time of each cycle (ms): level 0's plan, if one was made, plus the upper levels'."""
        return np.array([(c.plan_ms if math.isfinite(c.plan_ms) else 0.0) + c.level_ms for c in self.cycles])

    def summary(self) -> dict[str, Any]:
        """Plain figures for summary.json."""
        ms = self.cycle_ms()
        return {
            "seed": self.seed,
            "status": self.status,
            "success": self.success,
            "steps": self.steps,
            "goal_feasible": self.goal_feasible,
            "violations": self.violations,
            "total_violations": self.total_violations,
            "final_distance_m": round(self.final_distance, 4),
            "min_clearance_m": None if math.isinf(self.min_clearance) else round(self.min_clearance, 4),
            "cycle_ms_p50": float(np.percentile(ms, 50)) if len(ms) else None,
            "cycle_ms_p99": float(np.percentile(ms, 99)) if len(ms) else None,
            "missed_deadlines": self.missed_deadlines,
            "safety_filtered": self.filtered,
            "planner_errors": self.planner_errors,
            "action_sources": self.sources,
            "wall_s": round(self.wall_s, 3),
        }


def _stalled(recent: deque[np.ndarray], cycles: int, radius: float = STALL_RADIUS) -> bool:
    """The last `cycles` planned positions all lie within `radius` of their mean."""
    if len(recent) < cycles:
        return False
    points = np.stack(list(recent)[-cycles:])
    return float(np.linalg.norm(points - points.mean(axis=0), axis=1).max()) < radius


def run_episode(
    agent: Agent,
    world: World,
    seed: int,
    *,
    realtime: bool = False,
    on_cycle: Callable[[Cycle], None] | None = None,
) -> Episode:
    """Run one seeded episode: until the goal is reached, found infeasible, or max_steps.

    Without `realtime` the simulation waits for the agent (deadlines still
    apply to planning); with it, each cycle is paced to the control period.
    """
    started = time.perf_counter()
    check_body_fits(agent, world)
    task = world.reset(seed)
    body = world.body
    agent.start(task, body.observe())
    arrival = float(world.arrival_speed)
    period = agent.loop.period
    cycles: list[Cycle] = []
    recent: deque[np.ndarray] = deque(maxlen=STUCK_CYCLES)
    status = TIMEOUT
    next_tick = time.perf_counter()
    try:
        for _ in range(task.max_steps):
            obs = body.observe()
            distance, speed = world.distance_to_goal(), world.goal_speed()
            if agent.goal_feasible and distance <= task.goal_tolerance and speed <= arrival:
                status = REACHED
                break
            if not agent.goal_feasible and _stalled(recent, STALL_CYCLES, min(STALL_RADIUS, 2 * task.goal_tolerance)):
                status = INFEASIBLE_GOAL  # holding as close as the guardrails allow
                break
            if agent.goal_feasible and _stalled(recent, STUCK_CYCLES, min(STALL_RADIUS, task.goal_tolerance)):
                status = STALLED
                break
            cycle = agent.cycle(obs)
            if agent.failure is not None:
                status = MODULE_FAILED  # a module is gone for good: the body stops, the episode ends
                body.stop()
                cycles.append(cycle)
                break
            if cycle.source == "plan":  # where the goal's dims of the state (position, end effector) are
                recent.append(np.asarray(cycle.state[: len(task.goal)], dtype=np.float64))
            else:
                recent.clear()
            if cycle.halt:
                body.stop()
            else:
                body.command(to_body_action(cycle.action))
            world.advance(period)
            cycles.append(cycle)
            if on_cycle is not None:
                on_cycle(cycle)
            if realtime:
                next_tick += period
                time.sleep(max(0.0, next_tick - time.perf_counter()))
    except BaseException:
        body.stop()  # whatever went wrong, the body is not left holding its last command
        raise
    # the body brakes to rest; the world keeps watching while it does
    body.stop()
    world.advance(SETTLE_S)
    counters = agent.counters
    return Episode(
        seed=seed,
        status=status,
        steps=len(cycles),
        goal_feasible=agent.goal_feasible,
        violations=dict(world.violations()),
        final_distance=float(world.distance_to_goal()),
        min_clearance=float(world.min_clearance()),
        missed_deadlines=counters.missed_deadlines,
        filtered=counters.filtered,
        planner_errors=counters.planner_errors,
        sources=dict(counters.sources),
        wall_s=time.perf_counter() - started,
        infeasible_reports=counters.infeasible_reports,
        replans=counters.replans,
        cycles=cycles,
    )
