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
from amiagent.errors import AmiagentError, ConfigError, ContractError
from amiagent.planning import SafetyFilter

log = logging.getLogger(__name__)

SOURCES = ("plan", "previous", "mode1", "stop")

PLANNER_GRACE_S = 5.0
"""How long close(), apply() and start() wait for a plan in flight before declaring the planner hung."""

SHARED_MODULES = object()
"""Default of `Agent(safety=...)`: a safety filter over the agent's own world model and cost."""


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

    def __post_init__(self) -> None:
        if isinstance(self.rate_hz, bool) or not isinstance(self.rate_hz, (int, float)) or not self.rate_hz > 0:
            raise ConfigError(f"agent.loop.rate_hz must be a number > 0, got {self.rate_hz!r}")
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
    halt: bool = False
    """No valid action could be formed: the body must be stopped instead of commanded."""


@dataclass
class Counters:
    """Running counts over an episode."""

    cycles: int = 0
    missed_deadlines: int = 0
    filtered: int = 0
    planner_errors: int = 0
    safety_errors: int = 0
    sources: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SOURCES, 0))


class Agent:
    """Runs the cycle over a set of modules. One agent drives one body.

    Plans are made on a worker thread while the cycle goes on: a late plan can
    still be running while the next cycle encodes and filters. Give the safety
    filter its own world model and cost (as `build_agent` does) or make sure
    the shared ones tolerate being called from two threads at once.
    `safety=None` turns the filter off (for measuring what it prevents only).
    """

    def __init__(self, modules: Modules, loop: LoopConfig | None = None,
                 safety: SafetyFilter | None | object = SHARED_MODULES):
        self.modules = modules
        self.loop = loop or LoopConfig()
        modules.actor.bind(modules.world_model, modules.cost)
        if modules.mode1 is not None:
            modules.mode1.bind(modules.world_model, modules.cost)
        if safety is SHARED_MODULES:
            safety = SafetyFilter(modules.world_model, modules.cost)
        if safety is None:
            log.warning("the safety filter is off: actions reach the body without a last guardrail check")
        self.safety = safety
        # the filter's own model instances share the agent's lifecycle (shared ones already do)
        shared = modules.all()
        self._safety_modules = [] if safety is None else [
            m for m in (safety.world_model, safety.cost) if not any(m is s for s in shared)
        ]
        self.settings: Settings | None = None
        self.goal_feasible = True
        self.counters = Counters()
        self._executor = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="amiagent-plan")
        self._pending: tuple[int, cf.Future] | None = None
        self._last_plan: tuple[int, Plan] | None = None
        self._closed = False
        self._hung = False

    # ------------------------------------------------------------------ lifecycle

    def start(self, task: Task, obs: Observation | None = None) -> Settings:
        """Configure every module for `task` and activate them; returns the settings.

        With the first observation, one plan is made and thrown away on the
        planning thread, so one-off start-up costs do not eat the first deadline.
        """
        settings = self.modules.configurator.configure(task)
        self.apply(settings)
        for module in self.modules.all() + self._safety_modules:
            module.activate()
        self.counters = Counters()
        if obs is not None:
            state = self.modules.perception.encode(obs)
            try:
                self._executor.submit(self.modules.actor.act, state).result(timeout=PLANNER_GRACE_S)
            except cf.TimeoutError:
                self._hung = True
                raise AmiagentError(f"the actor's first plan took over {PLANNER_GRACE_S:g} s: it is hung or far "
                                    "too slow for this control rate") from None
        self.modules.actor.reset()
        self.goal_feasible = self._goal_is_feasible(settings)
        if not self.goal_feasible:
            goal = ", ".join(f"{g:.3f}" for g in task.goal)
            log.warning("goal (%s) lies where a guardrail forbids the body to be: it is infeasible", goal)
        return settings

    def apply(self, settings: Settings) -> None:
        """Hand new settings to every module (between cycles).

        A plan in flight is waited for and dropped, and so is the last plan:
        no cycle mixes old and new settings.
        """
        state_dim = self.modules.world_model.state_dim
        if len(settings.goal) != state_dim:
            raise ConfigError(
                f"settings.goal has {len(settings.goal)} values but the world model's state has {state_dim}: "
                "make the configurator's state_dim match the world model"
            )
        self._drop_pending()
        if self._hung:
            raise AmiagentError("the planner is hung: this agent cannot take new settings; close it")
        self._last_plan = None
        for module in self.modules.all() + self._safety_modules:
            module.apply(settings)
        if self.safety is not None:
            self.safety.horizon = settings.horizon
        self.settings = settings

    def close(self) -> None:
        """Stop planning and close every module. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._drop_pending()
        # a hung planner thread cannot be stopped: do not wait for it
        self._executor.shutdown(wait=not self._hung, cancel_futures=True)
        for module in self.modules.all() + self._safety_modules:
            module.close()

    def _goal_is_feasible(self, settings: Settings) -> bool:
        # the goal state itself, held for two steps, must satisfy every guardrail
        goal = settings.goal_tensor().view(1, 1, -1).expand(1, 2, -1)
        actions = torch.zeros(1, 2, self.modules.world_model.action_dim)
        return bool(self.modules.cost.evaluate(goal, actions).feasible[0])

    def _drop_pending(self) -> None:
        if self._pending is not None:
            future = self._pending[1]
            self._pending = None
            future.cancel()
            try:
                future.result(timeout=PLANNER_GRACE_S)  # let an in-flight plan finish before state changes
            except cf.TimeoutError:
                self._hung = True
                log.error("a plan has been running for over %g s: the planner is hung", PLANNER_GRACE_S)
            except (cf.CancelledError, Exception):  # its result or failure is irrelevant now
                pass

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
        action, filtered, reason = self._filter(state, action)
        halt = action is None
        if halt:  # not even braking gave a valid action: the body is told to stop
            action, source = torch.zeros(self.modules.world_model.action_dim), "stop"
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
            halt=halt,
        )

    def _plan(self, index: int, state: torch.Tensor, started: float) -> tuple[Plan | None, bool]:
        """Ask the actor for a plan; None when it is late, broken or invalid. Also says if it was late."""
        actor = self.modules.mode1 if self.settings.mode == "mode1" and self.modules.mode1 else self.modules.actor
        if self._pending is None:
            self._pending = (index, self._executor.submit(actor.act, state))
        while True:
            asked_at, future = self._pending
            remaining = self.loop.deadline - (time.perf_counter() - started)
            try:
                plan = future.result(timeout=max(remaining, 0.0))
            except cf.TimeoutError:
                self.counters.missed_deadlines += 1
                return None, True  # still in flight: when it ends it will be stale and dropped
            except Exception:
                self._pending = None
                if asked_at == index:
                    self.counters.planner_errors += 1
                    log.exception("the actor failed; falling back")
                    return None, False
                log.warning("a late plan failed after its cycle", exc_info=True)
            if asked_at == index:
                break
            # a late plan from an older state finished: drop it, plan afresh with the time left
            self._pending = (index, self._executor.submit(actor.act, state))
        self._pending = None
        try:
            self._validate(plan.actions, "plan.actions", plan=True)
        except ContractError as exc:
            self.counters.planner_errors += 1
            log.error("discarding an invalid plan: %s", exc)
            return None, False
        self._last_plan = (index, plan)
        return plan, False

    def _validate(self, actions: torch.Tensor, what: str, plan: bool = False) -> None:
        """Raise ContractError unless `actions` is finite, real, in bounds and shaped (A,), or (H >= 1, A) for a plan."""
        wm = self.modules.world_model
        if not isinstance(actions, torch.Tensor):
            raise ContractError(f"{what} must be a torch.Tensor, got {type(actions).__name__}")
        if not actions.is_floating_point():
            raise ContractError(f"{what} must hold real floating-point values, got {actions.dtype}")
        expected = f"(H >= 1, {wm.action_dim})" if plan else f"({wm.action_dim},)"
        ndim = 2 if plan else 1
        if actions.ndim != ndim or actions.shape[-1] != wm.action_dim or (plan and actions.shape[0] < 1):
            raise ContractError(f"{what} must have shape {expected}, got {tuple(actions.shape)}")
        if not bool(torch.isfinite(actions).all()):
            raise ContractError(f"{what} holds non-finite values")
        if bool((actions < wm.action_low - 1e-6).any() or (actions > wm.action_high + 1e-6).any()):
            raise ContractError(f"{what} leaves the world model's action bounds")

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
                action = self.modules.mode1.act(state).actions[0]
                self._validate(action, "mode1 action")
                return action, "mode1"
            except Exception:
                log.exception("the Mode-1 policy failed; braking")
        return self.modules.world_model.brake_action(state)[0], "stop"

    def _filter(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor | None, bool, str]:
        """The action that may reach the body (None: none valid), whether it was replaced, and why."""
        try:
            self._validate(action, "action")
        except ContractError as exc:
            action, replaced, reason = self._brake(state), True, f"{exc}: braking"
        else:
            replaced, reason = False, ""
        if self.safety is not None and action is not None:
            try:
                verdict = self.safety.filter(state, action)
                action, replaced, reason = verdict.action, replaced or verdict.filtered, verdict.reason or reason
            except Exception:
                self.counters.safety_errors += 1
                log.exception("the safety filter failed; braking")
                action, replaced, reason = self._brake(state), True, "safety filter failed: braking"
        if action is not None:
            try:
                self._validate(action, "filtered action")
            except ContractError as exc:
                log.error("no valid action (%s): stopping the body", exc)
                return None, True, f"{exc}: stop"
        return action, replaced, reason

    def _brake(self, state: torch.Tensor) -> torch.Tensor | None:
        try:
            action = self.modules.world_model.brake_action(state)[0]
            self._validate(action, "brake action")
            return action
        except Exception:
            log.exception("the world model cannot brake from this state")
            return None


def to_body_action(action: tuple[float, ...]) -> np.ndarray:
    """The cycle's action as the (A,) float64 array a body takes."""
    return np.asarray(action, dtype=np.float64)
