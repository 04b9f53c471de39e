"""Level 0's clock: plans are asked on a worker thread and waited for until the cycle's deadline.

A plan not ready by the deadline is not sent. While it is still running, the
cycle falls back; if it lands while its steps are still valid (`plan_validity`
steps from the cycle it was asked in), it becomes the last plan, its past
steps skipped. In lockstep every plan is waited for, however late (it still
counts as missed), so an evaluation depends on its seed only.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time

import torch

from amiagent.agent.arbiter import check_actions
from amiagent.agent.options import PLANNER_GRACE_S, LoopConfig
from amiagent.agent.records import Counters
from amiagent.contracts import Actor, Plan, PlansAhead, WorldModel
from amiagent.errors import AmiagentError, ContractError

log = logging.getLogger(__name__)


class PlanScheduler:
    """The plan in flight, the last valid plan, and the deadline between them."""

    def __init__(self, loop: LoopConfig):
        self.loop = loop
        self.executor = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="amiagent-plan")
        self.pending: tuple[int, cf.Future] | None = None
        """(cycle asked in, the plan's future) while a plan is in flight."""
        self.last_plan: tuple[int, Plan] | None = None
        """(cycle asked in, plan): the newest valid plan, whose later steps stand in for a late one."""
        self.hung = False
        """A plan outran PLANNER_GRACE_S: the planner thread cannot be trusted (or stopped) any more."""
        self.late_feasible: bool | None = None
        """Set when a late plan became the last plan: whether it was feasible (what the level above hears)."""

    def ask(self, actor: Actor, state: torch.Tensor, limit: float | None = None) -> cf.Future:
        """Start a plan: on the planning thread, or in the actor's own process when it is remote."""
        if isinstance(actor, PlansAhead):
            return actor.begin_act(state) if limit is None else actor.begin_act(state, limit=limit)
        return self.executor.submit(actor.act, state)

    def warm_up(self, actor: Actor, state: torch.Tensor, grace: float) -> None:
        """One plan, made and thrown away, so one-off start-up costs do not eat the first deadline."""
        warm_up = self.ask(actor, state, limit=grace)
        try:
            warm_up.result(timeout=grace)
        except cf.TimeoutError:
            if warm_up.done():  # the planner itself raised a TimeoutError: a failure, not a hang
                raise
            self.hung = True
            raise AmiagentError(f"the actor's first plan took over {grace:g} s: it is hung or far "
                                "too slow for this control rate") from None

    def plan(self, index: int, actor: Actor, model: WorldModel, state: torch.Tensor, started: float,
             chain_down: bool, counters: Counters) -> tuple[Plan | None, bool]:
        """This cycle's plan from `actor` (None when it is late, broken, invalid, or `chain_down`: a module
        it needs is down), and whether it was late."""
        if self.pending is None:
            if chain_down or not self._start(index, actor, state, counters):
                return None, False
        while True:
            asked_at, future = self.pending
            remaining = self.loop.deadline - (time.perf_counter() - started)
            try:
                plan = future.result(timeout=None if self.loop.lockstep else max(remaining, 0.0))
            except Exception as exc:
                if isinstance(exc, cf.TimeoutError) and not future.done():  # not a planner that raised one
                    counters.missed_deadlines += 1
                    return None, True  # still in flight: if it lands while valid, a later cycle uses its steps
                self.pending = None
                if asked_at == index:
                    counters.planner_errors += 1
                    log.exception("the actor failed; falling back")
                    return None, False
                log.warning("a late plan failed after its cycle", exc_info=True)
                plan = None
            if asked_at == index:
                break
            # a late plan from an older state finished: its first steps are past, never sent; its later
            # steps may still be used as a previous plan's are, while it is valid. Plan afresh with the time left
            self.pending = None
            if plan is not None:
                self._keep_late(asked_at, index, plan, model, counters)
            if chain_down or not self._start(index, actor, state, counters):
                return None, False
        self.pending = None
        late = self.loop.lockstep and time.perf_counter() - started > self.loop.deadline
        counters.missed_deadlines += int(late)
        if not self._valid(plan, model, "plan", counters):
            return None, False
        self.last_plan = (index, plan)
        return plan, late

    def previous_step(self, index: int) -> torch.Tensor | None:
        """This cycle's step of the last valid plan, while that plan is valid."""
        if self.last_plan is None:
            return None
        made_at, last = self.last_plan
        step = index - made_at
        return last.actions[step] if step < min(last.actions.shape[0], self.loop.plan_validity) else None

    def drop_pending(self, abandon: bool = False) -> None:
        """Let a plan in flight finish (up to PLANNER_GRACE_S) and forget it, before state changes.
        `abandon`: its process is gone or restarting, so nothing is in flight to wait for."""
        if self.pending is None:
            return
        future = self.pending[1]
        self.pending = None
        if abandon and hasattr(future, "abandon"):
            future.abandon()
            return
        future.cancel()
        try:
            future.result(timeout=PLANNER_GRACE_S)
        except cf.TimeoutError:
            self.hung = True
            log.error("a plan has been running for over %g s: the planner is hung", PLANNER_GRACE_S)
        except (cf.CancelledError, Exception):  # its result or failure is irrelevant now
            pass

    def close(self) -> None:
        """Stop the planning thread; a hung one cannot be stopped, so it is not waited for."""
        self.executor.shutdown(wait=not self.hung, cancel_futures=True)

    def _start(self, index: int, actor: Actor, state: torch.Tensor, counters: Counters) -> bool:
        try:
            self.pending = (index, self.ask(actor, state))
            return True
        except Exception:  # e.g. a remote actor that cannot be reached: no plan this cycle
            counters.planner_errors += 1
            log.exception("cannot ask the actor for a plan; falling back")
            return False

    def _valid(self, plan: Plan, model: WorldModel, what: str, counters: Counters) -> bool:
        """Whether `plan`'s actions may be sent; an invalid one is counted as a planner error and logged."""
        try:
            check_actions(plan.actions, model, "plan.actions", plan=True)
            return True
        except ContractError as exc:
            counters.planner_errors += 1
            log.error("discarding an invalid %s: %s", what, exc)
            return False

    def _keep_late(self, asked_at: int, index: int, plan: Plan, model: WorldModel, counters: Counters) -> None:
        """Keep a plan that finished after its cycle as the last plan, if it is newer and has steps left."""
        age = index - asked_at
        if age >= self.loop.plan_validity or (self.last_plan and self.last_plan[0] >= asked_at):
            return
        if not self._valid(plan, model, "late plan", counters) or age >= plan.actions.shape[0]:
            return
        self.last_plan = (asked_at, plan)
        self.late_feasible = bool(plan.feasible)
