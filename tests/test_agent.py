"""The agent cycle: deadlines, fallbacks, plan validation and the safety filter, on a real pybullet body."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
import torch

from amiagent import registry
from amiagent.agent import to_body_action
from amiagent.contracts import Plan
from amiagent.errors import ConfigError
from amiagent.build import build_agent, build_world

MPC = registry.load_class("actor", "mpc")


class SlowActor(MPC):
    """The MPC actor, made late on purpose from a given call on."""

    slow_from = 3
    delay_s = 2.0  # far beyond the deadline, so a slow plan never lands within a later cycle's wait

    def __init__(self, params=None):
        super().__init__(params)
        self.calls = 0

    def act(self, state):
        self.calls += 1
        if self.calls > self.slow_from:
            time.sleep(self.delay_s)
        return super().act(state)


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
def register_test_actors():
    registry.register("actor", "slow", SlowActor)
    registry.register("actor", "broken", BrokenActor)
    yield
    registry.unregister("actor", "slow")
    registry.unregister("actor", "broken")
    SlowActor.slow_from, SlowActor.delay_s, BrokenActor.mode = 3, 2.0, "raise"


@contextlib.contextmanager
def agent_in_world(cfg):
    """The configured agent and world, closed afterwards."""
    world = build_world(cfg["world"])
    agent = build_agent(cfg["agent"])
    try:
        yield agent, world
    finally:
        agent.close()
        world.close()


def _drive(agent, world, cycles):
    body = world.body
    out = []
    for _ in range(cycles):
        cycle = agent.cycle(body.observe())
        body.command(to_body_action(cycle.action))
        world.advance(agent.loop.period)
        out.append(cycle)
    return out


def _setup(cfg, actor_name, deadline_s, seed=0):
    cfg["agent"]["actor"]["name"] = actor_name
    cfg["agent"]["loop"]["deadline_s"] = deadline_s
    world = build_world(cfg["world"])
    agent = build_agent(cfg["agent"])
    agent.start(world.reset(seed), world.body.observe())
    return agent, world


def test_late_plan_is_never_sent(navigator_config, register_test_actors):
    # the first (warm-up) call counts: plans 1-3 of the episode are on time, the rest late
    agent, world = _setup(navigator_config, "slow", deadline_s=0.1)
    SlowActor.slow_from = 4
    try:
        cycles = _drive(agent, world, 12)
        plan_cycles = [c for c in cycles if c.source == "plan"]
        assert [c.index for c in plan_cycles] == [0, 1, 2]
        for c in cycles[3:]:
            assert c.source in ("previous", "stop")
        # the last valid plan (made at cycle 2) is used for plan_validity - 1 further steps, then braking
        validity = agent.loop.plan_validity
        assert [c.source for c in cycles[3 : 2 + validity]] == ["previous"] * (validity - 1)
        assert all(c.source == "stop" for c in cycles[2 + validity :])
        assert agent.counters.missed_deadlines >= 5
        assert sum(agent.counters.sources.values()) == 12
        assert world.violations() == {k: 0 for k in world.violations()}
    finally:
        agent.close()
        world.close()


def test_previous_plan_steps_are_sent_in_order(navigator_config, register_test_actors):
    agent, world = _setup(navigator_config, "slow", deadline_s=0.1)
    SlowActor.slow_from = 2
    try:
        first = _drive(agent, world, 1)[0]
        plan_actions = agent._last_plan[1].actions
        later = _drive(agent, world, 3)
        assert first.source == "plan"
        for k, c in enumerate(later, start=1):
            assert c.source == "previous" and c.missed_deadline
            if not c.filtered:
                assert c.action == pytest.approx(tuple(plan_actions[k].tolist()))
    finally:
        agent.close()
        world.close()


def test_a_plan_that_lands_late_drives_the_body_with_its_remaining_steps(navigator_config, register_test_actors):
    """A planner slower than the deadline (0.15 s against 0.1 s) still moves the body: each late plan that
    lands within plan_validity becomes the last plan, and the cycle sends its steps from the current one on."""
    agent, world = _setup(navigator_config, "slow", deadline_s=0.1)
    SlowActor.slow_from, SlowActor.delay_s = 2, 0.15
    try:
        body, adopted, sources = world.body, [], []
        for _ in range(10):
            cycle = agent.cycle(body.observe())
            body.command(to_body_action(cycle.action))
            world.advance(agent.loop.period)
            sources.append(cycle.source)
            made_at, plan = agent._last_plan
            if cycle.source == "previous" and not cycle.filtered:
                assert cycle.action == pytest.approx(tuple(plan.actions[cycle.index - made_at].tolist()))
                adopted.append((made_at, cycle.index))
        late = {made_at for made_at, _ in adopted if sources[made_at] != "plan"}  # asked then, landed later
        assert len(late) >= 2, (adopted, sources)  # late plans kept being adopted as they landed
        assert all(0 < index - made_at < agent.loop.plan_validity for made_at, index in adopted)
        assert agent.counters.missed_deadlines >= 5
        assert world.violations() == {k: 0 for k in world.violations()}
    finally:
        agent.close()
        world.close()


def test_a_late_plan_that_fails_after_its_cycle_is_dropped(navigator_config, register_test_actors):
    """A plan that misses its deadline and then raises is logged and dropped; the next cycles go on."""
    class SlowThenBroken(MPC):
        calls = 0

        def act(self, state):
            type(self).calls += 1
            if type(self).calls > 2:  # the warm-up call and the first cycle's plan are fine
                time.sleep(0.15)
                raise RuntimeError("planner crashed late")
            return super().act(state)

    registry.register("actor", "slow_broken", SlowThenBroken)
    try:
        agent, world = _setup(navigator_config, "slow_broken", deadline_s=0.1)
        try:
            cycles = _drive(agent, world, 6)
            assert cycles[0].source == "plan"
            assert all(c.source in ("previous", "stop") for c in cycles[1:])
            assert agent._last_plan[0] == 0  # no failed plan was ever kept
            assert world.violations() == {k: 0 for k in world.violations()}
        finally:
            agent.close()
            world.close()
    finally:
        registry.unregister("actor", "slow_broken")


@pytest.mark.parametrize("mode", ["raise", "timeout", "nan"])
def test_broken_planner_falls_back_to_braking(navigator_config, register_test_actors, mode):
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
        cycles = _drive(agent, world, 8)
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
        cycles = _drive(agent, world, 5)
        records = agent.modules.memory.recent(10)
        assert len(records) == 5
        assert [tuple(r.action.tolist()) for r in records] == [pytest.approx(c.action) for c in cycles]
        agent.close()  # closing twice is safe


@pytest.mark.parametrize(("key", "value", "message"), [
    ("rate_hz", 0, "agent.loop.rate_hz must be a number > 0"),
    ("rate_hz", "fast", "agent.loop.rate_hz must be a number > 0"),
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

    def apply(self, settings):
        pass

    def filter(self, state, action):
        raise RuntimeError("filter bug")


def test_failing_safety_filter_brakes(navigator_config):
    with agent_in_world(navigator_config) as (agent, world):
        agent.start(world.reset(0), world.body.observe())
        world.body.command(to_body_action((1.0, 0.5)))
        world.advance(0.5)
        agent.safety = _ExplodingFilter()
        cycle = _drive(agent, world, 1)[0]
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
        _drive(agent, world, 2)
        assert agent._last_plan is not None
        agent.apply(agent.modules.configurator.configure(task))
        assert agent._last_plan is None and agent._pending is None


def test_settings_goal_must_fit_the_state(navigator_config):
    navigator_config["agent"]["configurator"]["params"]["state_dim"] = 3
    with agent_in_world(navigator_config) as (agent, world):
        with pytest.raises(ConfigError, match="settings.goal has 3 values but the world model's state has 4"):
            agent.start(world.reset(0))


@pytest.mark.slow
def test_safety_filter_keeps_a_blind_planner_out_of_zones(navigator_config):
    """The planner cannot see keep-out zones; the filter alone must keep the body out of them."""
    from amiagent.agent import Agent, Modules
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
    agent = Agent(modules, safety=build_safety(agent_cfg))  # the filter has every guardrail
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
            cycles = _drive(agent, world, 3)
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


def test_hung_planner_does_not_hang_the_agent(navigator_config, register_test_actors, monkeypatch):
    import amiagent.agent as agent_module
    from amiagent.errors import AmiagentError

    monkeypatch.setattr(agent_module, "PLANNER_GRACE_S", 0.3)
    SlowActor.slow_from = 1  # every plan after the warm-up takes 2 s
    agent, world = _setup(navigator_config, "slow", deadline_s=0.05)
    try:
        cycle = _drive(agent, world, 1)[0]
        assert cycle.missed_deadline and cycle.source == "stop"
        started = time.monotonic()
        with pytest.raises(AmiagentError, match="the planner is hung"):
            agent.apply(agent.settings)
        agent.close()
        assert time.monotonic() - started < 1.5  # bounded waits, not the 2 s plan
    finally:
        agent.close()
        world.close()
        # the stuck plan finishes on its own; let it, so later tests start without its thread
        for thread in threading.enumerate():
            if thread.name.startswith("amiagent-plan"):
                thread.join(timeout=5)


def test_hot_swaps_take_effect_at_a_cycle_boundary_and_the_filter_follows(navigator_config):
    with agent_in_world(navigator_config) as (agent, world):
        agent.start(world.reset(0), world.body.observe())
        _drive(agent, world, 3)
        old_checker, old_guard = agent.safety.world_model, agent.safety.cost
        model = {"params": {"substeps": 12}}  # merged onto the running spec: dt and bounds are kept
        cost = {"guardrails": {"keep_out": {"params": {"margin": 0.25}}}}
        tickets = [agent.swap_plugin("world_model", model), agent.swap_plugin("cost", cost)]
        assert not any(t.is_set() for t in tickets)  # nothing changes until the next cycle starts
        cycle = _drive(agent, world, 1)[0]
        assert all(t.is_set() and t.error is None for t in tickets)
        assert [e.split(":")[0] for e in cycle.events] == ["swap world_model", "swap cost"]
        # the last plan came from the old model: it was dropped, never used after the swap
        assert cycle.source in ("plan", "stop") and cycle.checked
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
