"""Every method of every contract that crosses processes, called through every runtime.

The contracts are declared once (`amiagent.contracts.declared`); the proxies and servers derive from that
declaration. Here each declared method is called with the same arguments on the plugin itself (local),
through a proxy to a ZeroMQ server in this process (bus), and through a proxy to a module alone in its own
Ray actor (ray: `amiagent.runtime.host`, as the `separate` placement places them), and the answers must
agree. Bodies are called on the BodyServer and through RemoteBody, the control endpoint on the
ControlServer and through RemoteControl. A method a contract class gains without a declaration, a declared
method with no call here, or a declared method a runtime cannot answer fails this module.
"""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pytest
import torch

from amiagent.agent import SwapTicket
from amiagent.contracts import checks
from amiagent.bus.body import BodyServer, RemoteBody
from amiagent.build import build_module
from amiagent.contracts import Body, CostReport, MemoryRecord, Observation, Plan, Task
from amiagent.contracts.declared import DECLARED, IN_PROCESS, MODULES, undeclared
from amiagent.contracts.modules import CONTRACTS
from amiagent.bus.control import ControlServer, RemoteControl
from amiagent.bus.remote import PROXIES, ModuleServer

SPECS = {
    "configurator": {"name": "static", "params": {"horizon": 8, "state_dim": 4}},
    "perception": {"name": "state", "params": {"state_dim": 4}},
    "world_model": {"name": "point_mass", "params": {"max_accel": 2.0}},
    "cost": {"terms": {"goal_distance": {"weight": 1.0}, "action_effort": {"weight": 0.02}},
             "guardrails": {"keep_out": {}, "speed_limit": {}}},
    "memory": {"name": "ring", "params": {"capacity": 100}},
    "actor": {"name": "mpc", "params": {"samples": 32, "iterations": 2, "elites": 4, "seed": 0}},
}
ORDER = tuple(SPECS)  # the actor plans through the world model and cost: they come first
SETTINGS = checks.sample_settings(horizon=8)


def _obs(t: float) -> Observation:
    return Observation(t=t, state=np.array([-1.0 + t, 0.2, 0.1, 0.0]))


def _record(i: int) -> MemoryRecord:
    return MemoryRecord(0.1 * i, torch.full((4,), float(i)), torch.full((2,), -float(i)), 1.0 + i, 0.0)


def _calls() -> dict[str, list[tuple]]:
    """Per module contract, (method, *args) in the order a runtime makes them; fresh arguments each time."""
    gen = torch.Generator().manual_seed(0)
    states, actions = torch.randn(5, 4, generator=gen), torch.rand(5, 6, 2, generator=gen) * 4 - 2
    lifecycle = [("apply", SETTINGS), ("activate",)]
    return {
        "configurator": lifecycle + [("configure", Task("reach", goal=(1.0, 0.5), constraints={
            "keep_out": {"circles": [[0.0, 0.0, 0.3]]}})), ("deactivate",)],
        "perception": lifecycle + [("encode", _obs(0.1)), ("encode", [_obs(0.2), _obs(0.3)]), ("deactivate",)],
        "world_model": lifecycle + [("rollout", states, actions), ("rollout", states[:1], actions),
                                    ("brake_action", states), ("goal_states", torch.tensor([1.0, -0.5, 0, 0]), 0.05),
                                    ("deactivate",)],
        "cost": lifecycle + [("evaluate", states.unsqueeze(1).expand(5, 6, 4), actions), ("deactivate",)],
        "memory": lifecycle + [("write", _record(0)), ("write", _record(1)), ("write", _record(2)),
                               ("recent", 2), ("sample", 3, torch.Generator().manual_seed(1)), ("sample", 2),
                               ("__len__",), ("deactivate",)],
        "actor": lifecycle + [("reset",), ("act", torch.tensor([[-1.0, 0.2, 0.0, 0.0]])), ("deactivate",)],
    }


def _plain(value):
    """A value as comparable plain data: tensors and arrays as lists, contract values field by field."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return (str(value.dtype).replace("torch.", ""), tuple(value.shape), value.tolist())
    if isinstance(value, Plan):  # its info holds timings: not compared
        return ("plan", _plain(value.actions), _plain(value.states), _plain(value.cost))
    if isinstance(value, (CostReport, MemoryRecord, Observation)):
        return (type(value).__name__, *(_plain(getattr(value, f.name)) for f in dataclasses.fields(value)))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _run(modules: dict) -> dict[str, list]:
    """The answers of every call, per contract, and the declared attributes of each module."""
    modules["cost"].apply(SETTINGS)  # the actor plans through these two in every runtime
    modules["world_model"].apply(SETTINGS)
    answers = {}
    for name in ORDER:
        module = modules[name]
        got = [_plain(getattr(module, method)(*args)) for method, *args in _calls()[name]]
        got.append({a: _plain(getattr(module, a)) for a in MODULES[name].attributes})
        answers[name] = got
    return answers


@pytest.fixture(scope="module")
def local_answers():
    modules = {name: build_module(name, spec) for name, spec in SPECS.items()}
    modules["actor"].bind(modules["world_model"], modules["cost"])
    try:
        return _run(modules)
    finally:
        for module in modules.values():
            module.close()


@pytest.fixture(scope="module")
def bus_answers():
    """Each module served in this process (as a pod serves them); the actor bound to its neighbours directly."""
    modules = {name: build_module(name, spec) for name, spec in SPECS.items()}
    modules["actor"].bind(modules["world_model"], modules["cost"])
    servers = {name: ModuleServer(m, f"inproc://coverage-{name}-{uuid.uuid4().hex}").start()
               for name, m in modules.items()}
    proxies = {name: PROXIES[name](s.endpoint, timeout=30.0) for name, s in servers.items()}
    try:
        return _run(proxies)
    finally:
        for obj in [*proxies.values(), *servers.values(), *modules.values()]:
            obj.close()


@pytest.fixture(scope="module")
def ray_answers(ray_cluster):
    """Each module alone in its own Ray actor; the actor plans through the other actors over tcp."""
    import ray

    from amiagent.runtime.host import host_all

    hosted = host_all(SPECS, timeout=120.0)
    try:
        endpoints = {name: h.endpoint for name, h in hosted.items()}
        ray.get(hosted["actor"].actor.bind.remote(endpoints, 30.0), timeout=60)
        proxies = {name: h.proxy(timeout=30.0) for name, h in hosted.items()}
        try:
            return _run(proxies)
        finally:
            for proxy in proxies.values():
                proxy.close()
    finally:
        for h in hosted.values():
            h.close()


def _compared(name: str, answers: list) -> list[tuple[str, object]]:
    """(what was called, its answer) for one contract; sampled records left out: locally the caller's
    generator draws them, remotely a seed drawn from it does (`test_remote_samples_...` checks those)."""
    labels = [c[0] for c in _calls()[name]] + ["attributes"]
    return [(label, answer) for label, answer in zip(labels, answers, strict=True) if label != "sample"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("runtime", ["bus", "ray"])
def test_every_module_method_answers_alike_in_every_runtime(request, local_answers, runtime):
    got = request.getfixturevalue(f"{runtime}_answers")
    assert set(got) == set(local_answers) == set(MODULES)
    for name in MODULES:
        for (method, answer), (_, want) in zip(_compared(name, got[name]), _compared(name, local_answers[name]),
                                               strict=True):
            assert answer == want, f"{name}.{method} answers otherwise under {runtime}"


@pytest.mark.timeout(300)
def test_remote_samples_are_stored_records_and_alike_over_the_bus_and_in_ray(bus_answers, ray_answers):
    stored = [_plain(_record(i)) for i in range(3)]
    for i, (method, *args) in enumerate(_calls()["memory"]):
        if method != "sample":
            continue
        for answers in (bus_answers, ray_answers):
            assert len(answers["memory"][i]) == args[0] and all(r in stored for r in answers["memory"][i])
        if len(args) == 2:  # seeded: the same seed drawn from the caller's generator, the same draws
            assert bus_answers["memory"][i] == ray_answers["memory"][i]


def test_every_declared_module_method_is_called_here():
    for name, contract in MODULES.items():
        assert {c[0] for c in _calls()[name]} == {m.name for m in contract.methods}, name


def test_every_public_method_of_every_contract_class_is_declared_or_kept_local():
    for name, contract in DECLARED.items():
        assert undeclared(contract) == [], f"{name}: declare these methods (or say why they stay local)"
    assert set(CONTRACTS) == set(MODULES) | set(IN_PROCESS)  # every contract either crosses or is in-process


def test_every_declared_method_is_the_proxys_own():
    for name, contract in MODULES.items():
        for method in contract.methods:
            assert getattr(PROXIES[name], method.name) is not getattr(contract.cls, method.name, None), \
                f"{name}.{method.name} would run the contract's local default on the caller's side"
    for cls, contract in ((RemoteBody, DECLARED["body"]), (RemoteControl, DECLARED["control"])):
        for method in contract.methods:
            assert getattr(cls, method.name) is not getattr(contract.cls, method.name, None)


# --------------------------------------------------------------------------- body and control


class _Body(Body):
    """A 2-D double integrator stepped by each observe: deterministic, so two copies answer alike."""

    def __init__(self):
        self.action_low, self.action_high = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
        self.state, self.action, self.t = np.zeros(4), np.zeros(2), 0.0

    def observe(self) -> Observation:
        self.t += 0.1
        self.state = self.state + 0.1 * np.r_[self.state[2:], self.action]
        return Observation(self.t, self.state.copy(), {"cam": np.full((2, 3, 3), int(10 * self.t), np.uint8)})

    def command(self, action: np.ndarray) -> None:
        self.action = np.asarray(action, dtype=np.float64)

    def stop(self) -> None:
        self.action = np.zeros(2)


BODY_CALLS = [("observe",), ("command", np.array([0.5, -0.25])), ("observe",), ("estop", "test"), ("observe",),
              ("release",), ("command", np.array([-1.0, 1.0])), ("observe",), ("stop",), ("observe",)]


def test_every_body_method_answers_alike_on_the_server_and_through_remote_body():
    assert {c[0] for c in BODY_CALLS} == {m.name for m in DECLARED["body"].methods}
    local = BodyServer(_Body(), "inproc://unused")  # the body protocol, called in this process (not served)
    with BodyServer(_Body(), f"inproc://coverage-body-{uuid.uuid4().hex}") as server, \
            RemoteBody(server.endpoint, timeout=10.0) as remote:
        for side in (local, remote):
            assert [_plain(getattr(side, a)) for a in DECLARED["body"].attributes] == \
                   [_plain(getattr(local.body, a)) for a in DECLARED["body"].attributes]
        for method, *args in BODY_CALLS:
            assert _plain(getattr(local, method)(*args)) == _plain(getattr(remote, method)(*args)), method
        assert not server.estopped and server.body.action.tolist() == [0.0, 0.0]
    local.close()


def test_every_control_method_answers_alike_on_the_server_and_through_remote_control(tmp_path, monkeypatch):
    monkeypatch.setenv("AMIAGENT_RUNTIME_DIR", str(tmp_path))
    swaps = []

    def swap(module, spec):
        swaps.append((module, spec))
        done = SwapTicket(spec["name"])
        done.set()
        return f"{spec['name']} #{len(swaps)}", done

    def status():
        return {"agent": "coverage", "pid": 1, "runtime": "local", "modules": {"actor": "mpc"}, "down": [],
                "cycles": len(swaps)}

    calls = [("swap", "actor", {"name": "mpc", "params": {"samples": 8}}), ("status",)]
    assert {c[0] for c in calls} == {m.name for m in DECLARED["control"].methods}
    server = ControlServer("coverage", "inproc://coverage-control", swap=swap, status=status, runtime="local")
    try:
        with RemoteControl(server.endpoint, timeout=10.0) as remote:
            for method, *args in calls:
                here, there = getattr(server, method)(*args), getattr(remote, method)(*args)
                if method == "swap":
                    assert here["plugin"] == "mpc #1" and there["plugin"] == "mpc #2"
                    here["plugin"] = there["plugin"]
                assert here == there, method
    finally:
        server.close()
    assert swaps == [("actor", {"name": "mpc", "params": {"samples": 8}})] * 2
