"""World models and cost modules served over the bus behave exactly like local ones (real ZeroMQ, msgpack)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from amiagent import registry

from amiagent.contracts import checks
from amiagent.bus import Client
from amiagent.build import build_cost
from amiagent.errors import MessageError, RemoteError
from amiagent.bus.remote import ModuleServer, RemoteCost, RemoteWorldModel

COST_SPEC = {
    "terms": {"goal_distance": {"weight": 1.0}, "action_effort": {"weight": 0.02}},
    "guardrails": {"keep_out": {}, "speed_limit": {}},
}


@pytest.fixture(params=["ipc", "tcp"])
def endpoint(request):
    return "ipc://*" if request.param == "ipc" else "tcp://127.0.0.1:0"


def test_remote_world_model_passes_the_checker_and_matches_local(endpoint):
    local = registry.create("world_model", "point_mass")
    with ModuleServer(registry.create("world_model", "point_mass"), endpoint) as server:
        remote = RemoteWorldModel(server.endpoint)
        states, actions = torch.randn(7, 4), torch.rand(7, 16, 2) * 4 - 2
        assert torch.equal(remote.rollout(states, actions), local.rollout(states, actions))
        assert torch.equal(remote.brake_action(states), local.brake_action(states))
        assert (remote.state_dim, remote.action_dim, remote.dt) == (4, 2, local.dt)
        checks.check_world_model(remote)  # also closes it, twice


def test_remote_cost_passes_the_checker_and_matches_local(endpoint):
    local = build_cost(COST_SPEC)
    local.apply(checks.sample_settings())
    with ModuleServer(build_cost(COST_SPEC), endpoint) as server:
        remote = RemoteCost(server.endpoint)
        remote.apply(checks.sample_settings())  # settings cross the wire too
        states, actions = torch.randn(5, 8, 4), torch.randn(5, 8, 2)
        got, want = remote.evaluate(states, actions), local.evaluate(states, actions)
        assert got.names == want.names
        for name in ("total", "terms", "violation"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name
        checks.check_cost(remote)


def test_planning_through_remote_modules_gives_the_same_plan():
    settings = checks.sample_settings(horizon=16)
    plans = []
    with ModuleServer(registry.create("world_model", "point_mass"), "ipc://*") as wm_server, \
            ModuleServer(build_cost(COST_SPEC), "ipc://*") as cost_server:
        for wm, cost in ((registry.create("world_model", "point_mass"), build_cost(COST_SPEC)),
                         (RemoteWorldModel(wm_server.endpoint), RemoteCost(cost_server.endpoint))):
            actor = registry.create("actor", "mpc", {"samples": 64, "iterations": 4, "elites": 8})
            cost.apply(settings)
            actor.bind(wm, cost)
            actor.apply(settings)
            actor.reset()
            plans.append(actor.act(torch.tensor([[-1.0, 0.2, 0.0, 0.0]])))
            wm.close()
            cost.close()
    assert torch.equal(plans[0].actions, plans[1].actions)


def test_misfit_request_gets_an_error_and_never_reaches_the_model():
    calls = []
    model = registry.create("world_model", "point_mass")
    real_rollout = model.rollout
    model.rollout = lambda s, a: calls.append(1) or real_rollout(s, a)
    with ModuleServer(model, "ipc://*") as server, Client(server.endpoint) as client:
        with pytest.raises(RemoteError, match=r"do not fit \(B or 1, 4\) and \(B, H, 2\)"):
            client.request("rollout", {"states": np.zeros((3, 4), np.float32),
                                       "actions": np.zeros((2, 5, 2), np.float32)})
        with pytest.raises(MessageError, match="field 'states': expected finite values"):  # refused before sending
            client.request("rollout", {"states": np.full((1, 4), np.nan, np.float32),
                                       "actions": np.zeros((2, 5, 2), np.float32)})
        with pytest.raises(RemoteError, match="a world model does not answer 'evaluate'"):
            client.request("evaluate", {"states": np.zeros((1, 2, 4), np.float32),
                                        "actions": np.zeros((1, 2, 2), np.float32)})
        assert calls == []
        # and it still serves
        reply = client.request("rollout", {"states": np.zeros((1, 4), np.float32),
                                           "actions": np.ones((2, 3, 2), np.float32)}, expect="states")
        assert reply["states"].shape == (2, 3, 4) and calls == [1]


def test_server_leaves_no_threads():
    before = {t.name for t in threading.enumerate()}
    server = ModuleServer(registry.create("world_model", "point_mass"), "ipc://*").start()
    RemoteWorldModel(server.endpoint).close()
    server.close()
    server.close()
    assert {t.name for t in threading.enumerate()} <= before


def test_lifecycle_calls_reach_the_served_module():
    model = registry.create("world_model", "point_mass")
    with ModuleServer(model, "ipc://*") as server:
        remote = RemoteWorldModel(server.endpoint)
        remote.activate()
        assert model.active and remote.active
        remote.deactivate()
        assert not model.active and not remote.active
        remote.close()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("runtime", ["bus", "ray"])
def test_goal_states_come_from_the_served_model(request, runtime):
    """The arm model answers goal_states by inverse kinematics (the contract's default would just echo the goal):
    remotely the caller gets the served model's states, and none for a goal out of reach."""
    local = registry.create("world_model", "arm")
    start = torch.zeros(1, local.state_dim)
    start[0, 7:14] = torch.tensor([0.3, 0.5, -0.2, -1.0, 0.1, 0.6, 0.0])
    reachable = torch.cat([local.rollout(start, torch.zeros(1, 1, 7))[0, 0, :3], torch.zeros(18)])
    far = torch.tensor([2.0, 0.3, 0.4] + [0.0] * 18)
    if runtime == "ray":
        from amiagent.runtime.host import host

        request.getfixturevalue("ray_cluster")
        served = host("world_model", {"name": "arm"}, timeout=120.0)
        remote = served.proxy(timeout=60.0)
    else:
        served = ModuleServer(registry.create("world_model", "arm"), "ipc://*").start()
        remote = RemoteWorldModel(served.endpoint, timeout=60.0)
    try:
        found = remote.goal_states(reachable, 0.03)
        assert found.shape[0] >= 1 and torch.equal(found, local.goal_states(reachable, 0.03))
        assert not torch.equal(found, reachable.reshape(1, -1))
        assert remote.goal_states(far, 0.03).shape == (0, 21)
    finally:
        remote.close()
        served.close()
