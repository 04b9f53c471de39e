"""The agent cycle: deadlines, fallbacks, plan validation and the safety filter, on a real pybullet body."""

from __future__ import annotations

import contextlib
import threading

import pytest
import torch

from amiagent import registry
from amiagent.agent import to_body_action
from amiagent.contracts import Plan
from amiagent.errors import ConfigError
from amiagent.build import build_agent, build_world
from tests._lateness import drive, scheduled_planner  # noqa: F401 (a fixture)

MPC = registry.load_class("actor", "mpc")

DEADLINE_S = 0.02
"""The deadline of the deadline tests. Their planner's lateness is set in cycles (tests/_lateness.py), so
outcomes do not depend on it; short, because each late cycle waits it out."""


class BrokenActor(MPC):
    """Raises, or returns NaN actions, to exercise the fallbacks."""

    mode = "raise"

    def act(self, state):
        if self.mode == "raise":
            raise RuntimeError("planner crashed")
        if self.mode == "timeout":  # a planner's own TimeoutError is a failure, not a plan still in flight
            raise TimeoutError("planner's solver timed out")
        plan = super().act(state)
        return Plan(torch.full_like(plan.actions, float("nan")), plan.states, plan.cost, plan.info)


@pytest.fixture
def register_broken_actor():
    registry.register("actor", "broken", BrokenActor)
    yield
    registry.unregister("actor", "broken")
    BrokenActor.mode = "raise"


@contextlib.contextmanager
def agent_in_world(cfg, lockstep=True):
    """The configured agent and world, closed afterwards; in lock-step unless a test is about deadlines."""
    cfg["agent"]["loop"]["lockstep"] = lockstep
    world = build_world(cfg["world"])
    agent = build_agent(cfg["agent"])
    try:
        yield agent, world
    finally:
        agent.close()
        world.close()


def _setup(cfg, actor_name, deadline_s=DEADLINE_S, seed=0):
    cfg["agent"]["actor"]["name"] = actor_name
    cfg["agent"]["loop"].update(deadline_s=deadline_s, lockstep=False)  # these tests are about deadlines
    world = build_world(cfg["world"])
    agent = build_agent(cfg["agent"])
    agent.start(world.reset(seed), world.body.observe())
    return agent, world


def _steps(cycles, plans):
    """(cycle index, plan it drew on, step of that plan) for the cycles whose action came from `plans`."""
    return [(c.index, made_at, c.index - made_at) for c, (made_at, _) in zip(cycles, plans)]


def test_late_plan_is_never_sent(navigator_config, scheduled_planner):
    # the warm-up plan and the plans of cycles 0-2 are on time; every later one never lands
    actor = scheduled_planner(lambda call: 0 if call <= 4 else None)
    agent, world = _setup(navigator_config, actor)
    try:
        cycles = drive(agent, world, 12)
        validity = agent.loop.plan_validity
        # cycle 3 asks the plan that never lands: the last valid plan (made at cycle 2) is used for
        # plan_validity - 1 further steps, then the body brakes
        assert [c.source for c in cycles] == ["plan"] * 3 + ["previous"] * (validity - 1) + \
            ["stop"] * (12 - 2 - validity)
        assert [c.missed_deadline for c in cycles] == [False] * 3 + [True] * 9
        assert agent.counters.missed_deadlines == 9 and agent.counters.planner_errors == 0
        assert sum(agent.counters.sources.values()) == 12
        assert agent.modules.actor.calls == 5  # one late plan in flight at a time: none asked while it is
        assert agent.scheduler.last_plan[0] == 2
        assert world.violations() == {k: 0 for k in world.violations()}
    finally:
        agent.close()
        world.close()


def test_previous_plan_steps_are_sent_in_order(navigator_config, scheduled_planner):
    actor = scheduled_planner(lambda call: 0 if call <= 2 else None)  # cycle 0's plan on time, then none
    agent, world = _setup(navigator_config, actor)
    try:
        first = drive(agent, world, 1)[0]
        plan_actions = agent.scheduler.last_plan[1].actions
        later = drive(agent, world, 3)
        assert first.source == "plan"
        for k, c in enumerate(later, start=1):
            # seed 0 starts at rest, far from every zone and bound: the filter passes the plan's steps as they are
            assert c.source == "previous" and c.missed_deadline and not c.filtered
            assert c.action == pytest.approx(tuple(plan_actions[k].tolist()))
    finally:
        agent.close()
        world.close()


def test_a_plan_that_lands_late_drives_the_body_with_its_remaining_steps(navigator_config, scheduled_planner):
    """A planner slower than the deadline still moves the body: each late plan that lands within
    plan_validity becomes the last plan, and the cycle sends its steps from the current one on."""
    # from cycle 1 on, every plan lands two cycles after it was asked (it took between one and two periods)
    actor = scheduled_planner(lambda call: 0 if call <= 2 else 2)
    agent, world = _setup(navigator_config, actor)
    try:
        cycles, plans = [], []
        for _ in range(10):
            cycles += drive(agent, world, 1)
            plans.append(agent.scheduler.last_plan)
        # cycle 1 asks a plan that lands before cycle 3, which adopts it and asks the next (landing before
        # cycle 5), and so on: cycles 1-2 use cycle 0's plan, then each late plan serves two cycles
        assert [c.source for c in cycles] == ["plan"] + ["previous"] * 9
        assert [made_at for made_at, _ in plans] == [0, 0, 0, 1, 1, 3, 3, 5, 5, 7]
        for c, (made_at, plan) in zip(cycles, plans):
            if not c.filtered:  # the plan's step for this cycle, its past steps skipped
                assert c.action == pytest.approx(tuple(plan.actions[c.index - made_at].tolist()))
        assert sum(not c.filtered for c in cycles) >= 5, [c.filter_reason for c in cycles]
        assert agent.counters.missed_deadlines == 9 and agent.counters.planner_errors == 0
        assert world.violations() == {k: 0 for k in world.violations()}
    finally:
        agent.close()
        world.close()


def test_a_late_plan_that_fails_after_its_cycle_is_dropped(navigator_config, scheduled_planner):
    """A plan that misses its deadline and then raises is logged and dropped; the next cycles go on."""
    # the warm-up plan and the first cycle's plan are fine; every later one lands a cycle late, raising
    actor = scheduled_planner(lambda call: 0 if call <= 2 else 1, fails=lambda call: call > 2)
    agent, world = _setup(navigator_config, actor)
    try:
        cycles = drive(agent, world, 6)
        validity = agent.loop.plan_validity
        assert [c.source for c in cycles] == ["plan"] + ["previous"] * (validity - 1) + ["stop"]
        assert agent.scheduler.last_plan[0] == 0  # no failed plan was ever kept
        assert agent.modules.actor.calls == 7  # each cycle after the first asked anew once the failure landed
        # a late failure is not the cycle's planner error: that cycle already fell back
        assert agent.counters.missed_deadlines == 5 and agent.counters.planner_errors == 0
        assert world.violations() == {k: 0 for k in world.violations()}
    finally:
        agent.close()
        world.close()


@pytest.mark.parametrize("mode", ["raise", "timeout", "nan"])
def test_broken_planner_falls_back_to_braking(navigator_config, register_broken_actor, mode):
    BrokenActor.mode = mode
    navigator_config["agent"]["actor"]["name"] = "broken"
    # lockstep: every broken plan is waited for, so a loaded machine cannot turn one into a late plan
    navigator_config["agent"]["loop"]["lockstep"] = True
    world = build_world(navigator_config["world"])
    agent = build_agent(navigator_config["agent"])
    task = world.reset(0)
    try:
        if mode in ("raise", "timeout"):
            with pytest.raises((RuntimeError, TimeoutError)):  # the warm-up plan surfaces a broken planner at start
                agent.start(task, world.body.observe())
            agent.start(task)
        else:
            agent.start(task, world.body.observe())
        world.body.command(to_body_action((1.0, 0.0)))
        world.advance(0.5)  # moving at 0.5 m/s
        cycles = drive(agent, world, 8)
        assert all(c.source == "stop" for c in cycles)
        assert agent.counters.planner_errors == 8
        assert abs(world.body.observe().state[2]) < 1e-6  # braked to rest
    finally:
        agent.close()
        world.close()


def test_cycle_before_start_is_an_error(navigator_config):
    with agent_in_world(navigator_config) as (agent, world):
        world.reset(0)
        with pytest.raises(ConfigError, match=r"start\(task\) must be called"):
            agent.cycle(world.body.observe())


def test_memory_records_every_cycle(navigator_config):
    with agent_in_world(navigator_config) as (agent, world):
        agent.start(world.reset(1), world.body.observe())
        cycles = drive(agent, world, 5)
        records = agent.modules.memory.recent(10)
        assert len(records) == 5
        assert [tuple(r.action.tolist()) for r in records] == [pytest.approx(c.action) for c in cycles]
        agent.close()  # closing twice is safe


@pytest.mark.parametrize(("key", "value", "message"), [
    ("rate_hz", 0, "agent.loop.rate_hz must be a finite number > 0"),
        ("rate_hz", float("inf"), "agent.loop.rate_hz must be a finite number > 0"),
    ("rate_hz", "fast", "agent.loop.rate_hz must be a finite number > 0"),
    ("deadline_s", 5.0, r"at most one control period \(0.1 s\)"),
    ("plan_validity", "abc", "plan_validity must be an integer >= 1"),
    ("rat_hz", 10, r"agent.loop: unknown key\(s\) \['rat_hz'\]"),
])
def test_bad_loop_settings_fail_at_build(navigator_config, key, value, message):
    navigator_config["agent"]["loop"][key] = value
    with pytest.raises(ConfigError, match=message):
        build_agent(navigator_config["agent"])


class _ExplodingFilter:
    """A safety filter that fails, to check the cycle brakes instead of crashing."""

    horizon = 16
    cost = None
    world_model = None  # no model of its own: the cycle brakes with the planner's

    def apply(self, settings):
        pass

    def filter(self, state, action):
        raise RuntimeError("filter bug")


def test_failing_safety_filter_brakes(navigator_config):
    with agent_in_world(navigator_config) as (agent, world):
        agent.start(world.reset(0), world.body.observe())
        world.body.command(to_body_action((1.0, 0.5)))
        world.advance(0.5)
        agent.arbiter.safety = _ExplodingFilter()
        cycle = drive(agent, world, 1)[0]
        state = torch.tensor([cycle.state])
        expected = agent.modules.world_model.brake_action(state)[0]
        assert cycle.filtered and cycle.filter_reason == "safety filter failed: braking"
        assert cycle.action == pytest.approx(tuple(expected.tolist()))
        assert agent.counters.safety_errors == 1


def test_non_finite_state_halts_the_body(navigator_config):
    with agent_in_world(navigator_config) as (agent, world):
        task = world.reset(0)
        agent.start(task)
        obs = world.body.observe()
        broken = type(obs)(t=obs.t, state=obs.state * float("nan"))
        cycle = agent.cycle(broken)  # NaN state: no plan, no brake, nothing valid to send
        assert cycle.halt and cycle.source == "stop"
        assert all(a == 0.0 for a in cycle.action)


def test_new_settings_drop_the_last_plan(navigator_config):
    with agent_in_world(navigator_config) as (agent, world):
        task = world.reset(0)
        agent.start(task, world.body.observe())
        drive(agent, world, 2)
        assert agent.scheduler.last_plan is not None
        agent.apply(agent.modules.configurator.configure(task))
        assert agent.scheduler.last_plan is None and agent.scheduler.pending is None


def test_settings_goal_must_fit_the_state(navigator_config):
    navigator_config["agent"]["configurator"]["params"]["state_dim"] = 3
    with agent_in_world(navigator_config) as (agent, world):
        with pytest.raises(ConfigError, match="settings.goal has 3 values but the world model's state has 4"):
            agent.start(world.reset(0))


@pytest.mark.slow
def test_safety_filter_keeps_a_blind_planner_out_of_zones(navigator_config):
    """The planner cannot see keep-out zones; the filter alone must keep the body out of them."""
    from amiagent.agent import Agent, LoopConfig, Modules
    from amiagent.build import build_cost, build_safety, plugin
    from amiagent.runtime.local import run_episode

    agent_cfg = navigator_config["agent"]
    blind_spec = {
        "terms": {"goal_distance": {"weight": 1.0, "params": {"terminal": 4.0}},  # straight line to the goal
                  "action_effort": {"weight": 0.02}},
        "guardrails": {k: v for k, v in agent_cfg["cost"]["guardrails"].items() if k != "keep_out"},
    }
    modules = Modules(
        configurator=plugin("configurator", agent_cfg["configurator"], "configurator"),
        perception=plugin("perception", agent_cfg["perception"], "perception"),
        world_model=plugin("world_model", agent_cfg["world_model"], "world_model"),
        cost=build_cost(blind_spec),
        memory=plugin("memory", agent_cfg["memory"], "memory"),
        actor=plugin("actor", agent_cfg["actor"], "actor"),
    )
    # the filter has every guardrail; lock-step, so the outcome is the seed's, not the machine's load's
    agent = Agent(modules, LoopConfig(rate_hz=10.0, lockstep=True), safety=build_safety(agent_cfg))
    navigator_config["world"]["params"]["max_steps"] = 120
    world = build_world(navigator_config["world"])
    try:
        for seed in (0, 1):
            episode = run_episode(agent, world, seed)
            assert episode.filtered > 0  # the planner drove at a zone and was overruled
            assert episode.violations["keep_out"] == 0, episode.summary()
            assert episode.total_violations == 0, episode.summary()
    finally:
        agent.close()
        world.close()


class MisshapedActor(MPC):
    """Returns a plan with an extra leading axis: (1, H, A) instead of (H, A)."""

    def act(self, state):
        plan = super().act(state)
        return Plan(plan.actions.unsqueeze(0), plan.states, plan.cost, plan.info)


@pytest.mark.parametrize("safety", [True, False])
def test_misshaped_plan_is_rejected(navigator_config, safety):
    registry.register("actor", "misshaped", MisshapedActor)
    navigator_config["agent"]["actor"]["name"] = "misshaped"
    navigator_config["agent"]["safety"]["enabled"] = safety
    try:
        with agent_in_world(navigator_config) as (agent, world):
            agent.start(world.reset(0), world.body.observe())
            cycles = drive(agent, world, 3)
            assert [c.source for c in cycles] == ["stop"] * 3
            assert agent.counters.planner_errors == 3 and agent.counters.safety_errors == 0
            assert all(len(c.action) == 2 for c in cycles)
    finally:
        registry.unregister("actor", "misshaped")


def test_episode_stops_the_body_when_a_cycle_fails(navigator_config):
    from amiagent.runtime.local import run_episode

    with agent_in_world(navigator_config) as (agent, world):
        calls = {"n": 0}
        real_cycle = agent.cycle

        def failing_cycle(obs):
            calls["n"] += 1
            if calls["n"] == 15:
                raise RuntimeError("perception crashed")
            return real_cycle(obs)

        agent.cycle = failing_cycle
        with pytest.raises(RuntimeError, match="perception crashed"):
            run_episode(agent, world, 0)
        assert world.body.held_command is None  # stopped: no command held any more
        world.advance(2.0)
        assert abs(world.body.observe().state[2:]).max() < 1e-9  # braked to rest


def test_safety_modules_follow_the_agent_lifecycle(navigator_config):
    with agent_in_world(navigator_config) as (agent, world):
        agent.start(world.reset(0))
        assert agent.safety.world_model.active and agent.safety.cost.active
    assert not agent.safety.world_model.active and not agent.safety.cost.active


@pytest.mark.timeout(60)  # were close() to wait for the hung plan, it would never return: fail in a minute
def test_hung_planner_does_not_hang_the_agent(navigator_config, monkeypatch):
    """A plan that never finishes: the cycle falls back, apply() gives up after its grace and says the planner
    is hung, and close() returns with the plan still running, on the real planning thread."""
    import amiagent.agent.scheduler as scheduler_module
    from amiagent.errors import AmiagentError

    inside, release = threading.Event(), threading.Event()

    class HungActor(MPC):
        calls = 0

        def act(self, state):
            type(self).calls += 1
            if type(self).calls > 1:  # the warm-up plan is made; every later one hangs until the test ends
                inside.set()
                release.wait()
            return super().act(state)

    registry.register("actor", "hung", HungActor)
    agent = world = None
    try:
        agent, world = _setup(navigator_config, "hung")  # its warm-up plan waited for with the usual grace
        monkeypatch.setattr(scheduler_module, "PLANNER_GRACE_S", 0.3)  # the plan hangs for good: no need to wait 5 s
        cycle = drive(agent, world, 1)[0]
        assert cycle.missed_deadline and cycle.source == "stop"
        assert inside.wait(timeout=30)  # the plan is running (not merely queued, which apply could cancel)
        with pytest.raises(AmiagentError, match="the planner is hung"):
            agent.apply(agent.settings)
        agent.close()
        # close() returned while the plan is still running: it did not wait for a hung planner
        assert not release.is_set()
        assert any(t.name.startswith("amiagent-plan") and t.is_alive() for t in threading.enumerate())
    finally:
        release.set()  # the stuck plan finishes now, so later tests start without its thread
        for thread in threading.enumerate():
            if thread.name.startswith("amiagent-plan"):
                thread.join(timeout=30)
        registry.unregister("actor", "hung")
        for closable in (agent, world):
            if closable is not None:
                closable.close()


def test_hot_swaps_take_effect_at_a_cycle_boundary_and_the_filter_follows(navigator_config):
    with agent_in_world(navigator_config) as (agent, world):
        agent.start(world.reset(0), world.body.observe())
        drive(agent, world, 3)
        old_checker, old_guard = agent.safety.world_model, agent.safety.cost
        model = {"params": {"substeps": 12}}  # merged onto the running spec: dt and bounds are kept
        cost = {"guardrails": {"keep_out": {"params": {"margin": 0.25}}}}
        tickets = [agent.swap_plugin("world_model", model), agent.swap_plugin("cost", cost)]
        assert not any(t.is_set() for t in tickets)  # nothing changes until the next cycle starts
        cycle = drive(agent, world, 1)[0]
        assert all(t.is_set() and t.error is None for t in tickets)
        assert [e.split(":")[0] for e in cycle.events] == ["swap world_model", "swap cost"]
        # the last plan came from the old model: it was dropped, never used after the swap; in lock-step
        # the new modules' plan is waited for, and it is what the cycle sends
        assert cycle.source == "plan" and cycle.checked
        assert agent.modules.world_model.params.substeps == 12 and agent.safety.world_model is not old_checker
        assert agent.safety.world_model is not agent.modules.world_model  # the filter keeps its own copy
        assert agent.safety.cost is not old_guard
        assert agent.safety.cost.guardrails["keep_out"].params.margin == 0.25
        assert "substeps': 12" in agent.plugins["world_model"]
        with pytest.raises(ConfigError, match="bounds"):
            agent.swap_plugin("world_model", {"params": {"max_accel": 1.0}})
        with pytest.raises(ConfigError, match="steps 0.05 s, the running one 0.1 s"):
            agent.swap_plugin("world_model", {"params": {"dt": 0.05}})
        assert agent.specs["world_model"]["params"]["dt"] == 0.1 and agent.specs["world_model"]["params"]["substeps"] == 12


def test_a_module_gone_for_good_stops_the_body_and_ends_the_episode(navigator_config):
    """When a runtime gives a module up (the Ray supervisor, once its restarts are exhausted, calls
    `agent.fail`), the next cycle halts, the episode ends `module_failed` and the body is stopped. The local
    runtime has no restarts of its own: the test calls `fail` where the supervisor would."""
    from amiagent.runtime.local import run_episode

    with agent_in_world(navigator_config) as (agent, world):
        def on_cycle(cycle):
            if cycle.index == 4:  # moving by now
                assert abs(world.body.observe().state[2:]).max() > 0.1
                agent.fail("memory: restarts exhausted")

        episode = run_episode(agent, world, 0, on_cycle=on_cycle)
        assert episode.status == "module_failed" and not episode.success
        assert episode.steps == 6 and [c.source for c in episode.cycles[:5]] == ["plan"] * 5
        last = episode.cycles[-1]
        assert last.halt and last.source == "stop" and last.action == (0.0, 0.0)
        assert last.filter_reason == "memory: restarts exhausted"
        assert "failed: memory: restarts exhausted" in last.events
        assert world.body.held_command is None  # stopped, not left holding a command
        assert abs(world.body.observe().state[2:]).max() < 1e-9  # braked to rest during the settle second
        assert episode.total_violations == 0, episode.violations
