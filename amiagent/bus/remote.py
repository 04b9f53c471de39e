"""Modules across processes: serve any module on the bus, and call it through a proxy.

`ModuleServer(module, endpoint)` answers the module's contract as bus
requests; `RemoteWorldModel`, `RemoteCost`, `RemotePerception`,
`RemoteMemory`, `RemoteActor` and `RemoteConfigurator` implement the same
contracts on the calling side, so a caller cannot tell a remote module from a
local one. This is the data plane the Ray runtime places modules on.

Both sides are derived from the contracts' one declaration
(`amiagent.contracts.declared`), which lists every request, its fields and its
reply; what is written here by hand is only what a declaration cannot say:
memory writes that do not wait for their acknowledgement, and plans asked
for without waiting (`RemoteActor.begin_act`).

Requests are validated on receipt like every bus message, and shapes are
checked against the module before it is called: a request that does not fit
gets an error reply naming the mismatch, and the module never sees it. The
served module can be replaced between requests (`ModuleServer.module = new`),
which is how the Ray runtime hot-swaps a plugin behind a running proxy.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import logging
import time
from typing import Any

import torch

from amiagent.bus import Server
from amiagent.bus.rpc import Proxy, dispatcher
from amiagent.contracts import Actor, Configurator, Cost, Memory, MemoryRecord, Module, Perception, Plan, WorldModel
from amiagent.contracts.declared import ACTOR, CONFIGURATOR, COST, MEMORY, PERCEPTION, WORLD_MODEL, Method, contract_of
from amiagent.errors import BusTimeout, ConfigError, RemoteError, UnwrittenRecords

log = logging.getLogger(__name__)


class ModuleServer:
    """Serves one module of any of the six kinds on `endpoint` until closed.

    `inline=True` runs calls on the socket thread (the fastest; calls are then
    serialised, which modules that are not thread-safe need anyway). Assign
    `module` to serve another instance of the same kind from the next request on.
    """

    def __init__(self, module: Module, endpoint: str, *, inline: bool = True):
        self.contract = contract_of(module)
        self._module = module
        self._server = Server(endpoint, dispatcher(self.contract, lambda: self._module),
                              workers=0 if inline else 2, inline=inline, name=f"module-{module.kind}")

    @property
    def module(self) -> Module:
        """The module served now."""
        return self._module

    @module.setter
    def module(self, module: Module) -> None:
        if contract_of(module) is not self.contract:
            raise ConfigError(f"this server serves a {self.contract.name}, not a {type(module).kind}")
        self._module = module

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


class RemoteWorldModel(Proxy, WorldModel, contract=WORLD_MODEL):
    """A WorldModel served by a ModuleServer at `endpoint`."""


class RemoteCost(Proxy, Cost, contract=COST):
    """A cost module served by a ModuleServer at `endpoint`."""


class RemotePerception(Proxy, Perception, contract=PERCEPTION):
    """A Perception module served by a ModuleServer at `endpoint`; a batch of observations is one request."""


class RemoteConfigurator(Proxy, Configurator, contract=CONFIGURATOR):
    """A Configurator served by a ModuleServer at `endpoint`."""


_WRITE = MEMORY.method("write")


class RemoteMemory(Proxy, Memory, contract=MEMORY):
    """A Memory module served by a ModuleServer at `endpoint`.

    `write` does not wait: a record is sent and its acknowledgement collected
    at the next call (it has long arrived by then). A write that was never
    acknowledged is handed back by the next `write`, as `UnwrittenRecords`
    (the Agent keeps such records and writes them again once memory answers);
    after `reconnect` the last write is re-sent, and stored once (writes are
    numbered, and a journaled memory ignores a number it already has).
    """

    def __init__(self, endpoint: str, *, timeout: float = 1.0, cycle_timeout: float | None = None,
                 context: Any = None):
        self._seq = itertools.count(int(time.time() * 1e3) << 16)  # increasing across restarts of the writer
        self._unacked: tuple[bytes, MemoryRecord, int] | None = None
        self._returned: list[MemoryRecord] = []  # unacknowledged, for the next write to hand back
        self._numbers: dict[int, tuple[MemoryRecord, int]] = {}  # id -> (record, number) of records handed
        # back; holding the record keeps its id from being reused by another object
        super().__init__(endpoint, timeout=timeout, cycle_timeout=cycle_timeout, context=context)

    def _settle(self) -> None:
        """Collect the last write's acknowledgement; if it never came, the record waits in `_returned`."""
        if self._unacked is not None:
            request_id, record, seq = self._unacked
            self._unacked = None
            try:
                self._client.collect(request_id, self.cycle_timeout, expect=_WRITE.reply)
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

    def _invoke(self, method: Method, *args: Any, **extra: Any) -> Any:
        if method.returns.fields:  # a read: it comes after the writes before it
            self._settle()
        return super()._invoke(method, *args, **extra)

    def _send(self, record: MemoryRecord, seq: int) -> None:
        self._unacked = (self._client.submit(_WRITE.kind, self._fields(_WRITE, (record,), {"seq": seq})), record, seq)

    def reconnect(self, endpoint: str) -> None:
        pending, self._unacked = self._unacked, None
        super().reconnect(endpoint)
        if pending is not None:  # re-sent to the restarted memory; stored once thanks to its number
            self._send(pending[1], pending[2])

    def write(self, record: MemoryRecord) -> None:
        """Send `record`; its acknowledgement is collected by the next call."""
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
        self._send(record, known[1] if known is not None and known[0] is record else next(self._seq))


_ACT = ACTOR.method("act")


class RemoteActor(Proxy, Actor, contract=ACTOR):
    """An Actor served by a ModuleServer at `endpoint`; it plans through the modules its host bound it to.

    `act` waits at most `cycle_timeout` (a Mode-1 policy answers within a cycle).
    """

    def bind(self, world_model: WorldModel, cost: Cost) -> None:
        """Nothing to do here: the actor's host binds it to the modules of the agent."""

    def begin_act(self, state: torch.Tensor, limit: float | None = None) -> PendingPlan:
        """Ask for a plan without waiting: the plan is made in the actor's process, and the caller
        collects it with `result(timeout)` (no thread of its own needed) within `limit` s (default: the
        proxy's timeout)."""
        self.requests += 1
        request_id = self._client.submit(_ACT.kind, self._fields(_ACT, (state,), {}))
        return PendingPlan(self, request_id, self.timeout if limit is None else limit)


class PendingPlan:
    """A plan asked of a remote actor, collected like a `concurrent.futures.Future`.

    `result(timeout)` raises `concurrent.futures.TimeoutError` while the plan
    may still come, and BusTimeout once the actor has had `limit` seconds.
    """

    def __init__(self, proxy: RemoteActor, request_id: bytes, limit: float):
        self._client, self._id, self._proxy = proxy._client, request_id, proxy
        self._expires = time.monotonic() + limit
        self._limit = limit
        self._outcome: tuple[Plan | None, BaseException | None] | None = None

    def result(self, timeout: float | None = None) -> Plan:
        if self._outcome is None:
            left = self._expires - time.monotonic()
            wait = left if timeout is None else min(timeout, left)
            try:
                reply = self._client.collect(self._id, max(wait, 0.0), _ACT.reply, keep=True)
                self._outcome = (_ACT.returns.unpack(reply), None)
            except BusTimeout:
                if time.monotonic() < self._expires:
                    raise cf.TimeoutError from None
                self._client.forget(self._id)
                self._outcome = (None, BusTimeout(f"no plan from the actor within {self._limit:g} s"))
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


PROXIES: dict[str, type[Proxy]] = {
    "world_model": RemoteWorldModel,
    "cost": RemoteCost,
    "perception": RemotePerception,
    "memory": RemoteMemory,
    "actor": RemoteActor,
    "configurator": RemoteConfigurator,
}
"""Module kind -> the proxy class implementing its contract over the bus."""
