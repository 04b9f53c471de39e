"""The Ray runtime with real Ray (a two-node `Cluster`), real ZeroMQ sockets and real pybullet.

Agents are started once per placement for the module (six actors import torch:
seconds each on two cores). Every episode runs in lockstep (each plan waited
for), so it depends on its seed only: under Ray it is the local episode, action
for action, and a fault injected at a given cycle always lands at that cycle.
"""

from __future__ import annotations

import copy
import math
import os
import signal
import time

import pytest

import torch

from amiagent import registry

from amiagent.contracts import checks
from amiagent.agent import Cycle
from amiagent.build import build_agent, build_cost, build_world
from amiagent.bus import Subscriber
from amiagent.config import load_config
from amiagent.errors import AmiagentError, ConfigError
from amiagent.runtime.local import run_episode
from amiagent.runtime.ray import host, plan_groups, ray_agent, require_plain
from amiagent.runtime.supervisor import UNANSWERED_LIMIT
from amiagent.bus.telemetry import TelemetryPublisher

COST_SPEC = {"terms": {"goal_distance": {"weight": 1.0}}, "guardrails": {"keep_out": {}}}
PLACEMENTS = ("pod", "separate", "planner")  # planner: a named placement of the shipped runtime config
SEEDS = (0, 1)
KILL_AT = 8
"""The cycle after which a fault is injected (the episodes here last about 60 cycles)."""
DOWN_CYCLES = 6
"""Cycles a killed group stays down: more than plan_validity (5), so the last plan runs out and the body brakes."""
EVENT_TIMEOUT_S = 120.0
"""Longest wait for a death to be noticed or a restart to finish: not a measurement, a guard against a hang
(a restart takes about 3 s here)."""


def _wait_until(condition, what: str, timeout: float = EVENT_TIMEOUT_S) -> None:
    """Poll `condition` until it holds; fail naming `what` if it does not within `timeout` s."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"{what}: not seen within {timeout:g} s")
        time.sleep(0.01)


def _sources(cycles) -> list[str]:
    return [c.source for c in cycles]


def _events(cycle) -> str:
    return " | ".join(cycle.events)


@pytest.fixture(scope="module")
def composed():
    """The navigator in open_field in lockstep, with the shipped ray runtime section (read-only: copy it)."""
    return load_config(["agent=navigator", "world=open_field", "runtime=ray", "+agent.loop.lockstep=true"])


def _agent_cfg(composed) -> dict:
    return copy.deepcopy(composed["agent"])


def _runtime(composed, placement, **supervision) -> dict:
    return {"placement": copy.deepcopy(placement), "placements": copy.deepcopy(composed["runtime"]["placements"]),
            "supervision": {"backoff_s": 0.2, **supervision}}


@pytest.fixture(scope="module")
def agents(ray_cluster, composed):
    """One agent per placement, shared by the tests of this module. A test may kill one of their groups:
    the supervisor restarts it with the same specs, and the test waits for that, so each agent is whole
    again when the test ends. Tests that swap or close an agent start their own."""
    started = {}
    try:
        for placement in PLACEMENTS:
            started[placement] = ray_agent(_agent_cfg(composed), _runtime(composed, placement))
        yield started
    finally:
        for agent in started.values():
            agent.close()


@pytest.fixture
def world(composed):
    w = build_world(copy.deepcopy(composed["world"]))
    yield w
    w.close()


@pytest.fixture(scope="module")
def local_episodes(composed):
    """The episodes of SEEDS under the local runtime, in lockstep: what every placement must reproduce."""
    agent, w = build_agent(_agent_cfg(composed)), build_world(copy.deepcopy(composed["world"]))
    try:
        return {seed: run_episode(agent, w, seed) for seed in SEEDS}
    finally:
        agent.close()
        w.close()


def _same_episode(got, want) -> None:
    assert [c.action for c in got.cycles] == [c.action for c in want.cycles]
    assert (got.status, got.steps, got.violations) == (want.status, want.steps, want.violations)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_each_placement_runs_the_local_episodes_action_for_action(agents, world, placement, local_episodes):
    agent = agents[placement]
    groups = agent.runtime.placement()
    assert len({g["pid"] for g in groups.values()}) == len(groups)  # one process per group
    for seed in SEEDS:
        episode = run_episode(agent, world, seed)
        # the same plans from the same seeds, whether the modules share this process or talk over the bus
        _same_episode(episode, local_episodes[seed])
        assert episode.total_violations == 0
        assert all(c.checked for c in episode.cycles)


def test_a_named_placement_takes_its_groups_from_the_runtime_config(agents, composed):
    named = composed["runtime"]["placements"]["planner"]["planner"]["modules"]
    groups = agents["planner"].runtime.placement()
    assert groups["planner"]["modules"] == named == ["actor", "world_model", "cost"]
    # every module the placement does not name gets an actor of its own
    assert {g: v["modules"] for g, v in groups.items() if g != "planner"} == \
        {"configurator": ["configurator"], "perception": ["perception"], "memory": ["memory"]}


def test_separate_placement_crosses_processes_every_planner_iteration(agents, world):
    agent = agents["separate"]
    before = agent.runtime.cross_process_calls()
    episode = run_episode(agent, world, 0)
    per_cycle = (agent.runtime.cross_process_calls() - before) / episode.steps
    # 10 CEM iterations, each a rollout and an evaluation, plus perception, the plan and memory
    assert per_cycle >= 20


def test_killing_a_module_mid_episode_is_survived_and_measured(agents, world):
    agent = agents["separate"]
    assert not agent.down
    restarts = agent.runtime.placement()["actor"]["restarts"]
    killed = {}

    def kill(cycle):
        if cycle.index == KILL_AT:
            killed["pid"] = agent.runtime.host_pid("actor")
            os.kill(killed["pid"], signal.SIGKILL)
            _wait_until(lambda: "actor" in agent.down, "the actor's death")
        if cycle.index == KILL_AT + DOWN_CYCLES:
            assert agent.runtime.wait_restarts(EVENT_TIMEOUT_S), "the actor's group was not restarted"

    episode = run_episode(agent, world, 3, on_cycle=kill)
    assert episode.status == "reached" and episode.total_violations == 0
    assert all(c.checked for c in episode.cycles)  # every command passed the safety filter, down or not
    assert agent.runtime.host_pid("actor") != killed["pid"] and agent.runtime.placement()["actor"]["restarts"] == restarts + 1
    recovery = agent.runtime.recoveries[-1]
    assert recovery.group == "actor" and recovery.restart == restarts + 1 and recovery.seconds > 0
    down, up = episode.cycles[KILL_AT + 1], episode.cycles[KILL_AT + DOWN_CYCLES + 1]
    assert "down actor" in _events(down) and "up actor" in _events(up)
    # while the actor was down nothing came from a plan: the rest of the last plan (plan_validity 5), then braking
    during = episode.cycles[KILL_AT + 1: KILL_AT + DOWN_CYCLES + 1]
    assert _sources(during) == ["previous"] * 4 + ["stop"] * (DOWN_CYCLES - 4)
    assert up.source == "plan"  # and the restarted actor plans at once


def test_memory_restores_what_it_held_after_a_kill(agents, world):
    agent = agents["separate"]
    assert not agent.down
    held = {}

    def kill(cycle):
        if cycle.index == KILL_AT:
            held["records"] = agent.modules.memory.recent(100_000)
            os.kill(agent.runtime.host_pid("memory"), signal.SIGKILL)
            _wait_until(lambda: "memory" in agent.down, "the memory's death")
        if cycle.index == KILL_AT + DOWN_CYCLES:
            assert agent.runtime.wait_restarts(EVENT_TIMEOUT_S), "the memory's group was not restarted"

    before = len(agent.modules.memory)
    episode = run_episode(agent, world, 4, on_cycle=kill)
    assert episode.status == "reached" and episode.total_violations == 0
    assert agent.runtime.recoveries[-1].group == "memory"
    assert "up memory" in _events(episode.cycles[KILL_AT + DOWN_CYCLES + 1])
    restored = agent.modules.memory.recent(100_000)
    held = held["records"]
    assert len(held) == before + KILL_AT + 1
    assert [r.t for r in restored[: len(held)]] == [r.t for r in held]
    assert torch.equal(restored[len(held) - 1].state, held[-1].state)
    # the records of the cycles while memory was down were kept and written once it was back
    assert len(restored) == before + episode.steps


def test_a_hung_module_is_restarted_like_a_dead_one(agents, world):
    agent = agents["pod"]
    assert not agent.down
    stopped = {}
    last_unanswered = KILL_AT + UNANSWERED_LIMIT  # each cycle after the freeze leaves one encode unanswered

    def freeze(cycle):  # SIGSTOP: the process is alive but answers nothing
        if cycle.index == KILL_AT:
            stopped["pid"] = agent.runtime.host_pid("perception")
            os.kill(stopped["pid"], signal.SIGSTOP)
        if cycle.index == last_unanswered:
            _wait_until(lambda: "perception" in agent.down, "the hang taken for a death")
            assert agent.runtime.wait_restarts(EVENT_TIMEOUT_S), "the hung group was not restarted"

    try:
        episode = run_episode(agent, world, 7, on_cycle=freeze)
    finally:
        if "pid" in stopped:  # normally killed by the supervisor already
            try:
                os.kill(stopped["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert episode.status == "reached" and episode.total_violations == 0
    assert all(c.checked for c in episode.cycles)
    frozen = episode.cycles[KILL_AT + 1: last_unanswered + 1]
    assert _sources(frozen) == ["stop"] * UNANSWERED_LIMIT and all(c.halt for c in frozen)  # no state, no motion
    back = episode.cycles[last_unanswered + 1]
    assert "hung perception" in _events(back) and "recovered" in _events(back) and back.source == "plan"
    assert agent.runtime.host_pid("perception") != stopped["pid"] and agent.runtime.recoveries[-1].group == "pod"


PROBE = 10**6
"""Cycle index of the telemetry probes sent before an episode (no episode has that many cycles)."""


def _probe_cycle() -> Cycle:
    return Cycle(index=PROBE, t=0.0, state=(0.0,) * 4, action=(0.0, 0.0), source="stop", filtered=False,
                 missed_deadline=False, plan_ms=math.nan, cycle_ms=0.0, cost=math.nan, predicted_violation=math.nan)


def test_hot_swap_mid_episode_is_visible_in_telemetry_and_never_skips_a_check(ray_cluster, composed, world):
    agent = ray_agent(_agent_cfg(composed), _runtime(composed, "pod"))  # its own: the swaps change it
    telemetry = TelemetryPublisher("tcp://127.0.0.1:0", agent.name)
    listener = Subscriber(telemetry.endpoint, ["telemetry/"])
    swapped = {}
    new_model = {"params": {"substeps": 12}}  # merged onto what runs
    new_actor = {"name": "mpc", "params": {"samples": 200, "iterations": 8, "elites": 20}}

    def on_cycle(cycle):
        telemetry(cycle)
        if cycle.index == 10:
            swapped["model"] = agent.swap_plugin("world_model", new_model)
        if cycle.index == 20:
            swapped["actor"] = agent.swap_plugin("actor", new_actor)

    try:
        # a subscriber hears nothing published before its subscription reached the publisher: probe until it has
        _wait_until(lambda: telemetry(_probe_cycle()) or listener.recv(timeout=0.05) is not None,
                    "the telemetry subscription")
        episode = run_episode(agent, world, 6, on_cycle=on_cycle)
        heard = {}
        while len(heard) < episode.steps:  # every cycle was published after the subscription: all arrive
            got = listener.recv(timeout=EVENT_TIMEOUT_S)
            assert got is not None, f"telemetry of cycles {sorted(set(range(episode.steps)) - set(heard))} lost"
            if got[1]["cycle"] != PROBE:
                heard[got[1]["cycle"]] = got[1]
        plugins = dict(agent.plugins)
    finally:
        listener.close()
        telemetry.close()
        agent.close()
    assert episode.status == "reached" and episode.total_violations == 0
    assert swapped["model"].is_set() and swapped["actor"].is_set()
    assert all(c.checked for c in episode.cycles)
    assert all(m["values"]["checked"] == 1.0 for m in heard.values())
    # each swap took effect at the next cycle boundary, and that cycle planned afresh with the new module:
    # the old module's last plan was dropped (lockstep: the fresh plan is always waited for)
    model_events, actor_events = heard[11].get("events", []), heard[21].get("events", [])
    assert any(e.startswith("swap world_model: point_mass") and "substeps" in e for e in model_events)
    assert any(e.startswith("swap actor: mpc") for e in actor_events)
    assert episode.cycles[11].source == "plan" and episode.cycles[21].source == "plan"
    assert heard[11]["values"]["source.plan"] == 1.0 and heard[21]["values"]["source.plan"] == 1.0
    assert "samples': 200" in plugins["actor"]


def test_a_bad_swap_changes_nothing(agents):
    agent = agents["pod"]
    before = dict(agent.plugins)
    with pytest.raises(AmiagentError, match="Did you mean 'point_mass'"):
        agent.swap_plugin("world_model", {"name": "point_mas"})
    with pytest.raises(AmiagentError, match="bounds"):
        agent.swap_plugin("world_model", {"params": {"max_accel": 1.0}})
    # other dimensions: a 3-D point mass (D=6, A=3) cannot replace the 2-D one, nor a 6-value perception
    with pytest.raises(AmiagentError, match=r"new world model has D=6, A=3.*running one D=4, A=2"):
        agent.swap_plugin("world_model", {"params": {"dims": 3}})
    with pytest.raises(AmiagentError, match="new perception gives 6 values, the running one 4"):
        agent.swap_plugin("perception", {"params": {"state_dim": 6}})
    with pytest.raises(AmiagentError, match="steps 0.05 s, the running one 0.1 s"):
        agent.swap_plugin("world_model", {"params": {"dt": 0.05}})
    assert agent.plugins == before


def test_modules_on_two_nodes_talk_over_tcp(ray_cluster, composed, world, local_episodes):
    import ray

    head = ray.get_runtime_context().get_node_id()  # the driver runs on the head
    placement = {"far": {"modules": ["world_model", "cost"], "labels": {"zone": "lab"}},  # by node label
                 "store": {"modules": ["memory"], "resources": {"node_b": 0.01}},  # by custom resource
                 "near": {"modules": ["configurator", "perception", "actor"], "node": head}}  # by node id
    agent = ray_agent(_agent_cfg(composed), {"placement": placement})
    try:
        groups = agent.runtime.placement()
        assert groups["near"]["node_id"] == head
        assert groups["far"]["node_id"] == groups["store"]["node_id"] != head
        assert all(e.startswith("tcp://") for g in groups.values() for e in g["endpoints"].values())
        episode = run_episode(agent, world, 0)
    finally:
        agent.close()
    _same_episode(episode, local_episodes[0])
    assert episode.total_violations == 0


def test_restarts_exhausted_stop_the_body_and_end_the_episode_as_module_failed(ray_cluster, composed, world):
    placement = {"planner": {"modules": ["actor", "world_model", "cost"], "max_restarts": 0},
                 "rest": {"modules": ["configurator", "perception", "memory"]}}
    agent = ray_agent(_agent_cfg(composed), _runtime(composed, placement))
    killed_at = 5

    def kill(cycle):
        if cycle.index == killed_at:
            os.kill(agent.runtime.host_pid("actor"), signal.SIGKILL)
            _wait_until(lambda: "actor" in agent.down, "the planner group's death")
            assert agent.runtime.wait_restarts(EVENT_TIMEOUT_S), "the supervisor did not give up on the group"

    try:
        episode = run_episode(agent, world, 0, on_cycle=kill)
        with pytest.raises(AmiagentError, match="cannot start: group planner died after 0 restart"):
            run_episode(agent, world, 1)
        assert agent.runtime.placement()["planner"]["alive"] is False and agent.runtime.recoveries == []
    finally:
        agent.close()
    assert episode.status == "module_failed" and not episode.success
    assert episode.steps == killed_at + 2  # the cycle that found the group gone for good is the last
    last = episode.cycles[-1]
    assert "failed: group planner died after 0 restart(s) (runtime.supervision.max_restarts=0)" in _events(last)
    assert last.source == "stop" and last.halt and last.action == (0.0, 0.0) and last.checked
    assert episode.total_violations == 0


def test_a_group_no_node_can_take_is_reported(ray_cluster, composed):
    placement = {"nowhere": {"modules": ["memory"], "num_cpus": 64},  # the cluster has 2
                 "rest": {"modules": ["configurator", "perception", "world_model", "cost", "actor"]}}
    with pytest.raises(AmiagentError, match="did not start within 3 s.*resources"):
        ray_agent(_agent_cfg(composed), {"placement": placement, "supervision": {"start_timeout_s": 3}})
    with pytest.raises(ConfigError, match="no node of this Ray cluster offers 1 'gpu_box'.*node_b"):
        ray_agent(_agent_cfg(composed), {"placement": {"x": {"modules": ["memory"], "resources": {"gpu_box": 1}}}})
    with pytest.raises(ConfigError, match="no live Ray node 'moon'"):
        ray_agent(_agent_cfg(composed), {"placement": {"x": {"modules": ["memory"], "node": "moon"}}})


def test_close_leaves_no_actor_process_or_state_behind(ray_cluster, composed):
    # the shipped "sensing" placement: two groups, so two actors to see end
    agent = ray_agent(_agent_cfg(composed), _runtime(composed, "sensing"))
    groups = agent.runtime.placement()
    assert {g: v["modules"] for g, v in groups.items()} == \
        {"sensing": ["perception"], "core": ["configurator", "world_model", "cost", "memory", "actor"]}
    pids = [g["pid"] for g in groups.values()]
    state_dir = agent.runtime.state_dir
    agent.close()
    agent.close()
    assert not os.path.exists(state_dir)

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    for pid in pids:  # ray.kill ends the worker processes (soon, not at once)
        _wait_until(lambda pid=pid: gone(pid), f"the end of actor process {pid}")


def test_in_lockstep_a_cycles_calls_wait_as_long_as_any_call(ray_cluster, composed):
    """A loaded machine must not turn a lockstep cycle into a stop: perception and memory wait call_timeout_s
    there, and one control period otherwise (a slow module then costs a cycle, never the body's safety)."""
    import dataclasses

    agent = ray_agent(_agent_cfg(composed), _runtime(composed, "pod", call_timeout_s=1.5))
    try:
        cycle_calls = [agent.modules.perception, agent.modules.memory, agent.modules.world_model]
        assert agent.loop.lockstep and [m.cycle_timeout for m in cycle_calls] == [1.5] * 3
        agent.loop = dataclasses.replace(agent.loop, lockstep=False)  # as `amiagent run` sets it, after the build
        assert [m.cycle_timeout for m in cycle_calls] == [agent.loop.period] * 3 == [0.1] * 3
    finally:
        agent.close()


def test_world_model_in_a_ray_actor_matches_local(ray_cluster):
    hosted = host("world_model", {"name": "point_mass", "params": {"max_accel": 2.0}})
    try:
        remote = hosted.proxy()
        local = registry.create("world_model", "point_mass")
        states, actions = torch.randn(4, 4), torch.rand(4, 10, 2) * 4 - 2
        assert torch.equal(remote.rollout(states, actions), local.rollout(states, actions))
        checks.check_world_model(remote)
    finally:
        hosted.close()
        hosted.close()


def test_cost_in_a_ray_actor_matches_local(ray_cluster):
    hosted = host("cost", COST_SPEC)
    try:
        remote = hosted.proxy()
        settings = checks.sample_settings()
        remote.apply(settings)
        local = build_cost(COST_SPEC)
        local.apply(settings)
        states, actions = torch.randn(3, 5, 4), torch.randn(3, 5, 2)
        assert torch.equal(remote.evaluate(states, actions).violation, local.evaluate(states, actions).violation)
    finally:
        hosted.close()


def test_bad_spec_in_an_actor_reports_the_plugin_error(ray_cluster):
    with pytest.raises(AmiagentError, match="did not start in its Ray actor.*Did you mean 'point_mass'"):
        host("world_model", {"name": "point_mas"})


def test_config_errors_surface_before_any_actor_starts(ray_cluster, composed):
    bad = {**_agent_cfg(composed), "world_model": {"name": "point_mass", "params": {"mass": 3}}}
    with pytest.raises(AmiagentError, match=r"agent\.world_model.*unknown parameter\(s\) mass"):
        ray_agent(bad, {"placement": "pod"})
    with pytest.raises(ConfigError, match="unknown placement 'podd'"):
        ray_agent(_agent_cfg(composed), {"placement": "podd"})


# --------------------------------------------------------------------------- without Ray running

MODULES = ["configurator", "perception", "world_model", "cost", "memory", "actor"]


def test_placements_put_every_module_in_exactly_one_group():
    assert [g.modules for g in plan_groups("pod", MODULES)] == [tuple(MODULES)]
    assert [g.modules for g in plan_groups("separate", MODULES)] == [(m,) for m in MODULES]
    mixed = plan_groups({"planner": {"modules": ["actor", "world_model", "cost"], "max_restarts": 1}}, MODULES)
    assert mixed[0].modules == ("actor", "world_model", "cost") and mixed[0].supervision.max_restarts == 1
    assert sorted(m for g in mixed for m in g.modules) == sorted(MODULES)
    assert all(g.num_cpus == 0 for g in mixed)


@pytest.mark.parametrize("placement, message", [
    ({"a": {"modules": ["actor"]}, "b": {"modules": ["actor"]}}, "already placed in group 'a'"),
    ({"a": {"modules": ["planner"]}}, "'planner' is not a module"),
    ({"a": {"modules": ["mode1"]}}, "this agent has no 'mode1' module"),
    ({"a": {"modules": []}}, "non-empty list"),
    ({"a": {"modules": ["actor"], "cpus": 1}}, "unknown key"),
    ({"a": {"modules": ["actor"], "num_cpus": -1}}, "num_cpus must be a finite number >= 0"),
    ("everywhere", "unknown placement 'everywhere'"),
])
def test_bad_placements_are_refused_with_the_config_path(placement, message):
    with pytest.raises(ConfigError, match=message):
        plan_groups(placement, MODULES)


def test_an_unreachable_cluster_address_fails_fast():
    from amiagent.runtime.session import _check_reachable

    with pytest.raises(AmiagentError, match="no Ray cluster answers at runtime.address=127.0.0.1:1"):
        _check_reachable("127.0.0.1:1")
    with pytest.raises(AmiagentError, match="host:port"):
        _check_reachable("nowhere")


def test_only_plain_containers_cross_into_ray():
    from omegaconf import OmegaConf

    require_plain({"a": [1, 2.0, "x", None, {"b": True}]}, "agent")
    with pytest.raises(ConfigError, match=r"agent\.world_model: DictConfig cannot cross into Ray"):
        require_plain({"world_model": OmegaConf.create({"name": "point_mass"})}, "agent")


def test_a_group_named_after_another_module_is_refused():
    with pytest.raises(ConfigError, match="group named after the module 'actor' must hold it"):
        plan_groups({"actor": {"modules": ["world_model", "cost"]}}, MODULES)


def test_supervision_values_are_checked():
    from amiagent.runtime.placement import Supervision

    with pytest.raises(ConfigError, match=r"runtime.placement.g.call_timeout_s must be > 0"):
        Supervision.from_config({"call_timeout_s": 0}, "runtime.placement.g")
    with pytest.raises(ConfigError, match="max_restarts must be an integer >= 0"):
        Supervision(max_restarts=-1)
    assert [Supervision(backoff_s=0.5, backoff_max_s=3).backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]


def test_named_placements_come_from_runtime_placements():
    named = {"two": {"plan": {"modules": ["actor", "world_model", "cost"], "max_restarts": 0},
                     "rest": {"modules": ["configurator", "perception", "memory"]}}}
    groups = plan_groups("two", MODULES, placements=named)
    assert [(g.name, g.modules, g.supervision.max_restarts) for g in groups] == \
        [("plan", ("actor", "world_model", "cost"), 0), ("rest", ("configurator", "perception", "memory"), 3)]
    with pytest.raises(ConfigError, match=r"unknown placement 'tow'; choose one of \['pod', 'separate', 'two'\]"):
        plan_groups("tow", MODULES, placements=named)


def test_a_hierarchical_agent_runs_its_upper_level_in_the_driver_as_under_local(ray_cluster):
    """Level 0's modules in a pod actor, level 1 next to the cycle: the same episode as under local."""
    cfg = load_config(["agent=hierarchical", "world=two_rooms", "runtime=local", "+agent.loop.lockstep=true"])
    w = build_world(cfg["world"])
    local = build_agent(copy.deepcopy(cfg["agent"]))
    try:
        want = run_episode(local, w, 2)  # the seed where the flat agent sticks behind the wall
    finally:
        local.close()
    agent = ray_agent(copy.deepcopy(cfg["agent"]), {"placement": "pod"})
    try:
        assert agent.hierarchy is not None and [lv.name for lv in agent.hierarchy.levels] == ["waypoints"]
        episode = run_episode(agent, w, 2)
    finally:
        agent.close()
        w.close()
    _same_episode(episode, want)
    assert [c.goal for c in episode.cycles] == [c.goal for c in want.cycles]  # the same subgoals, handed down
    assert episode.replans == want.replans >= 2 and episode.total_violations == 0
