"""Modules across processes: serve any module on the bus, and call it through a proxy.

`ModuleServer(module, endpoint)` answers the module's contract as bus
requests; `RemoteWorldModel`, `RemoteCost`, `RemotePerception`,
`RemoteMemory`, `RemoteActor` and `RemoteConfigurator` implement the same
contracts on the calling side, so a caller cannot tell a remote module from a
local one. This is the data plane the Ray runtime places modules on.

Requests (all tensors float32 unless said, validated on receipt like every bus message):

    every module      settings {...} -> ok (apply)    activate / deactivate -> ok
    world model       model_info -> model_info_reply {state_dim, action_dim, dt, action_low, action_high}
                      rollout {states (B|1, D), actions (B, H, A)} -> states {states (B, H, D)}
                      brake {states (B, D)} -> actions {actions (B, A)}
    cost              evaluate {states (B, H, D), actions (B, H, A)} -> cost_report {total, terms, names, violation}
    perception        perception_info -> ok {state_dim}
                      encode {t, state (S,) float64, images?} -> encoded {states (1, D)}
    memory            remember {t, state (D,), action (A,), cost, violation} -> ok
                      recall {n, sample, seed} -> records {t (N,), states (N, D), actions (N, A), cost, violation}
                      memory_size -> ok {size}
    actor             act {state (1, D)} -> plan_reply {actions (H, A), states (H, D), total, terms, names,
                                                          violation, info}
                      reset -> ok
    configurator      configure {task fields} -> settings {...}

Shapes are checked against the module before it is called: a request that does
not fit gets an error reply naming the mismatch, and the module never sees it.
The served module can be replaced between requests (`ModuleServer.module = new`),
which is how the Ray runtime hot-swaps a plugin behind a running proxy.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from amiagent.bus import Client, Server
from amiagent.contracts import (
    Actor,
    Configurator,
    Cost,
    CostReport,
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
from amiagent.errors import BusError, BusTimeout, ConfigError, ContractError, RemoteError
from amiagent.messages import (
    Array,
    Bool,
    Int,
    ListOf,
    MapOf,
    Message,
    Number,
    Schema,
    Str,
    observation_to_fields,
    register_schema,
    settings_from_message,
    settings_to_fields,
    task_from_message,
    task_to_fields,
)
from amiagent.messages.schemas import schema_for

log = logging.getLogger(__name__)

_F32 = frozenset({"float32"})
_MAX = 1 << 22  # elements per tensor: 4 M floats, 16 MiB


def _copy_fields(kind: str) -> dict:
    return dict(schema_for(kind).fields)


for _schema in (
    Schema("model_info", {}, "Ask a world model for its dimensions and bounds."),
    Schema("model_info_reply", {
        "state_dim": Int(min=1),
        "action_dim": Int(min=1),
        "dt": Number(),
        "action_low": Array(_F32, (None,), finite=True),
        "action_high": Array(_F32, (None,), finite=True),
    }, "A world model's dimensions, step (s) and action bounds."),
    Schema("rollout", {
        "states": Array(_F32, (None, None), finite=True, max_elements=_MAX),
        "actions": Array(_F32, (None, None, None), finite=True, max_elements=_MAX),
    }, "WorldModel.rollout: states (B or 1, D), actions (B, H, A)."),
    Schema("states", {"states": Array(_F32, (None, None, None), max_elements=_MAX)}, "Predicted (B, H, D)."),
    Schema("brake", {"states": Array(_F32, (None, None), finite=True, max_elements=_MAX)}, "WorldModel.brake_action."),
    Schema("actions", {"actions": Array(_F32, (None, None), max_elements=_MAX)}, "Actions (B, A)."),
    Schema("evaluate", {
        "states": Array(_F32, (None, None, None), finite=True, max_elements=_MAX),
        "actions": Array(_F32, (None, None, None), finite=True, max_elements=_MAX),
    }, "Cost.evaluate: states (B, H, D), actions (B, H, A)."),
    Schema("cost_report", {
        "total": Array(_F32, (None,), max_elements=_MAX),
        "terms": Array(_F32, (None, None), max_elements=_MAX),
        "names": ListOf(Str(max_len=256), max_len=1024),
        "violation": Array(_F32, (None, None), max_elements=_MAX),
    }, "A CostReport."),
    Schema("activate", {}, "Module.activate."),
    Schema("deactivate", {}, "Module.deactivate."),
    Schema("perception_info", {}, "Ask a perception module for its state_dim."),
    Schema("encode", _copy_fields("observation"), "Perception.encode of one observation."),
    Schema("encoded", {"states": Array(_F32, (None, None), max_elements=_MAX)}, "Encoded states (B, D)."),
    Schema("remember", {
        "t": Number(),
        "state": Array(_F32, (None,), max_elements=_MAX),
        "action": Array(_F32, (None,), max_elements=_MAX),
        "cost": Number(finite=False),
        "violation": Number(finite=False),
        "seq": Int(min=0, optional=True),
    }, "Memory.write of one MemoryRecord; `seq` numbers a writer's records so a re-sent one is stored once."),
    Schema("recall", {
        "n": Int(min=0),
        "sample": Bool(),
        "seed": Int(min=0, optional=True),
    }, "Memory.recent(n), or Memory.sample(n) with an optional seed."),
    Schema("records", {
        "t": Array(frozenset({"float64"}), (None,), max_elements=_MAX),
        "states": Array(_F32, (None, None), max_elements=_MAX),
        "actions": Array(_F32, (None, None), max_elements=_MAX),
        "cost": Array(_F32, (None,), max_elements=_MAX),
        "violation": Array(_F32, (None,), max_elements=_MAX),
    }, "MemoryRecords, oldest first."),
    Schema("memory_size", {}, "len(Memory)."),
    Schema("act", {"state": Array(_F32, (None, None), finite=True, max_elements=_MAX)}, "Actor.act from (1, D)."),
    Schema("plan_reply", {
        "actions": Array(_F32, (None, None), max_elements=_MAX),
        "states": Array(_F32, (None, None), max_elements=_MAX),
        "total": Array(_F32, (None,), max_elements=_MAX),
        "terms": Array(_F32, (None, None), max_elements=_MAX),
        "names": ListOf(Str(max_len=256), max_len=1024),
        "violation": Array(_F32, (None, None), max_elements=_MAX),
        "info": MapOf(Number(finite=False), max_items=256),
    }, "An actor's Plan with its CostReport."),
    Schema("reset", {}, "Actor.reset."),
    Schema("configure", _copy_fields("task"), "Configurator.configure of a task."),
):
    register_schema(_schema, replace=True)


def _tensor(msg: Message, name: str) -> torch.Tensor:
    # received arrays are read-only views of the frame: copy into a tensor torch may own
    return torch.from_numpy(np.array(msg[name]))


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


def _report_fields(report: CostReport) -> dict[str, Any]:
    return {"total": _array(report.total), "terms": _array(report.terms), "names": list(report.names),
            "violation": _array(report.violation)}


def _report(msg: Message) -> CostReport:
    return CostReport(_tensor(msg, "total"), _tensor(msg, "terms"), tuple(msg["names"]), _tensor(msg, "violation"))


SERVED = (WorldModel, Cost, Perception, Memory, Actor, Configurator)


class ModuleServer:
    """Serves one module of any of the six kinds on `endpoint` until closed.

    `inline=True` runs calls on the socket thread (the fastest; calls are then
    serialised, which modules that are not thread-safe need anyway). Assign
    `module` to serve another instance of the same kind from the next request on.
    """

    def __init__(self, module: Module, endpoint: str, *, inline: bool = True):
        if not isinstance(module, SERVED):
            raise ConfigError(f"ModuleServer serves the six agent modules, not {type(module).__name__}")
        self.module = module
        self._server = Server(endpoint, self._handle, workers=0 if inline else 2, inline=inline,
                              name=f"module-{module.kind}")

    @property
    def endpoint(self) -> str:
        return self._server.endpoint

    @property
    def served(self) -> int:
        """Requests answered so far."""
        return self._server.served

    def start(self) -> ModuleServer:
        self._server.start()
        return self

    def close(self) -> None:
        """Stop serving. Safe twice; the module itself is not closed."""
        self._server.close()

    def __enter__(self) -> ModuleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handle(self, msg: Message) -> tuple[str, Mapping[str, Any] | None]:
        module = self.module
        if msg.kind == "settings":
            module.apply(settings_from_message(msg))
            return "ok", None
        if msg.kind in ("activate", "deactivate"):
            getattr(module, msg.kind)()
            return "ok", None
        for kind, handle in (
            (WorldModel, self._world_model), (Cost, self._cost), (Perception, self._perception),
            (Memory, self._memory), (Actor, self._actor), (Configurator, self._configurator),
        ):
            if isinstance(module, kind):
                return handle(module, msg)
        raise ContractError(f"cannot serve {type(module).__name__}")  # unreachable: checked in __init__

    def _world_model(self, wm: WorldModel, msg: Message) -> tuple[str, Mapping[str, Any]]:
        if msg.kind == "model_info":
            return "model_info_reply", {"state_dim": wm.state_dim, "action_dim": wm.action_dim, "dt": float(wm.dt),
                                        "action_low": _array(wm.action_low), "action_high": _array(wm.action_high)}
        if msg.kind == "rollout":
            states, actions = _tensor(msg, "states"), _tensor(msg, "actions")
            if states.shape[1] != wm.state_dim or actions.shape[2] != wm.action_dim or \
                    states.shape[0] not in (1, actions.shape[0]):
                raise ContractError(f"rollout: states {tuple(states.shape)} and actions {tuple(actions.shape)} do not "
                                    f"fit (B or 1, {wm.state_dim}) and (B, H, {wm.action_dim})")
            return "states", {"states": _array(wm.rollout(states, actions))}
        if msg.kind == "brake":
            states = _tensor(msg, "states")
            if states.shape[1] != wm.state_dim:
                raise ContractError(f"brake: states {tuple(states.shape)} do not fit (B, {wm.state_dim})")
            return "actions", {"actions": _array(wm.brake_action(states))}
        raise ContractError(f"a world model does not answer {msg.kind!r}")

    def _cost(self, cost: Cost, msg: Message) -> tuple[str, Mapping[str, Any]]:
        if msg.kind != "evaluate":
            raise ContractError(f"a cost module does not answer {msg.kind!r}")
        states, actions = _tensor(msg, "states"), _tensor(msg, "actions")
        if states.shape[:2] != actions.shape[:2]:
            raise ContractError(f"evaluate: states {tuple(states.shape)} and actions {tuple(actions.shape)} must "
                                "share (B, H)")
        return "cost_report", _report_fields(cost.evaluate(states, actions))

    def _perception(self, perception: Perception, msg: Message) -> tuple[str, Mapping[str, Any]]:
        if msg.kind == "perception_info":
            return "ok", {"payload": {"state_dim": int(perception.state_dim)}}
        if msg.kind == "encode":
            obs = Observation(t=float(msg["t"]), state=np.array(msg["state"]),
                              images={k: np.array(v) for k, v in msg.get("images", {}).items()})
            return "encoded", {"states": _array(perception.encode(obs))}
        raise ContractError(f"a perception module does not answer {msg.kind!r}")

    def _memory(self, memory: Memory, msg: Message) -> tuple[str, Mapping[str, Any]]:
        if msg.kind == "remember":
            record = MemoryRecord(float(msg["t"]), _tensor(msg, "state"), _tensor(msg, "action"),
                                  float(msg["cost"]), float(msg["violation"]))
            numbered = getattr(memory, "write_numbered", None)
            if numbered is not None:
                numbered(record, msg.get("seq"))
            else:
                memory.write(record)
            return "ok", None
        if msg.kind == "recall":
            if msg["sample"]:
                generator = torch.Generator().manual_seed(msg["seed"]) if msg.get("seed") is not None else None
                records = memory.sample(msg["n"], generator)
            else:
                records = memory.recent(msg["n"])
            return "records", records_to_fields(records)
        if msg.kind == "memory_size":
            return "ok", {"payload": {"size": len(memory)}}
        raise ContractError(f"a memory module does not answer {msg.kind!r}")

    def _actor(self, actor: Actor, msg: Message) -> tuple[str, Mapping[str, Any]]:
        if msg.kind == "act":
            plan = actor.act(_tensor(msg, "state"))
            info = {k: float(v) for k, v in plan.info.items()}
            return "plan_reply", {"actions": _array(plan.actions), "states": _array(plan.states),
                                  **_report_fields(plan.cost), "info": info}
        if msg.kind == "reset":
            actor.reset()
            return "ok", None
        raise ContractError(f"an actor does not answer {msg.kind!r}")

    def _configurator(self, configurator: Configurator, msg: Message) -> tuple[str, Mapping[str, Any]]:
        if msg.kind != "configure":
            raise ContractError(f"a configurator does not answer {msg.kind!r}")
        return "settings", settings_to_fields(configurator.configure(task_from_message(Message("task", msg.fields))))


def records_to_fields(records: list[MemoryRecord]) -> dict[str, Any]:
    """Fields of a `records` message (empty lists give (0, 0) arrays)."""
    if not records:
        empty = np.zeros((0, 0), np.float32)
        return {"t": np.zeros(0), "states": empty, "actions": empty, "cost": np.zeros(0, np.float32),
                "violation": np.zeros(0, np.float32)}
    return {
        "t": np.array([r.t for r in records], dtype=np.float64),
        "states": np.stack([_array(r.state) for r in records]),
        "actions": np.stack([_array(r.action) for r in records]),
        "cost": np.array([r.cost for r in records], dtype=np.float32),
        "violation": np.array([r.violation for r in records], dtype=np.float32),
    }


def records_from_message(msg: Message) -> list[MemoryRecord]:
    """The MemoryRecords of a `records` message."""
    states, actions = _tensor(msg, "states"), _tensor(msg, "actions")
    return [MemoryRecord(float(t), states[i], actions[i], float(c), float(v))
            for i, (t, c, v) in enumerate(zip(msg["t"], msg["cost"], msg["violation"]))]


class _Proxy:
    """The lifecycle of a proxied module: every call is forwarded to the served module.

    Mixed in before the contract class, so these methods take precedence over
    the contract's no-op defaults. `reconnect(endpoint)` points the proxy at a
    restarted server; `requests` counts the calls made (cross-process calls).
    """

    requests: int = 0
    unanswered: int = 0
    """Calls in a row that got no answer in time (a supervisor restarts a module that stops answering)."""

    def _connect(self, endpoint: str, timeout: float, cycle_timeout: float | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.cycle_timeout = timeout if cycle_timeout is None else cycle_timeout
        """Limit of the calls a control cycle makes (encode, memory acknowledgements, a Mode-1 action,
        braking): at most a control period, where `timeout` bounds lifecycle and planning calls."""
        self._client = Client(endpoint, timeout=timeout)

    def reconnect(self, endpoint: str) -> None:
        """Talk to the module at `endpoint` from now on (after a restart)."""
        old, self._client = self._client, Client(endpoint, timeout=self.timeout)
        self.endpoint = endpoint
        self.unanswered = 0
        old.close()

    def _call(self, kind: str, fields: Mapping[str, Any] | None = None, expect: str = "ok",
              timeout: float | None = None) -> Message:
        self.requests += 1
        try:
            reply = self._client.request(kind, fields, expect=expect, timeout=timeout)
        except BusTimeout:
            self.unanswered += 1
            raise
        self.unanswered = 0
        return reply

    def apply(self, settings: Settings) -> None:
        self._call("settings", settings_to_fields(settings))

    def activate(self) -> None:
        super().activate()
        self._call("activate")

    def deactivate(self) -> None:
        super().deactivate()
        self._call("deactivate")

    def close(self) -> None:
        super().close()
        self._client.close()


class RemoteWorldModel(_Proxy, WorldModel):
    """A WorldModel served by a ModuleServer at `endpoint`."""

    def __init__(self, endpoint: str, *, timeout: float = 1.0, cycle_timeout: float | None = None):
        WorldModel.__init__(self)
        self._connect(endpoint, timeout, cycle_timeout)
        info = self._call("model_info", expect="model_info_reply")
        self.state_dim, self.action_dim, self.dt = info["state_dim"], info["action_dim"], info["dt"]
        self.action_low, self.action_high = _tensor(info, "action_low"), _tensor(info, "action_high")

    def rollout(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        reply = self._call("rollout", {"states": _array(states), "actions": _array(actions)}, expect="states")
        return _tensor(reply, "states")

    def brake_action(self, states: torch.Tensor) -> torch.Tensor:
        reply = self._call("brake", {"states": _array(states)}, expect="actions", timeout=self.cycle_timeout)
        return _tensor(reply, "actions")


class RemoteCost(_Proxy, Cost):
    """A cost module served by a ModuleServer at `endpoint`."""

    def __init__(self, endpoint: str, *, timeout: float = 1.0, cycle_timeout: float | None = None):
        Cost.__init__(self)
        self._connect(endpoint, timeout, cycle_timeout)

    def evaluate(self, states: torch.Tensor, actions: torch.Tensor) -> CostReport:
        return _report(self._call("evaluate", {"states": _array(states), "actions": _array(actions)},
                                  expect="cost_report"))


class RemotePerception(_Proxy, Perception):
    """A Perception module served by a ModuleServer at `endpoint`."""

    def __init__(self, endpoint: str, *, timeout: float = 1.0, cycle_timeout: float | None = None):
        Perception.__init__(self)
        self._connect(endpoint, timeout, cycle_timeout)
        self.state_dim = int(self._call("perception_info")["payload"]["state_dim"])

    def encode(self, obs: Observation | Sequence[Observation]) -> torch.Tensor:
        if not isinstance(obs, Observation):  # a batch: one request per observation
            return torch.cat([self.encode(o) for o in obs])
        reply = self._call("encode", observation_to_fields(obs), expect="encoded", timeout=self.cycle_timeout)
        return _tensor(reply, "states")


class UnwrittenRecords(BusError):
    """Memory writes that were not acknowledged: `records`, oldest first, for the writer to keep and re-send."""

    def __init__(self, message: str, records: list[MemoryRecord]):
        super().__init__(message)
        self.records = records


class RemoteMemory(_Proxy, Memory):
    """A Memory module served by a ModuleServer at `endpoint`.

    `write` does not wait: a record is sent and its acknowledgement collected
    at the next call (it has long arrived by then). A write that was never
    acknowledged is handed back by the next `write`, as `UnwrittenRecords`
    (the Agent keeps such records and writes them again once memory answers);
    after `reconnect` the last write is re-sent, and stored once (writes are
    numbered, and a journaled memory ignores a number it already has).
    """

    def __init__(self, endpoint: str, *, timeout: float = 1.0, cycle_timeout: float | None = None):
        Memory.__init__(self)
        self._connect(endpoint, timeout, cycle_timeout)
        self._seq = itertools.count(int(time.time() * 1e3) << 16)  # increasing across restarts of the writer
        self._unacked: tuple[bytes, MemoryRecord, int] | None = None
        self._returned: list[MemoryRecord] = []  # unacknowledged, for the next write to hand back
        self._numbers: dict[int, tuple[MemoryRecord, int]] = {}  # id -> (record, number) of records handed
        # back; holding the record keeps its id from being reused by another object

    def _settle(self) -> None:
        """Collect the last write's acknowledgement; if it never came, the record waits in `_returned`."""
        if self._unacked is not None:
            request_id, record, seq = self._unacked
            self._unacked = None
            try:
                self._client.collect(request_id, self.cycle_timeout, expect="ok")
                self.unanswered = 0
            except RemoteError as exc:  # the memory refused this record: re-sending it would not help
                log.error("memory refused a record (%s); it is dropped", exc)
            except Exception as exc:
                self.unanswered += isinstance(exc, BusTimeout)
                self._returned.append(record)
                if len(self._numbers) > 4 * 10_000:  # records the writer dropped long ago
                    self._numbers.clear()
                self._numbers[id(record)] = (record, seq)  # written again, it keeps its number
                raise UnwrittenRecords(f"a memory write was not acknowledged: {exc}", []) from exc

    def reconnect(self, endpoint: str) -> None:
        pending, self._unacked = self._unacked, None
        super().reconnect(endpoint)
        if pending is not None:  # re-sent to the restarted memory; stored once thanks to its number
            _, record, seq = pending
            self._unacked = (self._client.submit("remember", self._fields(record, seq)), record, seq)

    def _fields(self, record: MemoryRecord, seq: int) -> dict[str, Any]:
        cost = record.cost if math.isfinite(record.cost) else float("nan")
        return {"t": float(record.t), "state": _array(record.state), "action": _array(record.action),
                "cost": float(cost), "violation": float(record.violation), "seq": seq}

    def write(self, record: MemoryRecord) -> None:
        try:
            self._settle()
        except UnwrittenRecords as exc:
            returned, self._returned = self._returned, []
            raise UnwrittenRecords(str(exc), returned) from exc
        if self._returned:  # a read found an unacknowledged write: the writer gets it back first
            returned, self._returned = self._returned, []
            raise UnwrittenRecords("earlier memory writes were not acknowledged", returned)
        self.requests += 1
        known = self._numbers.pop(id(record), None)
        seq = known[1] if known is not None and known[0] is record else next(self._seq)
        self._unacked = (self._client.submit("remember", self._fields(record, seq)), record, seq)

    def recent(self, n: int) -> list[MemoryRecord]:
        self._settle()
        return records_from_message(self._call("recall", {"n": max(int(n), 0), "sample": False}, expect="records"))

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[MemoryRecord]:
        self._settle()
        fields: dict[str, Any] = {"n": max(int(n), 0), "sample": True}
        if generator is not None:  # a seed drawn from the caller's generator keeps sampling reproducible
            fields["seed"] = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        return records_from_message(self._call("recall", fields, expect="records"))

    def __len__(self) -> int:
        self._settle()
        return int(self._call("memory_size")["payload"]["size"])


class RemoteActor(_Proxy, Actor):
    """An Actor served by a ModuleServer at `endpoint`; it plans through the modules its host bound it to."""

    def __init__(self, endpoint: str, *, timeout: float = 1.0, cycle_timeout: float | None = None):
        Actor.__init__(self)
        self._connect(endpoint, timeout, cycle_timeout)

    def bind(self, world_model: WorldModel, cost: Cost) -> None:
        """Nothing to do here: the actor's host binds it to the modules of the agent."""

    def reset(self) -> None:
        self._call("reset")

    def act(self, state: torch.Tensor) -> Plan:
        """A plan, waited for at most `cycle_timeout` (a Mode-1 policy answers within a cycle)."""
        return _plan(self._call("act", {"state": _array(state)}, expect="plan_reply", timeout=self.cycle_timeout))

    def begin_act(self, state: torch.Tensor, limit: float | None = None) -> PendingPlan:
        """Ask for a plan without waiting: the plan is made in the actor's process, and the caller
        collects it with `result(timeout)` (no thread of its own needed) within `limit` s (default: the
        proxy's timeout)."""
        self.requests += 1
        return PendingPlan(self._client, self._client.submit("act", {"state": _array(state)}),
                           self.timeout if limit is None else limit, self)


def _plan(reply: Message) -> Plan:
    return Plan(_tensor(reply, "actions"), _tensor(reply, "states"), _report(reply), dict(reply["info"]))


class PendingPlan:
    """A plan asked of a remote actor, collected like a `concurrent.futures.Future`.

    `result(timeout)` raises `concurrent.futures.TimeoutError` while the plan
    may still come, and BusTimeout once the actor has had `limit` seconds.
    """

    def __init__(self, client: Client, request_id: bytes, limit: float, proxy: _Proxy | None = None):
        self._client, self._id, self._proxy = client, request_id, proxy
        self._expires = time.monotonic() + limit
        self._limit = limit
        self._outcome: tuple[Plan | None, BaseException | None] | None = None

    def result(self, timeout: float | None = None) -> Plan:
        if self._outcome is None:
            left = self._expires - time.monotonic()
            wait = left if timeout is None else min(timeout, left)
            try:
                self._outcome = (_plan(self._client.collect(self._id, max(wait, 0.0), "plan_reply", keep=True)),
                                 None)
            except BusTimeout:
                if time.monotonic() < self._expires:
                    raise cf.TimeoutError from None
                self._client.forget(self._id)
                self._outcome = (None, BusTimeout(f"no plan from the actor within {self._limit:g} s"))
                if self._proxy is not None:
                    self._proxy.unanswered += 1
            except Exception as exc:
                self._client.forget(self._id)
                self._outcome = (None, exc)
        plan, error = self._outcome
        if error is not None:
            raise error
        return plan

    def done(self) -> bool:
        """Whether the plan (or its failure) has been collected, as `Future.done`."""
        return self._outcome is not None

    def cancel(self) -> bool:
        """A plan being made elsewhere cannot be stopped: False while it is in flight, as for a running
        Future (wait for it with `result`, or `abandon` it when its process is gone)."""
        return self._outcome is not None and isinstance(self._outcome[1], cf.CancelledError)

    def abandon(self) -> None:
        """Stop waiting for the plan: its reply, if one ever comes, is discarded."""
        if self._outcome is None:
            self._client.forget(self._id)
            self._outcome = (None, cf.CancelledError())


class RemoteConfigurator(_Proxy, Configurator):
    """A Configurator served by a ModuleServer at `endpoint`."""

    def __init__(self, endpoint: str, *, timeout: float = 1.0, cycle_timeout: float | None = None):
        Configurator.__init__(self)
        self._connect(endpoint, timeout, cycle_timeout)

    def configure(self, task: Task) -> Settings:
        return settings_from_message(self._call("configure", task_to_fields(task), expect="settings"))


PROXIES: dict[str, type[_Proxy]] = {
    "world_model": RemoteWorldModel,
    "cost": RemoteCost,
    "perception": RemotePerception,
    "memory": RemoteMemory,
    "actor": RemoteActor,
    "configurator": RemoteConfigurator,
}
"""Module kind -> the proxy class implementing its contract over the bus."""
