"""The agent: the object that wires its parts (see the package docstring) and runs the cycle.

    body.observe -> perception.encode -> actor.act -> safety filter -> body.command
                                                                   -> memory.write
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np
import torch

from amiagent.agent.arbiter import Arbiter, check_state
from amiagent.agent.goals import goal_problem
from amiagent.agent.handles import InProcess, ModuleHandles
from amiagent.agent.health import Health
from amiagent.agent.levels import LevelClock
from amiagent.agent.options import (LOCKSTEP_GRACE_S, PLANNER_GRACE_S, PLANNING_CHAIN, AgentOptions, LoopConfig,
                                    Modules)
from amiagent.agent.outbox import UNWRITTEN_PER_CYCLE, Outbox
from amiagent.agent.records import Counters, Cycle
from amiagent.agent.scheduler import PlanScheduler
from amiagent.agent.swap import Swapper, SwapTicket
from amiagent.contracts import Cost, MemoryRecord, Module, Observation, Settings, Task, WorldModel
from amiagent.errors import AmiagentError, BusError, ConfigError
from amiagent.planning import SafetyFilter
from amiagent.planning.hierarchy import Hierarchy

log = logging.getLogger(__name__)

SHARED_MODULES = object()
"""Default of `Agent(safety=...)`: a safety filter over the agent's own world model and cost."""


class Agent:
    """Runs the cycle over a set of modules. One agent drives one body.

    Plans are made on a worker thread while the cycle goes on: a late plan can
    still be running while the next cycle encodes and filters. Give the safety
    filter its own world model and cost (as `build_agent` does) or make sure
    the shared ones tolerate being called from two threads at once.
    `safety=None` turns the filter off (for measuring what it prevents only).
    `hierarchy`: upper planning levels handing level 0 its subgoals. `runtime`: where the modules live
    (default: this process); it is told of the agent's timing, starts and swaps, and closed with it.
    """

    def __init__(self, modules: Modules, options: AgentOptions | LoopConfig | None = None,
                 safety: SafetyFilter | None | object = SHARED_MODULES, hierarchy: Hierarchy | None = None,
                 runtime: ModuleHandles | None = None, name: str = "agent"):
        if isinstance(options, LoopConfig) or options is None:
            options = AgentOptions(loop=options or LoopConfig())
        self.name = name
        self.options = options
        self.modules = modules
        modules.bind_actors()
        if safety is SHARED_MODULES:
            safety = SafetyFilter(modules.world_model, modules.cost)
        if safety is None:
            log.warning("the safety filter is off: actions reach the body without a last guardrail check")
        self.arbiter = Arbiter(safety)
        # the filter's own model instances share the agent's lifecycle (shared ones already do)
        shared = modules.all()
        self.safety_modules = [] if safety is None else [
            m for m in (safety.world_model, safety.cost) if not any(m is s for s in shared)
        ]
        self.scheduler = PlanScheduler(options.loop)
        self.levels = LevelClock(hierarchy) if hierarchy is not None else None
        self.health = Health()
        self.outbox = Outbox()
        self.swapper = Swapper(self)
        self.counters = Counters()
        self.settings: Settings | None = None
        """What level 0's modules run with now (with a hierarchy, the goal is the current subgoal)."""
        self.task_settings: Settings | None = None
        """What the configurator made of the task (the final goal)."""
        self.goal_feasible = True
        self._goal_tolerance = 0.0
        self._goal_problem = ""
        self._subgoal_feasible = True
        self._below_infeasible = False
        self._closed = False
        self.specs: dict[str, dict] = {}
        """Module name -> the plain config spec it was built from (kept up to date by swaps)."""
        self.plugins: dict[str, str] = {}
        """Module name -> label of the plugin it runs (kept up to date by swaps)."""
        self.runtime = runtime if runtime is not None else InProcess()
        self.runtime.attach(self)

    # ------------------------------------------------------------------ parts, as the rest of the code sees them

    @property
    def loop(self) -> LoopConfig:
        """The cycle's timing. Setting it (e.g. lockstep for an evaluation) takes effect at the next cycle."""
        return self.options.loop

    @loop.setter
    def loop(self, loop: LoopConfig) -> None:
        self.options = dataclasses.replace(self.options, loop=loop)
        self.scheduler.loop = loop
        self.runtime.loop_changed(loop)

    @property
    def safety(self) -> SafetyFilter | None:
        """The safety filter every action passes (None: off)."""
        return self.arbiter.safety

    @property
    def hierarchy(self) -> Hierarchy | None:
        """The upper planning levels, if any."""
        return self.levels.hierarchy if self.levels is not None else None

    @property
    def failure(self) -> str | None:
        """Set when a module is gone for good: every cycle halts from then on."""
        return self.health.failure

    @property
    def down(self) -> frozenset[str]:
        """Modules not being called right now."""
        return self.health.down

    def module_down(self, names: Collection[str], why: str = "") -> None:
        """Stop calling the modules `names` (any thread): they are gone until `module_up`."""
        self.health.module_down(names, why)

    def module_up(self, names: Collection[str], note: str = "") -> None:
        """Call the modules `names` again (the cycle thread, from `between_cycles` work)."""
        self.health.module_up(names, note)

    def fail(self, why: str) -> None:
        """A module is gone for good (any thread): every cycle from now on stops the body."""
        self.health.fail(why)

    def note(self, event: str) -> None:
        """Record an event; it is reported with the next cycle (any thread)."""
        self.health.note(event)

    def between_cycles(self, work: Callable[[], None]) -> None:
        """Run `work` on the cycle thread before the next cycle, with no plan in flight (any thread)."""
        self.health.between_cycles(work)

    def swap(self, name: str, module: Module, *, label: str = "", safety_world_model: WorldModel | None = None,
             safety_cost: Cost | None = None, spec: Mapping[str, Any] | None = None) -> SwapTicket:
        """Replace module `name` by `module` at the next cycle boundary (see `Swapper.swap`)."""
        if not self.runtime.in_process:
            raise ConfigError("this agent's modules live in other processes: swap them with "
                              "swap_plugin(name, spec)")
        return self.swapper.swap(name, module, label=label, safety_world_model=safety_world_model,
                                 safety_cost=safety_cost, spec=spec)

    def swap_plugin(self, name: str, spec: Mapping[str, Any]) -> SwapTicket:
        """Replace module `name` at the next cycle boundary by one built from its spec merged with `spec`
        (`{"params": {"substeps": 12}}` changes one parameter); see `Swapper.swap_plugin`."""
        return self.runtime.swap_plugin(self, name, spec)

    # ------------------------------------------------------------------ lifecycle

    def start(self, task: Task, obs: Observation | None = None) -> Settings:
        """Configure every module for `task` and activate them; returns the settings.

        With the first observation, one plan is made and thrown away on the
        planning thread, so one-off start-up costs do not eat the first deadline.
        """
        self.runtime.before_start(self)
        settings = self.modules.configurator.configure(task)
        if self.options.goal_from_observation:
            settings = dataclasses.replace(settings, goal=self._encode_goal(task))
        self.apply(settings)
        self.task_settings = settings
        self._goal_tolerance = float(task.goal_tolerance)
        for module in self._live_modules():
            module.activate()
        self.counters = Counters()
        self._subgoal_feasible, self._below_infeasible = True, False
        if self.levels is not None:
            self.levels.start(settings, self.modules.world_model.state_dim)
        if obs is not None and not PLANNING_CHAIN & self.down:
            grace = LOCKSTEP_GRACE_S if self.loop.lockstep else PLANNER_GRACE_S
            self.scheduler.warm_up(self.modules.actor, self.modules.perception.encode(obs), grace)
        self.modules.actor.reset()
        self.goal_feasible = self._goal_is_feasible(settings)
        if not self.goal_feasible:
            goal = ", ".join(f"{g:.3f}" for g in task.goal)
            log.warning("goal (%s) is infeasible: %s", goal, self._goal_problem)
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
        if self.scheduler.hung:
            raise AmiagentError("the planner is hung: this agent cannot take new settings; close it")
        self.scheduler.last_plan = None
        for module in self._live_modules():  # modules that are down get them when they are back
            module.apply(settings)
        if self.safety is not None:
            self.safety.horizon = settings.horizon
        self.settings = settings

    def refresh(self, names: Collection[str]) -> None:
        """Bring modules that were replaced or restarted up to date (the cycle thread, between cycles).

        They get the current settings and are activated; the actor forgets its
        warm start and the last plan is dropped when the planning chain changed;
        memory records kept while memory was away are written.
        """
        named = self.modules.named()
        for name in names:
            module = named.get(name)
            if module is None:
                continue
            if self.settings is not None:
                module.apply(self.settings)
            module.activate()
        if PLANNING_CHAIN & set(names) or "mode1" in names:
            self.scheduler.last_plan = None
            self.modules.actor.reset()
        if "memory" in names:
            self.outbox.flush(self.modules.memory, UNWRITTEN_PER_CYCLE)

    def close(self) -> None:
        """Stop planning and close every module. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.runtime.detach()
        self._drop_pending()
        self.scheduler.close()
        for module in self.modules.all() + self.safety_modules:
            module.close()
        try:
            if self.levels is not None:
                self.levels.close()
        finally:
            self.runtime.close()

    # ------------------------------------------------------------------ the cycle

    def cycle(self, obs: Observation) -> Cycle:
        """One control cycle from an observation to the action to send (in `Cycle.action`)."""
        if self.settings is None:
            raise ConfigError("Agent.start(task) must be called before cycle()")
        started = time.perf_counter()
        self.run_between_cycles()
        index = self.counters.cycles
        self.counters.cycles += 1
        down, events = self.health.take()
        state = None if self.failure is not None else self._perceive(obs, down)
        if state is None:  # no state to plan or check from (or a module is gone for good): the body is stopped
            self.counters.sources["stop"] += 1
            return Cycle.stopped(index, obs, self.modules.world_model.action_dim,
                                 self.failure or "perception unavailable: stop", started, events)

        level_ms = model_steps = 0.0
        if self.levels is not None and not PLANNING_CHAIN & down:
            step = self.levels.step(obs, index, self._below_infeasible, self.loop.lockstep)
            if step is not None:
                level_ms, model_steps = step.plan_ms, step.model_steps
                if step.goal is not None:
                    self._retarget(step.goal)
                self.counters.replans += len(step.events)
                events = events + step.events
        plan, missed = self._plan(index, state, started, down)
        measured = self._measured(obs) if self.options.safety_on_measured else state
        use_mode1 = self.settings.mode != "mode1"  # Mode 1 stands in for Mode 2, not for itself
        decision = self.arbiter.decide(self.modules, state, measured, plan, self.scheduler.previous_step(index),
                                       use_mode1, down, self.counters)
        self.counters.filtered += int(decision.filtered)
        self.counters.sources[decision.source] += 1

        cost = float(plan.cost.total[0]) if plan is not None else math.nan
        violation = float(plan.cost.violation_total[0]) if plan is not None else math.nan
        record = MemoryRecord(obs.t, state[0], decision.action, cost, violation)
        self.outbox.post(self.modules.memory, record, "memory" in down)
        return Cycle(
            index=index,
            t=obs.t,
            state=tuple(state[0].tolist()),
            action=tuple(float(a) for a in decision.action),
            source=decision.source,
            filtered=decision.filtered,
            missed_deadline=missed,
            plan_ms=float(plan.info.get("plan_ms", math.nan)) if plan is not None else math.nan,
            cycle_ms=(time.perf_counter() - started) * 1e3,
            cost=cost,
            predicted_violation=violation,
            filter_reason=decision.reason,
            halt=decision.halt,
            checked=decision.checked,
            events=events,
            goal=tuple(self.settings.goal),
            level_ms=level_ms,
            model_steps=model_steps + (float(plan.info.get("model_steps", 0.0)) if plan is not None else 0.0),
        )

    def run_between_cycles(self) -> None:
        """Carry out the work queued for a cycle boundary now, with no plan in flight (the cycle thread)."""
        work = self.health.take_work()
        if work:
            self._drop_pending()
            self.health.run(work)

    def _plan(self, index: int, state: torch.Tensor, started: float, down: frozenset[str]):
        """This cycle's plan (see `PlanScheduler.plan`), and what level 0 reports to the level above."""
        use_mode1 = self.settings.mode == "mode1" and self.modules.mode1 is not None
        actor = self.modules.mode1 if use_mode1 else self.modules.actor
        chain_down = ("mode1" in down) if use_mode1 else bool(PLANNING_CHAIN & down)
        plan, missed = self.scheduler.plan(index, actor, self.modules.world_model, state, started, chain_down,
                                           self.counters)
        if self.scheduler.late_feasible is not None:  # a late plan became the last plan
            self._below_infeasible = not (self.scheduler.late_feasible and self._subgoal_feasible)
            self.scheduler.late_feasible = None
        if plan is not None:
            infeasible = not (plan.feasible and self._subgoal_feasible)
            self.counters.infeasible_reports += int(infeasible and not self._below_infeasible)
            self._below_infeasible = infeasible
        return plan, missed

    # ------------------------------------------------------------------ goals

    def _encode_goal(self, task: Task) -> tuple[float, ...]:
        if task.goal_observation is None:
            raise ConfigError("agent.goal_from is 'observation' but the task has no goal observation: give the "
                              "world a camera (world.params.camera=true)")
        goal = self.modules.perception.encode(task.goal_observation)
        check_state(goal, self.modules.world_model.state_dim)
        return tuple(float(v) for v in goal[0])

    def _goal_is_feasible(self, settings: Settings) -> bool:
        # the filter's model and guardrails live in this process and answer even when modules are away
        model = self.safety.world_model if self.safety is not None else self.modules.world_model
        if self.options.safety_on_measured:  # the goal is in the planner's states, not the filter's
            model = self.modules.world_model
        cost = self.safety.cost if "cost" in self.down and self.safety is not None else self.modules.cost
        self._goal_problem = goal_problem(model, cost, settings.goal_tensor(), self._goal_tolerance,
                                          self.modules.world_model.action_dim)
        return not self._goal_problem

    def _retarget(self, goal: tuple[float, ...]) -> None:
        """Give level 0's planning modules a new goal (a subgoal from above), between plans.

        Unlike `apply`, the last plan is kept as a fallback: it was made under
        the same guardrails, only toward another point.
        """
        self._drop_pending()
        settings = dataclasses.replace(self.settings, goal=tuple(float(g) for g in goal))
        named = self.modules.named()
        for name in ("world_model", "cost", "actor", "mode1"):
            if name in named and name not in self.down:
                named[name].apply(settings)
        self.settings = settings
        self._subgoal_feasible = self._goal_is_feasible(settings)

    # ------------------------------------------------------------------ helpers

    def _live_modules(self) -> list[Module]:
        down = self.down
        return [m for name, m in self.modules.named().items() if name not in down] + self.safety_modules

    def _drop_pending(self) -> None:
        self.scheduler.drop_pending(abandon=bool(PLANNING_CHAIN & self.down))

    def _perceive(self, obs: Observation, down: frozenset[str]) -> torch.Tensor | None:
        if "perception" in down:
            return None
        try:
            state = self.modules.perception.encode(obs)
            check_state(state, self.modules.world_model.state_dim)
            return state
        except BusError as exc:  # a module process going away: the supervisor reports it
            log.error("perception did not answer (%s): stopping the body", exc)
            return None
        except Exception:
            log.exception("perception failed: stopping the body")
            return None

    @staticmethod
    def _measured(obs: Observation) -> torch.Tensor:
        """The body's measured state as the (1, S) tensor the safety filter checks."""
        return torch.as_tensor(np.asarray(obs.state, dtype=np.float32)).reshape(1, -1)

