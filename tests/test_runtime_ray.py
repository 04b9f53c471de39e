"""The Ray runtime with real Ray (a two-node `Cluster`), real ZeroMQ sockets and real pybullet.

Agents are started once per placement for the module (six actors import torch:
seconds each on two cores) and every test runs whole seeded episodes.
"""

from __future__ import annotations

import os
import signal

import pytest

import torch

from amiagent import checks, registry
from amiagent.build import build_agent, build_cost, build_world
from amiagent.bus import Subscriber
from amiagent.errors import AmiagentError, ConfigError
from amiagent.runtime.local import run_episode
from amiagent.runtime.ray import RayAgent, host, plan_groups, require_plain
from amiagent.telemetry import TelemetryPublisher

COST_SPEC = {"terms": {"goal_distance": {"weight": 1.0}}, "guardrails": {"keep_out": {}}}
PLACEMENTS = {
    "pod": "pod",
    "separate": "separate",
    "planner": {"planner": {"modules": ["actor", "world_model", "cost"]}},  # the rest: an actor each
}
SEEDS = (0, 1)
# A restarted group is back once its actor has started and imported torch and its plugins: about 3 s
# on this 2-core machine (actor start ~0.1 s, imports and build ~2.5 s, backoff 0.2 s). The bound
# leaves room for a loaded machine; a recovery that never happens fails the episode long before.
RECOVERY_BOUND_S = 20.0


@pytest.fixture(scope="module")
def agents(ray_cluster, navigator_config):
    started = {}
    try:
        for name, placement in PLACEMENTS.items():
            started[name] = RayAgent(navigator_config["agent"], {"placement": placement,
                                                                 "supervision": {"backoff_s": 0.2}})
        yield started
    finally:
        for agent in started.values():
            agent.close()


@pytest.fixture(scope="module")
def navigator_config():
    from amiagent.config import load_config

    return load_config(["agent=navigator", "world=open_field", "runtime=local"])


@pytest.fixture
def world(navigator_config):
    w = build_world(navigator_config["world"])
    yield w
    w.close()


@pytest.fixture(scope="module")
def local_outcomes(navigator_config):
    agent, w = build_agent(navigator_config["agent"]), build_world(navigator_config["world"])
    try:
        return {seed: run_episode(agent, w, seed).status for seed in SEEDS}
    finally:
        agent.close()
        w.close()


@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_navigator_reaches_goals_under_each_placement_as_under_local(agents, world, placement, local_outcomes):
    agent = agents[placement]
    groups = agent.placement()
    assert len({g["pid"] for g in groups.values()}) == len(groups)  # one process per group
    for seed in SEEDS:
        episode = run_episode(agent, world, seed)
        assert episode.status == local_outcomes[seed] == "reached", (placement, seed)
        assert episode.total_violations == 0
        assert all(c.checked for c in episode.cycles)


def test_separate_placement_crosses_processes_every_planner_iteration(agents, world):
    agent = agents["separate"]
    before = agent.cross_process_calls()
    episode = run_episode(agent, world, 0)
    per_cycle = (agent.cross_process_calls() - before) / episode.steps
    # 10 CEM iterations, each a rollout and an evaluation, plus perception, the plan and memory
    assert per_cycle >= 20


def test_killing_a_module_mid_episode_is_survived_and_measured(agents, world):
    agent = agents["separate"]
    killed = {}

    def kill(cycle):
        if cycle.index == 8:
            killed["pid"] = agent.host_pid("actor")
            os.kill(killed["pid"], signal.SIGKILL)

    episode = run_episode(agent, world, 3, realtime=True, on_cycle=kill)
    assert episode.status == "reached" and episode.total_violations == 0
    assert all(c.checked for c in episode.cycles)  # every command passed the safety filter, down or not
    recovery = agent.recoveries[-1]
    assert recovery.group == "actor" and 0 < recovery.seconds < RECOVERY_BOUND_S
    assert agent.host_pid("actor") != killed["pid"]
    events = [e for c in episode.cycles for e in c.events]
    assert any(e.startswith("down actor") for e in events) and any(e.startswith("up actor") for e in events)
    # while the actor was down nothing came from a plan: the rest of the last plan, then braking
    down = next(i for i, c in enumerate(episode.cycles) if any(e.startswith("down") for e in c.events))
    up = next(i for i, c in enumerate(episode.cycles) if any(e.startswith("up") for e in c.events))
    assert all(c.source in ("previous", "stop") for c in episode.cycles[down:up])


def test_memory_restores_what_it_held_after_a_kill(agents, world):
    agent = agents["separate"]
    held = {}

    def kill(cycle):
        if cycle.index == 8:
            held["records"] = agent.modules.memory.recent(100_000)
            os.kill(agent.host_pid("memory"), signal.SIGKILL)

    before = len(agent.modules.memory)
    episode = run_episode(agent, world, 4, realtime=True, on_cycle=kill)
    assert episode.status == "reached" and episode.total_violations == 0
    assert agent.recoveries[-1].group == "memory" and agent.recoveries[-1].seconds < RECOVERY_BOUND_S
    restored = agent.modules.memory.recent(100_000)
    held = held["records"]
    assert len(held) == before + 9
    assert [r.t for r in restored[: len(held)]] == [r.t for r in held]
    assert torch.equal(restored[len(held) - 1].state, held[-1].state)
    # the records of the cycles while memory was down were kept and written once it was back
    assert len(restored) == before + episode.steps


def test_a_hung_module_is_restarted_like_a_dead_one(agents, world):
    agent = agents["pod"]
    stopped = {}

    def freeze(cycle):  # SIGSTOP: the process is alive but answers nothing
        if cycle.index == 8:
            stopped["pid"] = agent.host_pid("perception")
            os.kill(stopped["pid"], signal.SIGSTOP)

    episode = run_episode(agent, world, 7, realtime=True, on_cycle=freeze)
    assert episode.status == "reached" and episode.total_violations == 0
    assert all(c.checked for c in episode.cycles)
    events = [e for c in episode.cycles for e in c.events]
    assert any(e.startswith("hung ") for e in events) and any(e.startswith("recovered") for e in events)
    assert agent.host_pid("perception") != stopped["pid"] and agent.recoveries[-1].group == "pod"


def test_hot_swap_mid_episode_is_visible_in_telemetry_and_never_skips_a_check(agents, world):
    agent = agents["pod"]
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
        listener.recv(timeout=0.2)  # let the subscription reach the publisher
        episode = run_episode(agent, world, 6, on_cycle=on_cycle)
        events = []
        while (got := listener.recv(timeout=0.5)) is not None:
            events += got[1].get("events") or []
    finally:
        listener.close()
        telemetry.close()
    assert episode.status == "reached" and episode.total_violations == 0
    assert swapped["model"].is_set() and swapped["actor"].is_set()
    assert all(c.checked for c in episode.cycles)
    assert any(e.startswith("swap world_model: point_mass") and "substeps" in e for e in events)
    assert any(e.startswith("swap actor: mpc") for e in events)
    assert "samples': 200" in agent.plugins["actor"]
    # the swap happened between cycles, and the old model's last plan was dropped: the cycle right after
    # it used a fresh plan or braked (when that plan was late), never the rest of the old plan
    swap_cycle = next(c for c in episode.cycles if any(e.startswith("swap world_model") for e in c.events))
    assert swap_cycle.source in ("plan", "stop")


def test_a_bad_swap_changes_nothing(agents):
    agent = agents["pod"]
    before = dict(agent.plugins)
    with pytest.raises(AmiagentError, match="Did you mean 'point_mass'"):
        agent.swap_plugin("world_model", {"name": "point_mas"})
    with pytest.raises(AmiagentError, match="bounds"):
        agent.swap_plugin("world_model", {"params": {"max_accel": 1.0}})
    assert agent.plugins == before


def test_modules_on_two_nodes_talk_over_tcp(ray_cluster, navigator_config, world):
    import ray

    head = ray.get_runtime_context().get_node_id()  # the driver runs on the head
    placement = {"far": {"modules": ["world_model", "cost"], "labels": {"zone": "lab"}},  # by node label
                 "store": {"modules": ["memory"], "resources": {"node_b": 0.01}},  # by custom resource
                 "near": {"modules": ["configurator", "perception", "actor"], "node": head}}  # by node id
    agent = RayAgent(navigator_config["agent"], {"placement": placement})
    try:
        groups = agent.placement()
        assert groups["near"]["node_id"] == head
        assert groups["far"]["node_id"] == groups["store"]["node_id"] != head
        assert all(e.startswith("tcp://") for g in groups.values() for e in g["endpoints"].values())
        episode = run_episode(agent, world, 0)
        assert episode.status == "reached" and episode.total_violations == 0
    finally:
        agent.close()


def test_a_group_no_node_can_take_is_reported(ray_cluster, navigator_config):
    placement = {"nowhere": {"modules": ["memory"], "num_cpus": 64},  # the cluster has 2
                 "rest": {"modules": ["configurator", "perception", "world_model", "cost", "actor"]}}
    with pytest.raises(AmiagentError, match="did not start within 3 s.*resources"):
        RayAgent(navigator_config["agent"], {"placement": placement, "supervision": {"start_timeout_s": 3}})
    with pytest.raises(ConfigError, match="no node of this Ray cluster offers 1 'gpu_box'.*node_b"):
        RayAgent(navigator_config["agent"], {"placement": {"x": {"modules": ["memory"], "resources": {"gpu_box": 1}}}})
    with pytest.raises(ConfigError, match="no live Ray node 'moon'"):
        RayAgent(navigator_config["agent"], {"placement": {"x": {"modules": ["memory"], "node": "moon"}}})


def test_close_leaves_no_actor_process_or_state_behind(agents):
    # the module's planner-placement agent (four groups), after its episodes: the tests above were its last users
    agent = agents.pop("planner")
    pids = [g["pid"] for g in agent.placement().values()]
    assert len(pids) == 4
    state_dir = agent._state_dir
    agent.close()
    agent.close()
    assert not os.path.exists(state_dir)
    for pid in pids:  # ray.kill ends the worker processes
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            import time

            time.sleep(0.05)
        else:
            pytest.fail(f"actor process {pid} still alive after close")


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


def test_config_errors_surface_before_any_actor_starts(ray_cluster, navigator_config):
    bad = {**navigator_config["agent"], "world_model": {"name": "point_mass", "params": {"mass": 3}}}
    with pytest.raises(AmiagentError, match=r"agent\.world_model.*unknown parameter\(s\) mass"):
        RayAgent(bad, {"placement": "pod"})
    with pytest.raises(ConfigError, match="unknown placement 'podd'"):
        RayAgent(navigator_config["agent"], {"placement": "podd"})


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
    from amiagent.runtime.ray import _check_reachable

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


def test_a_hierarchical_agent_runs_its_upper_level_in_the_driver_and_gets_through_the_door(ray_cluster):
    """Level 0's modules in a pod actor, level 1 next to the cycle: the same episode as under local."""
    from amiagent.config import load_config

    cfg = load_config(["agent=hierarchical", "world=two_rooms", "runtime=local"])
    agent = RayAgent(cfg["agent"], {"placement": "pod"})
    w = build_world(cfg["world"])
    try:
        assert agent.hierarchy is not None and [lv.name for lv in agent.hierarchy.levels] == ["waypoints"]
        episode = run_episode(agent, w, 2)  # the seed where the flat agent sticks behind the wall
    finally:
        agent.close()
        w.close()
    assert episode.status == "reached" and episode.total_violations == 0, episode.summary()
    assert episode.replans >= 2
    assert len({c.goal for c in episode.cycles}) > 2  # level 0 followed a string of subgoals
