"""The agent: six modules and the cycle that runs them.

    body.observe -> perception.encode -> actor.act -> safety filter -> body.command
                                                                   -> memory.write

A plan has a deadline. Planning runs on a worker thread; a plan not ready by
the deadline is not sent. The cycle then sends the next step of the last valid
plan while that plan is still valid (`plan_validity` steps from the cycle it
was asked in; a late plan that arrives within that becomes the last plan, its
past steps skipped), else the Mode-1 policy when there is one, else a braking
action. Every action,
whatever its source, passes the safety filter before it reaches the body.

Modules may live in other processes (the Ray runtime) and go down. A runtime
marks them with `module_down(...)`; the cycle then never calls them: without
perception the body is stopped, without the planning chain (actor, world model,
cost) the cycle falls back as for a late plan, and memory records wait in a
buffer. Work that must not overlap a cycle (a module coming back, a hot swap)
is queued with `between_cycles(...)` and runs at the start of the next cycle,
once no plan is in flight, so no cycle ever mixes old and new module state.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from typing import Any
from dataclasses import dataclass, field

import numpy as np
import torch

from amiagent.contracts import (
    Actor,
    Configurator,
    Cost,
    Memory,
    MemoryRecord,
    Module,
    Observation,
    Perception,
    Plan,
    Settings,
    Task,
    WorldModel,
)
from amiagent.errors import AmiagentError, BusError, ConfigError, ContractError
from amiagent.planning import SafetyFilter
from amiagent.planning.hierarchy import Hierarchy

log = logging.getLogger(__name__)

SOURCES = ("plan", "previous", "mode1", "stop")

PLANNER_GRACE_S = 5.0
"""How long close(), apply() and start() wait for a plan in flight before declaring the planner hung."""
LOCKSTEP_GRACE_S = 60.0
"""start()'s limit in lockstep (evaluation): a loaded machine must not fail an episode at its start (a
warm-up plan once took over 5 s with six processes on two cores); a hung planner is still caught."""

SHARED_MODULES = object()
"""Default of `Agent(safety=...)`: a safety filter over the agent's own world model and cost."""

MODULE_NAMES = ("configurator", "perception", "world_model", "cost", "memory", "actor", "mode1")
PLANNING_CHAIN = frozenset({"actor", "world_model", "cost"})
"""Modules a plan needs: while one is down, no plan is asked for."""

UNWRITTEN_MAX = 10_000
"""Memory records kept while the memory module is down, written when it is back."""
UNWRITTEN_PER_CYCLE = 32
"""Kept records written per cycle once memory is back, so catching up never stalls the cycle."""


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
    """Time the upper levels of a hierarchy spent planning this cycle (ms)."""
    model_steps: float = 0.0
    """World-model steps evaluated for this cycle's plans, all levels (the compute budget actors report)."""


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


class SwapTicket(threading.Event):
    """Set when a queued swap has been carried out (or has failed: then `error` says why)."""

    def __init__(self, label: str = "") -> None:
        super().__init__()
        self.error: str | None = None
        self.label = label
        """The plugin taking over, as `Agent.plugins` will show it."""

    def run(self, commit: Callable[[], None]) -> Callable[[], None]:
        """`commit`, wrapped to record its outcome on this ticket."""
        def work() -> None:
            try:
                commit()
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                self.set()
        return work


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
        """What level 0's modules run with now (with a hierarchy, the goal is the current subgoal)."""
        self.task_settings: Settings | None = None
        """What the configurator made of the task (the final goal)."""
        self.hierarchy: Hierarchy | None = None
        """Upper planning levels handing level 0 its subgoals (set by `build_agent` from config)."""
        self.goal_feasible = True
        self._goal_tolerance = 0.0
        self._goal_problem = ""
        self._subgoal_feasible = True
        self._below_infeasible = False
        self.counters = Counters()
        self._executor = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="amiagent-plan")
        self._pending: tuple[int, cf.Future] | None = None
        self._last_plan: tuple[int, Plan] | None = None
        self._closed = False
        self._hung = False
        self._lock = threading.Lock()  # guards what other threads hand the cycle: below
        self._down: set[str] = set()
        self._between: list[Callable[[], None]] = []
        self._events: list[str] = []
        self._unwritten: deque[MemoryRecord] = deque(maxlen=UNWRITTEN_MAX)
        self.failure: str | None = None
        """Set when a module is gone for good: every cycle halts from then on."""
        self.specs: dict[str, dict] = {}
        """Module name -> the plain config spec it was built from (kept up to date by swaps)."""
        self.plugins: dict[str, str] = {}
        """Module name -> label of the plugin it runs (kept up to date by swaps)."""
        self.safety_on_measured = False
        """`agent.safety.state: measured`: the filter checks actions against the body's measured state
        (obs.state) rather than perception's estimate; for planners in a learned latent space."""
        self.goal_from_observation = False
        """`agent.goal_from: observation`: the goal is perception's encoding of the task's goal observation."""
        self.safety_follows_planner = False
        self.safety_margin = 0.0
        """`agent.safety.extra_margin`: a cost swap rebuilds the filter's guardrails with it."""
        """Whether the safety filter's model is a copy of the planner's plugin (swapped along with it)."""

    # ------------------------------------------------------------------ lifecycle

    def start(self, task: Task, obs: Observation | None = None) -> Settings:
        """Configure every module for `task` and activate them; returns the settings.

        With the first observation, one plan is made and thrown away on the
        planning thread, so one-off start-up costs do not eat the first deadline.
        """
        settings = self.modules.configurator.configure(task)
        if self.goal_from_observation:
            settings = dataclasses.replace(settings, goal=self._encode_goal(task))
        self.apply(settings)
        self.task_settings = settings
        self._goal_tolerance = float(task.goal_tolerance)
        for module in self._live_modules():
            module.activate()
        self.counters = Counters()
        self._subgoal_feasible, self._below_infeasible = True, False
        if self.hierarchy is not None:
            self.hierarchy.start(settings, self.modules.world_model.state_dim)
        if obs is not None and not PLANNING_CHAIN & self.down:
            state = self.modules.perception.encode(obs)
            grace = LOCKSTEP_GRACE_S if self.loop.lockstep else PLANNER_GRACE_S
            warm_up = self._ask(self.modules.actor, state, limit=grace)
            try:
                warm_up.result(timeout=grace)
            except cf.TimeoutError:
                if warm_up.done():  # the planner itself raised a TimeoutError: a failure, not a hang
                    raise
                self._hung = True
                raise AmiagentError(f"the actor's first plan took over {grace:g} s: it is hung or far "
                                    "too slow for this control rate") from None
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
        if self._hung:
            raise AmiagentError("the planner is hung: this agent cannot take new settings; close it")
        self._last_plan = None
        for module in self._live_modules():  # modules that are down get them when they are back
            module.apply(settings)
        if self.safety is not None:
            self.safety.horizon = settings.horizon
        self.settings = settings

    def _live_modules(self) -> list[Module]:
        down = self.down
        return [m for name, m in self.modules.named().items() if name not in down] + self._safety_modules

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
        if self.hierarchy is not None:
            self.hierarchy.close()

    def _encode_goal(self, task: Task) -> tuple[float, ...]:
        if task.goal_observation is None:
            raise ConfigError("agent.goal_from is 'observation' but the task has no goal observation: give the "
                              "world a camera (world.params.camera=true)")
        goal = self.modules.perception.encode(task.goal_observation)
        self._validate_state(goal)
        return tuple(float(v) for v in goal[0])

    def _goal_is_feasible(self, settings: Settings) -> bool:
        # some state that realises the goal, held for two steps, must satisfy every guardrail;
        # the filter's model and guardrails live in this process and answer even when modules are away
        model = getattr(self.safety, "world_model", None) or self.modules.world_model
        if self.safety_on_measured:  # the goal is in the planner's states, not the filter's
            model = self.modules.world_model
        cost = self.modules.cost
        if "cost" in self.down and self.safety is not None:
            cost = self.safety.cost
        states = model.goal_states(settings.goal_tensor(), self._goal_tolerance)
        if states.shape[0] == 0:
            self._goal_problem = "no state of the body reaches it (outside the reachable workspace)"
            return False
        held = states.unsqueeze(1).expand(-1, 2, -1)
        actions = torch.zeros(states.shape[0], 2, self.modules.world_model.action_dim)
        self._goal_problem = "it lies where a guardrail forbids the body to be"
        return bool(cost.evaluate(held, actions).feasible.any())

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

    def _drop_pending(self) -> None:
        if self._pending is not None:
            future = self._pending[1]
            self._pending = None
            if PLANNING_CHAIN & self.down and hasattr(future, "abandon"):
                future.abandon()  # its process is gone or restarting: nothing is in flight to wait for
                return
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
        self._run_between_cycles()
        index = self.counters.cycles
        self.counters.cycles += 1
        with self._lock:
            down, events, self._events = frozenset(self._down), tuple(self._events), []
        state = None if self.failure is not None else self._perceive(obs, down)
        if state is None:  # no state to plan or check from (or a module is gone for good): the body is stopped
            self.counters.sources["stop"] += 1
            return Cycle(index=index, t=obs.t, state=tuple(float(v) for v in obs.state),
                         action=(0.0,) * self.modules.world_model.action_dim, source="stop", filtered=True,
                         missed_deadline=False, plan_ms=math.nan, cycle_ms=(time.perf_counter() - started) * 1e3,
                         cost=math.nan, predicted_violation=math.nan,
                         filter_reason=self.failure or "perception unavailable: stop", halt=True, checked=True,
                         events=events)

        level_ms = model_steps = 0.0
        if self.hierarchy is not None and not PLANNING_CHAIN & down:
            step = self.hierarchy.step(obs, index, self._below_infeasible)
            level_ms, model_steps = step.plan_ms, step.model_steps
            if step.goal is not None:
                self._retarget(step.goal)
            self.counters.replans += len(step.events)
            events = events + step.events
        plan, missed = self._plan(index, state, started, down)
        if plan is not None:
            infeasible = not (plan.feasible and self._subgoal_feasible)
            self.counters.infeasible_reports += int(infeasible and not self._below_infeasible)
            self._below_infeasible = infeasible
        measured = self._measured(obs) if self.safety_on_measured else state
        action, source = self._choose(index, state, plan, down, measured)
        action, filtered, reason, checked = self._filter(measured, action)
        halt = action is None
        if halt:  # not even braking gave a valid action: the body is told to stop
            action, source, checked = torch.zeros(self.modules.world_model.action_dim), "stop", True
        self.counters.filtered += int(filtered)
        self.counters.sources[source] += 1

        cost = float(plan.cost.total[0]) if plan is not None else math.nan
        violation = float(plan.cost.violation_total[0]) if plan is not None else math.nan
        self._remember(MemoryRecord(obs.t, state[0], action, cost, violation), down)
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
            checked=checked,
            events=events,
            goal=tuple(self.settings.goal),
            level_ms=level_ms,
            model_steps=model_steps + (float(plan.info.get("model_steps", 0.0)) if plan is not None else 0.0),
        )

    # ------------------------------------------------------------------ modules that come and go

    def module_down(self, names: Collection[str], why: str = "") -> None:
        """Stop calling the modules `names` (any thread): they are gone until `module_up`."""
        with self._lock:
            self._down.update(names)
            self._events.append(f"down {','.join(sorted(names))}" + (f": {why}" if why else ""))

    def module_up(self, names: Collection[str], note: str = "") -> None:
        """Call the modules `names` again (the cycle thread, from `between_cycles` work)."""
        with self._lock:
            self._down.difference_update(names)
            self._events.append(f"up {','.join(sorted(names))}" + (f": {note}" if note else ""))

    def fail(self, why: str) -> None:
        """A module is gone for good (any thread): every cycle from now on stops the body."""
        with self._lock:
            self.failure = why
            self._events.append(f"failed: {why}")

    @property
    def down(self) -> frozenset[str]:
        """Modules not being called right now."""
        with self._lock:
            return frozenset(self._down)

    def note(self, event: str) -> None:
        """Record an event; it is reported with the next cycle (any thread)."""
        with self._lock:
            self._events.append(event)

    def between_cycles(self, work: Callable[[], None]) -> None:
        """Run `work` on the cycle thread before the next cycle, with no plan in flight (any thread)."""
        with self._lock:
            self._between.append(work)

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
            self._last_plan = None
            self.modules.actor.reset()
        if "memory" in names:
            self._flush_unwritten(UNWRITTEN_PER_CYCLE)

    def swap(self, name: str, module: Module, *, label: str = "",
             safety_world_model: WorldModel | None = None, safety_cost: Cost | None = None,
             spec: Mapping[str, Any] | None = None) -> SwapTicket:
        """Replace module `name` by `module` at the next cycle boundary; the ticket returned is set when done.

        The new module must speak the old one's dimensions. It gets the current
        settings and is activated; the old one is closed. Replacing the world
        model or cost rebinds the actors; `safety_world_model` and
        `safety_cost` replace the safety filter's own model and guardrails in
        the same step.
        """
        old = self.modules.named().get(name)
        if old is None:
            raise ConfigError(f"cannot swap {name!r}: this agent's modules are {sorted(self.modules.named())}")
        check_swappable(name, old, module)
        done = SwapTicket(label or type(module).__name__)

        def commit() -> None:
            self.modules = dataclasses.replace(self.modules, **{name: module})
            if name in ("world_model", "cost", "actor", "mode1"):
                self.modules.actor.bind(self.modules.world_model, self.modules.cost)
                if self.modules.mode1 is not None:
                    self.modules.mode1.bind(self.modules.world_model, self.modules.cost)
            if safety_world_model is not None and self.safety is not None:
                self._replace_safety_module("world_model", safety_world_model)
            if safety_cost is not None and self.safety is not None:
                self._replace_safety_module("cost", safety_cost)
            if self.safety is not None:  # a filter sharing the planner's instances follows them
                if self.safety.world_model is old:
                    self.safety.world_model = module
                if self.safety.cost is old:
                    self.safety.cost = module
            self.refresh([name])
            old.close()
            self.plugins[name] = label or type(module).__name__
            if spec is not None:  # what a rebuild of this module would use from now on
                self.specs[name] = dict(spec)
            self.note(f"swap {name}: {self.plugins[name]}")

        self.between_cycles(done.run(commit))
        return done

    def swap_plugin(self, name: str, spec: Mapping[str, Any]) -> SwapTicket:
        """Replace module `name` at the next cycle boundary; `spec` is merged onto what it runs now.

        `{"params": {"substeps": 12}}` changes one parameter and keeps the
        others; a new `name` starts from that plugin's defaults. Built and
        checked now (errors raise here and nothing changes). When the safety
        filter uses a copy of the planner's world model, a world-model swap
        replaces that copy too; a cost swap rebuilds the filter's guardrails.
        """
        from amiagent.build import build_module, describe, merge_spec

        if name not in self.specs:
            raise ConfigError(f"cannot swap {name!r}: this agent's modules are {sorted(self.specs)}")
        spec = merge_spec(self.specs[name], spec)
        module = build_module(name, spec)
        checker, guardrails = self._safety_copies(name, spec)
        try:
            ticket = self.swap(name, module, label=describe(spec), safety_world_model=checker,
                               safety_cost=guardrails, spec=spec)
        except BaseException:
            for m in (module, checker, guardrails):
                if m is not None:
                    m.close()
            raise
        return ticket

    def _safety_copies(self, name: str, spec: Mapping[str, Any]) -> tuple[WorldModel | None, Cost | None]:
        """The safety filter's own copies for a swap: its model (when it follows the planner's) for a
        world-model swap, its guardrails (with the configured extra margin) for a cost swap."""
        from amiagent.build import build_cost, build_module

        if self.safety is None or not isinstance(getattr(self.safety, "world_model", None), WorldModel):
            return None, None
        shared = self.safety.world_model is self.modules.world_model
        if name == "world_model" and self.safety_follows_planner and not shared:
            return build_module("world_model", spec), None
        if name == "cost" and self.safety.cost is not self.modules.cost:
            return None, build_cost(spec, "swap cost", terms=False, extra_margin=self.safety_margin)
        return None, None

    def _replace_safety_module(self, attr: str, new: Module) -> None:
        """Give the safety filter `new` as its `world_model` or `cost`, with the current settings; close the old."""
        old = getattr(self.safety, attr)
        setattr(self.safety, attr, new)
        self._safety_modules = [new if m is old else m for m in self._safety_modules]
        if self.settings is not None:
            new.apply(self.settings)
        new.activate()
        old.close()

    def _run_between_cycles(self) -> None:
        with self._lock:
            work, self._between = self._between, []
        if not work:
            return
        self._drop_pending()
        for item in work:
            try:
                item()
            except Exception as exc:  # the cycle goes on with what it has
                log.exception("between-cycle work failed")
                self.note(f"error: {exc}")

    def _perceive(self, obs: Observation, down: frozenset[str]) -> torch.Tensor | None:
        if "perception" in down:
            return None
        try:
            state = self.modules.perception.encode(obs)
            self._validate_state(state)
            return state
        except BusError as exc:  # a module process going away: the supervisor reports it
            log.error("perception did not answer (%s): stopping the body", exc)
            return None
        except Exception:
            log.exception("perception failed: stopping the body")
            return None

    def _validate_state(self, state: torch.Tensor) -> None:
        dim = self.modules.world_model.state_dim
        if not isinstance(state, torch.Tensor) or tuple(state.shape) != (1, dim) or \
                not bool(torch.isfinite(state).all()):
            raise ContractError(f"perception must give a finite (1, {dim}) state tensor")

    def _remember(self, record: MemoryRecord, down: frozenset[str]) -> None:
        self._unwritten.append(record)  # written in order, now or once memory answers again
        if "memory" in down:
            return
        try:
            self._flush_unwritten(UNWRITTEN_PER_CYCLE)
        except Exception as exc:
            log.warning("memory write failed (%s); %d record(s) wait until memory answers again", exc,
                        len(self._unwritten))

    def _flush_unwritten(self, limit: int | None = None) -> None:
        """Write kept records in order; at most `limit` of them (the rest wait for later cycles)."""
        count = 0
        while self._unwritten and (limit is None or count < limit):
            count += 1
            record = self._unwritten.popleft()
            try:
                self.modules.memory.write(record)
            except Exception as exc:  # keep it, and any earlier write the memory hands back, in order
                self._unwritten.extendleft([record, *reversed(getattr(exc, "records", []))])
                raise

    def _plan(self, index: int, state: torch.Tensor, started: float,
              down: frozenset[str] = frozenset()) -> tuple[Plan | None, bool]:
        """Ask the actor for a plan; None when it is late, broken, invalid or its modules are down.
        Also says if it was late."""
        use_mode1 = self.settings.mode == "mode1" and self.modules.mode1 is not None
        actor = self.modules.mode1 if use_mode1 else self.modules.actor
        needed_down = ("mode1" in down) if use_mode1 else bool(PLANNING_CHAIN & down)
        if self._pending is None:
            if needed_down or not self._start_plan(index, actor, state):
                return None, False
        while True:
            asked_at, future = self._pending
            remaining = self.loop.deadline - (time.perf_counter() - started)
            try:
                plan = future.result(timeout=None if self.loop.lockstep else max(remaining, 0.0))
            except Exception as exc:
                if isinstance(exc, cf.TimeoutError) and not future.done():  # not a planner that raised one
                    self.counters.missed_deadlines += 1
                    return None, True  # still in flight: if it lands while valid, a later cycle uses its steps
                self._pending = None
                if asked_at == index:
                    self.counters.planner_errors += 1
                    log.exception("the actor failed; falling back")
                    return None, False
                log.warning("a late plan failed after its cycle", exc_info=True)
                plan = None
            if asked_at == index:
                break
            # a late plan from an older state finished: its first steps are past, never sent; its later
            # steps may still be used as a previous plan's are, while it is valid. Plan afresh with the time left
            self._pending = None
            if plan is not None:
                self._keep_late(asked_at, index, plan)
            if needed_down or not self._start_plan(index, actor, state):
                return None, False
        self._pending = None
        late = self.loop.lockstep and time.perf_counter() - started > self.loop.deadline
        self.counters.missed_deadlines += int(late)
        if not self._valid_plan(plan, "plan"):
            return None, False
        self._last_plan = (index, plan)
        return plan, late

    def _valid_plan(self, plan: Plan, what: str) -> bool:
        """Whether `plan`'s actions may be sent; an invalid one is counted as a planner error and logged."""
        try:
            self._validate(plan.actions, "plan.actions", plan=True)
            return True
        except ContractError as exc:
            self.counters.planner_errors += 1
            log.error("discarding an invalid %s: %s", what, exc)
            return False

    def _keep_late(self, asked_at: int, index: int, plan: Plan) -> None:
        """Keep a plan that finished after its cycle as the last plan, if it is newer and has steps left."""
        age = index - asked_at
        if age >= self.loop.plan_validity or (self._last_plan and self._last_plan[0] >= asked_at):
            return
        if not self._valid_plan(plan, "late plan") or age >= plan.actions.shape[0]:
            return
        self._last_plan = (asked_at, plan)
        self._below_infeasible = not (plan.feasible and self._subgoal_feasible)  # what the hierarchy hears

    def _start_plan(self, index: int, actor: Actor, state: torch.Tensor) -> bool:
        try:
            self._pending = (index, self._ask(actor, state))
            return True
        except Exception:  # e.g. a remote actor that cannot be reached: no plan this cycle
            self.counters.planner_errors += 1
            log.exception("cannot ask the actor for a plan; falling back")
            return False

    def _ask(self, actor: Actor, state: torch.Tensor, limit: float | None = None) -> cf.Future:
        """Start a plan: on the planning thread, or in the actor's own process when it is remote."""
        begin = getattr(actor, "begin_act", None)
        if begin is None:
            return self._executor.submit(actor.act, state)
        return begin(state) if limit is None else begin(state, limit=limit)

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

    def _measured(self, obs: Observation) -> torch.Tensor:
        """The body's measured state as the (1, S) tensor the safety filter checks."""
        return torch.as_tensor(np.asarray(obs.state, dtype=np.float32)).reshape(1, -1)

    def _choose(self, index: int, state: torch.Tensor, plan: Plan | None,
                down: frozenset[str] = frozenset(), measured: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, str]:
        """The action before filtering, and where it came from. `measured`: the state the brake is computed
        from (the filter's state)."""
        if plan is not None:
            return plan.actions[0], "plan"
        if self._last_plan is not None:
            made_at, last = self._last_plan
            step = index - made_at
            if step < min(last.actions.shape[0], self.loop.plan_validity):
                return last.actions[step], "previous"
        if self.modules.mode1 is not None and self.settings.mode != "mode1" and "mode1" not in down:
            try:
                action = self.modules.mode1.act(state).actions[0]
                self._validate(action, "mode1 action")
                return action, "mode1"
            except Exception:
                log.exception("the Mode-1 policy failed; braking")
        brake = self._brake(state if measured is None else measured)
        return (brake if brake is not None else torch.zeros(self.modules.world_model.action_dim)), "stop"

    def _filter(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor | None, bool, str, bool]:
        """The action that may reach the body (None: none valid), whether it was replaced, why, and
        whether the safety filter passed it."""
        try:
            self._validate(action, "action")
        except ContractError as exc:
            action, replaced, reason = self._brake(state), True, f"{exc}: braking"
        else:
            replaced, reason = False, ""
        checked = False
        if self.safety is not None and action is not None:
            try:
                verdict = self.safety.filter(state, action)
                action, replaced, reason = verdict.action, replaced or verdict.filtered, verdict.reason or reason
                checked = True
            except Exception:
                self.counters.safety_errors += 1
                log.exception("the safety filter failed; braking")
                action, replaced, reason = self._brake(state), True, "safety filter failed: braking"
        if action is not None:
            try:
                self._validate(action, "filtered action")
            except ContractError as exc:
                log.error("no valid action (%s): stopping the body", exc)
                return None, True, f"{exc}: stop", True
        return action, replaced, reason, checked

    def _brake(self, state: torch.Tensor) -> torch.Tensor | None:
        # the safety filter's model lives in this process: it answers even when the planner's is away
        model = getattr(self.safety, "world_model", None)
        if model is None:
            if "world_model" in self.down:
                return None
            model = self.modules.world_model
        try:
            action = model.brake_action(state)[0]
            self._validate(action, "brake action")
            return action
        except Exception:
            log.exception("the world model cannot brake from this state")
            return None


def to_body_action(action: tuple[float, ...]) -> np.ndarray:
    """The cycle's action as the (A,) float64 array a body takes."""
    return np.asarray(action, dtype=np.float64)


def check_swappable(name: str, old: Module, new: Module) -> None:
    """Refuse a replacement module of another kind or with other dimensions than the one it replaces."""
    if type(new).kind != type(old).kind:
        raise ConfigError(f"cannot swap {name}: the new module is a {type(new).kind}, not a {type(old).kind}")
    if isinstance(old, WorldModel):
        same = (old.state_dim, old.action_dim) == (new.state_dim, new.action_dim) and bool(
            torch.equal(old.action_low, new.action_low) and torch.equal(old.action_high, new.action_high))
        if not same:
            raise ConfigError(
                f"cannot swap {name}: the new world model has D={new.state_dim}, A={new.action_dim}, bounds "
                f"{new.action_low.tolist()}...{new.action_high.tolist()}; the running one D={old.state_dim}, "
                f"A={old.action_dim}, bounds {old.action_low.tolist()}...{old.action_high.tolist()}")
    if isinstance(old, WorldModel) and abs(float(old.dt) - float(new.dt)) > 1e-9:
        raise ConfigError(f"cannot swap {name}: the new world model steps {float(new.dt):g} s, the running one "
                          f"{float(old.dt):g} s (the control period): a plan would mean something else")
    if isinstance(old, Perception) and old.state_dim != new.state_dim:
        raise ConfigError(f"cannot swap {name}: the new perception gives {new.state_dim} values, "
                          f"the running one {old.state_dim}")
