"""Calls across processes, derived from the contract declarations (`amiagent.contracts.declared`).

`dispatcher(contract, target)` is a bus `Server` handler answering every
request the contract declares, on the object `target()` returns: the
request's arguments are unpacked by their codecs, checked against the object
(shapes) and only then handed to it, and the result is packed by the return
codec. `Proxy` is the calling side: a class declared as

    class RemoteWorldModel(Proxy, WorldModel, contract=WORLD_MODEL): ...

gets every declared method it does not write itself, so a method declared for
a contract exists on its proxy and on its server alike. A proxy reads the
contract's attributes (dimensions, bounds, info) once at connection and again
after `reconnect`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from amiagent.bus.client import Client
from amiagent.bus.sockets import Handler
from amiagent.contracts.declared import Contract, Method
from amiagent.errors import BusTimeout, MessageError
from amiagent.messages import Message


def dispatcher(contract: Contract, target: Callable[[], Any]) -> Handler:
    """A request handler answering `contract`'s declared requests on `target()` (looked up per request,
    so the served object can be replaced between requests)."""
    table = contract.by_kind

    def handle(msg: Message) -> tuple[str, Mapping[str, Any]]:
        method = table.get(msg.kind)
        if method is None:
            raise MessageError(f"field 'k': {contract.noun} does not answer {msg.kind!r}: {contract.noun} serves "
                               f"{sorted(table)}")
        obj = target()
        args = [codec.unpack(msg) for codec in method.args]
        if method.check is not None:
            method.check(obj, *args)
        if method.serve is not None:
            result = method.serve(obj, *args, **{name: msg.get(name) for name in method.extra})
        else:
            result = getattr(obj, method.name)(*args)
        return method.reply, method.returns.pack(result)

    return handle


class Proxy:
    """The calling side of a declared contract, over a bus `Client` to `endpoint`.

    `timeout` bounds lifecycle and planning calls; `cycle_timeout` (default:
    `timeout`) the calls a control cycle makes (declared `cycle`: encode,
    memory acknowledgements, a Mode-1 action, braking), at most a control
    period. `requests` counts the calls made; `unanswered` the calls in a row
    that got no answer in time (a supervisor restarts a module that stops
    answering). `reconnect(endpoint)` points the proxy at a restarted server.
    """

    contract: ClassVar[Contract]
    requests: int = 0
    unanswered: int = 0

    def __init_subclass__(cls, contract: Contract | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if contract is None:
            return
        cls.contract = contract
        for method in contract.methods:
            if method.name not in vars(cls):  # written by hand in the class: that one is kept
                setattr(cls, method.name, _derived(contract, method))

    def __init__(self, endpoint: str, *, timeout: float = 1.0, cycle_timeout: float | None = None,
                 context: Any = None):
        if self.contract.cls.__init__ is not object.__init__:
            self.contract.cls.__init__(self)  # the contract's own state (a module's `active`, `params`)
        self.endpoint = endpoint
        self.timeout = timeout
        self.cycle_timeout = timeout if cycle_timeout is None else cycle_timeout
        self._context = context
        self._client = Client(endpoint, timeout=timeout, context=context)
        try:
            self._describe()
        except BaseException:
            self._client.close()
            raise

    def _describe(self) -> None:
        if self.contract.describe is not None:
            for name, value in self._invoke(self.contract.describe).items():
                setattr(self, name, value)

    def reconnect(self, endpoint: str) -> None:
        """Talk to the server at `endpoint` from now on (after a restart)."""
        old, self._client = self._client, Client(endpoint, timeout=self.timeout, context=self._context)
        self.endpoint = endpoint
        self.unanswered = 0
        old.close()

    def _fields(self, method: Method, args: tuple, extra: Mapping[str, Any]) -> dict[str, Any]:
        """The request fields of a call to `method` with `args` (and the proxy's own `extra` fields)."""
        given, declared = len(args), len(method.args)
        if not declared - method.optional <= given <= declared:
            raise TypeError(f"{self.contract.name}.{method.name} takes {declared - method.optional}"
                            f"{f' to {declared}' if method.optional else ''} arguments, got {given}")
        fields: dict[str, Any] = {}
        for codec, value in zip(method.args, args + (None,) * (declared - given)):
            fields.update(codec.pack(value))
        fields.update(extra)
        return fields

    def _invoke(self, method: Method, *args: Any, **extra: Any) -> Any:
        """Call `method` on the served object and wait for its result."""
        reply = self._call(method.kind, self._fields(method, args, extra), method.reply,
                           self.cycle_timeout if method.cycle else None)
        return method.returns.unpack(reply)

    def _call(self, kind: str, fields: Mapping[str, Any] | None, expect: str, timeout: float | None) -> Message:
        self.requests += 1
        try:
            reply = self._client.request(kind, fields, expect=expect, timeout=timeout)
        except BusTimeout:
            self.unanswered += 1
            raise
        self.unanswered = 0
        return reply

    def close(self) -> None:
        """Close the connection (the served object stays up). Safe twice."""
        close = getattr(self.contract.cls, "close", None)
        if close is not None:
            close(self)  # the contract's own state (a module is inactive once closed)
        self._client.close()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _derived(contract: Contract, method: Method) -> Callable[..., Any]:
    """The proxy method of a declared method: its arguments sent, its result returned."""
    own = getattr(contract.cls, method.name, None)

    def call(self: Proxy, *args: Any) -> Any:
        if method.mirror:
            own(self, *args)
        return self._invoke(method, *args)

    call.__name__ = call.__qualname__ = method.name
    call.__doc__ = f"{method.doc}\n\nAnswered by the served {contract.name} (declared in amiagent.contracts.declared)."
    if own is not None:
        call.__signature__ = inspect.signature(own)  # type: ignore[attr-defined]
    return call
