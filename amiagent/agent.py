"""The agent: six modules and the cycle that runs them.

    body.observe -> perception.encode -> actor.act -> safety filter -> body.command
                                                                   -> memory.write

A plan has a deadline. Planning runs on a worker thread; a plan not ready by
the deadline is never sent (it is discarded when it arrives). The cycle then
sends the next step of the last valid plan while that plan is still valid,
else the Mode-1 policy when there is one, else a braking action. Every action,
whatever its source, passes the safety filter before it reaches the body.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from amiagent.contracts import (
    Actor,
    Configurator,
    Cost,
    Memory,
    MemoryRecord,
    Observation,
    Perception,
    Plan,
    Settings,
    Task,
    WorldModel,
)
from amiagent.errors import ConfigError, ContractError
from amiagent.planning import SafetyFilter

log = logging.getLogger(__name__)

SOURCES = ("plan", "previous", "mode1", "stop")


@dataclass(frozen=True)
class LoopConfig:
    """Timing of the agent cycle.

    `rate_hz`: control rate. `deadline_s`: time a plan may take from the start
    of the cycle (default: 80% of the period). `plan_validity`: how many
    steps of a plan may still be used after it was made. `safety`: run the
    safety filter (turn off only to measure what it prevents).
    """

    rate_hz: float = 10.0
    deadline_s: float | None = None
    plan_validity: int = 5
    safety: bool = True
    safety_directions: int = 8

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ConfigError(f"agent.rate_hz must be > 0, got {self.rate_hz}")
        if self.deadline_s is not None and not self.deadline_s > 0:
            raise ConfigError(f"agent.deadline_s must be > 0 or null, got {self.deadline_s}")
        if self.plan_validity < 1:
            raise ConfigError(f"agent.plan_validity must be >= 1, got {self.plan_validity}")

    @property
    def period(self) -> float:
        return 1.0 / self.rate_hz

    @property
    def deadline(self) -> float:
        return self.deadline_s if self.deadline_s is not None else 0.8 * self.period


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


@dataclass
class Counters:
    """Running counts over an episode."""

    cycles: int = 0
    missed_deadlines: int = 0
    filtered: int = 0
    planner_errors: int = 0
    sources: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SOURCES, 0))


class Agent:
    """Runs the cycle over a set of modules. One agent drives one body."""

    def __init__(self, modules: Modules, loop: LoopConfig | None = None):
        self.modules = modules
        self.loop = loop or LoopConfig()
        modules.actor.bind(modules.world_model, modules.cost)
        if modules.mode1 is not None:
            modules.mode1.bind(modules.world_model, modules.cost)
        self.safety = SafetyFilter(modules.world_model, modules.cost, directions=self.loop.safety_directions)
        self.settings: Settings | None = None
        self.goal_feasible = True
        self.counters = Counters()
        self._executor = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="amiagent-plan")
        self._pending: tuple[int, cf.Future] | None = None
        self._last_plan: tuple[int, Plan] | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def start(self, task: Task, obs: Observation | None = None) -> Settings:
        """Configure every module for `task` and activate them; returns the settings.

        With the first observation, one plan is made and thrown away on the
        planning thread, so one-off start-up costs do not eat the first deadline.
        """
        settings = self.modules.configurator.configure(task)
        self.apply(settings)
        for module in self.modules.all():
            module.activate()
        self.counters = Counters()
        self._drop_pending()
        self._last_plan = None
        if obs is not None:
            state = self.modules.perception.encode(obs)
            self._executor.submit(self.modules.actor.act, state).result()
        self.modules.actor.reset()
        self.goal_feasible = self._goal_is_feasible(settings)
        if not self.goal_feasible:
            log.warning("goal %s lies where a guardrail forbids the body to be: it is infeasible", settings.goal)
        return settings

    def apply(self, settings: Settings) -> None:
        """Hand new settings to every module (between cycles)."""
        for module in self.modules.all():
            module.apply(settings)
        self.safety.horizon = settings.horizon
        self.settings = settings

    def close(self) -> None:
        """Stop planning and close every module. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._drop_pending()
        self._executor.shutdown(wait=True, cancel_futures=True)
        for module in self.modules.all():
            module.close()

    def _goal_is_feasible(self, settings: Settings) -> bool:
        # the goal state itself, held for two steps, must satisfy every guardrail
        goal = settings.goal_tensor().view(1, 1, -1).expand(1, 2, -1)
        actions = torch.zeros(1, 2, self.modules.world_model.action_dim)
        return bool(self.modules.cost.evaluate(goal, actions).feasible[0])

    def _drop_pending(self) -> None:
        if self._pending is not None:
            self._pending[1].cancel()
            try:
                self._pending[1].result()  # let an in-flight plan finish before state is reset
            except (cf.CancelledError, Exception):  # its result or failure is irrelevant now
                pass
            self._pending = None

    # ------------------------------------------------------------------ the cycle

    def cycle(self, obs: Observation) -> Cycle:
        """One control cycle from an observation to the action to send (in `Cycle.action`)."""
        if self.settings is None:
            raise ConfigError("Agent.start(task) must be called before cycle()")
        started = time.perf_counter()
        index = self.counters.cycles
        self.counters.cycles += 1
        state = self.modules.perception.encode(obs)

        plan, missed = self._plan(index, state, started)
        action, source = self._choose(index, state, plan)
        if self.loop.safety:
            verdict = self.safety.filter(state, action)
            action, filtered, reason = verdict.action, verdict.filtered, verdict.reason
        else:
            filtered, reason = False, ""
        self.counters.filtered += int(filtered)
        self.counters.sources[source] += 1

        cost = float(plan.cost.total[0]) if plan is not None else math.nan
        violation = float(plan.cost.violation_total[0]) if plan is not None else math.nan
        self.modules.memory.write(MemoryRecord(obs.t, state[0], action, cost, violation))
        return Cycle(
            index=index,
            t=obs.t,
            state=tuple(state[0].tolist()),
            action=tuple(float(a) for a in action),
            source=source,
            filtered=filtered,
            missed_deadline=missed,
            plan_ms=float(plan.info.get("plan_ms", math.nan)) if plan is not None else math.nan,
            cycle_ms=(time.perf_counter() - started) * 1e3,
            cost=cost,
            predicted_violation=violation,
            filter_reason=reason,
        )

    def _plan(self, index: int, state: torch.Tensor, started: float) -> tuple[Plan | None, bool]:
        """Ask the actor for a plan; None when it is late, stale or broken."""
        actor = self.modules.mode1 if self.settings.mode == "mode1" and self.modules.mode1 else self.modules.actor
        if self._pending is None:
            self._pending = (index, self._executor.submit(actor.act, state))
        asked_at, future = self._pending
        remaining = self.loop.deadline - (time.perf_counter() - started)
        try:
            plan = future.result(timeout=max(remaining, 0.0))
        except cf.TimeoutError:
            self.counters.missed_deadlines += 1
            return None, True  # still in flight: its result will be stale and dropped
        except Exception:
            self._pending = None
            self.counters.planner_errors += 1
            log.exception("the actor failed; falling back")
            return None, False
        self._pending = None
        if asked_at != index:
            return None, False  # planned from an older state than the one in hand
        try:
            self._validate(plan)
        except ContractError as exc:
            self.counters.planner_errors += 1
            log.error("discarding an invalid plan: %s", exc)
            return None, False
        self._last_plan = (index, plan)
        return plan, False

    def _validate(self, plan: Plan) -> None:
        wm = self.modules.world_model
        actions = plan.actions
        if actions.ndim != 2 or actions.shape[1] != wm.action_dim:
            raise ContractError(f"plan.actions must be (H, {wm.action_dim}), got {tuple(actions.shape)}")
        if not bool(torch.isfinite(actions).all()):
            raise ContractError("plan.actions holds non-finite values")
        if bool((actions < wm.action_low - 1e-6).any() or (actions > wm.action_high + 1e-6).any()):
            raise ContractError("plan.actions leave the world model's action bounds")

    def _choose(self, index: int, state: torch.Tensor, plan: Plan | None) -> tuple[torch.Tensor, str]:
        """The action before filtering, and where it came from."""
        if plan is not None:
            return plan.actions[0], "plan"
        if self._last_plan is not None:
            made_at, last = self._last_plan
            step = index - made_at
            if step < min(last.actions.shape[0], self.loop.plan_validity):
                return last.actions[step], "previous"
        if self.modules.mode1 is not None and self.settings.mode != "mode1":
            try:
                return self.modules.mode1.act(state).actions[0], "mode1"
            except Exception:
                log.exception("the Mode-1 policy failed; braking")
        return self.modules.world_model.brake_action(state)[0], "stop"


def to_body_action(action: tuple[float, ...]) -> np.ndarray:
    """The cycle's action as the (A,) float64 array a body takes."""
    return np.asarray(action, dtype=np.float64)
