"""Every contract that crosses processes, declared once: its methods, their arguments and their returns.

A `Contract` names the contract class, the methods that cross (each a
`Method`: request and reply kinds, argument and return `Codec`s, the server's
shape checks), the attributes a caller reads once at connection (dimensions,
bounds, a trained perception's info) and the methods that stay on the
caller's side, with why. From this one declaration come:

  * the wire schemas of every request and reply (registered here, at import;
    a kind declared twice with different fields is refused);
  * the client proxies (`amiagent.bus.rpc.Proxy`: every declared method not
    written by hand in a proxy class is derived);
  * the server dispatch (`amiagent.bus.rpc.dispatcher`).

`amiagent.contracts.declared.undeclared(contract)` lists the public methods of
a contract class that are neither declared nor kept local: the coverage test
asserts it is empty, so a method added to a contract cannot be missing remotely.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from amiagent.contracts import codecs as c
from amiagent.contracts.modules import (
    Actor,
    Body,
    Configurator,
    Control,
    Cost,
    Memory,
    Module,
    Perception,
    WorldModel,
)
from amiagent.errors import ConfigError, ContractError, MessageError
from amiagent.messages import Bool, Data, Int, ListOf, MapOf, Record, Schema, Str, register_schema, schema_for


@dataclass(frozen=True)
class Method:
    """One method as it crosses processes.

    `args`: a codec per positional argument (the last `optional` of them may be
    left out, as None). `kind` / `reply`: wire kinds of request and reply
    (default: the method's name; "ok" for a method returning nothing, else
    `<kind>_reply`). `extra`: fields a proxy adds itself (a sequence number),
    handed to `serve` as keywords. `cycle`: a call a control cycle makes,
    waited for at most the proxy's `cycle_timeout`. `mirror`: the proxy also
    runs the contract's own method on itself (lifecycle state). `check(target,
    *args)`: refuses arguments that do not fit the served object before it
    sees them. `serve(target, *args, **extra)`: how the server answers, where
    more than calling the method is needed.
    """

    name: str
    args: tuple[c.Codec, ...] = ()
    returns: c.Codec = c.NOTHING
    kind: str = ""
    reply: str = ""
    doc: str = ""
    optional: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    cycle: bool = False
    mirror: bool = False
    check: Callable[..., None] | None = None
    serve: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", self.kind or self.name)
        object.__setattr__(self, "reply", self.reply or ("ok" if self.returns is c.NOTHING else f"{self.kind}_reply"))
        names = [n for codec in self.args for n in codec.fields] + list(self.extra)
        if len(names) != len(set(names)):
            raise ConfigError(f"method {self.name}: its arguments share field names {names}")

    @property
    def request_fields(self) -> dict[str, Any]:
        """The request's fields: the arguments', then the extra ones."""
        return {**{n: s for codec in self.args for n, s in codec.fields.items()}, **self.extra}


@dataclass(frozen=True)
class Contract:
    """A contract as it crosses processes: `methods` answered remotely, `attributes` read once at
    connection through the `describe` request, `local` methods (name -> why they never cross)."""

    name: str
    cls: type
    noun: str
    methods: tuple[Method, ...]
    describe: Method | None = None
    local: Mapping[str, str] = field(default_factory=dict)
    by_kind: Mapping[str, Method] = field(init=False, repr=False, compare=False)
    """Request kind -> the method answering it (the describe request included)."""

    def __post_init__(self) -> None:
        table: dict[str, Method] = {}
        for method in self.methods + ((self.describe,) if self.describe else ()):
            if method.kind in table:
                raise ConfigError(f"contract {self.name}: {method.name} and {table[method.kind].name} share the "
                                  f"request kind {method.kind!r}")
            table[method.kind] = method
            _declare(method.kind, method.request_fields, f"{self.name}.{method.name}: {method.doc}")
            _declare(method.reply, method.returns.fields, f"reply to {self.name}.{method.name}: {method.returns.about}")
        object.__setattr__(self, "by_kind", table)

    @property
    def attributes(self) -> tuple[str, ...]:
        """The attributes a proxy reads at connection."""
        return self.describe.returns.names if self.describe is not None else ()

    def method(self, name: str) -> Method:
        """The declared method `name`."""
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(f"{self.name} declares no method {name!r}")


def _declare(kind: str, fields: Mapping[str, Any], doc: str) -> None:
    """Register message `kind` with `fields`, or check that the kind registered already takes them."""
    try:
        known = schema_for(kind)
    except MessageError:
        register_schema(Schema(kind, fields, doc))
        return
    drift = [n for n, spec in fields.items() if known.fields.get(n) != spec]
    drift += [n for n, spec in known.fields.items() if n not in fields and not spec.optional]
    if drift:
        raise ConfigError(f"message kind {kind!r} is declared twice with other fields {sorted(set(drift))}; "
                          "give one of the methods another kind")


def undeclared(contract: Contract) -> list[str]:
    """Public methods of the contract class that are neither declared nor kept local (should be none)."""
    names = {m.name for m in contract.methods} | set(contract.local)
    found = set()
    for klass in contract.cls.__mro__[:-1]:  # without object
        for name, value in vars(klass).items():
            public = not name.startswith("_") or name == "__len__"
            if public and inspect.isfunction(value):
                found.add(name)
    return sorted(found - names)


# --------------------------------------------------------------------------- server-side checks


def _rollout_fits(wm: WorldModel, states: Any, actions: Any) -> None:
    if states.shape[1] != wm.state_dim or actions.shape[2] != wm.action_dim or \
            states.shape[0] not in (1, actions.shape[0]):
        raise ContractError(f"rollout: states {tuple(states.shape)} and actions {tuple(actions.shape)} do not "
                            f"fit (B or 1, {wm.state_dim}) and (B, H, {wm.action_dim})")


def _brake_fits(wm: WorldModel, states: Any) -> None:
    if states.shape[1] != wm.state_dim:
        raise ContractError(f"brake: states {tuple(states.shape)} do not fit (B, {wm.state_dim})")


def _evaluate_fits(_: Cost, states: Any, actions: Any) -> None:
    if states.shape[:2] != actions.shape[:2]:
        raise ContractError(f"evaluate: states {tuple(states.shape)} and actions {tuple(actions.shape)} must "
                            "share (B, H)")


def _action_fits(body: Any, action: Any) -> None:
    if action.shape != body.action_low.shape:
        raise MessageError(f"message 'command', field 'action': expected shape {body.action_low.shape} for this "
                           f"body, got {action.shape}")


@runtime_checkable
class WritesNumbered(Protocol):
    """A memory that stores a record re-sent under the same sequence number once (a journaled memory)."""

    def write_numbered(self, record: Any, seq: int | None) -> None: ...


def _write(memory: Memory, record: Any, seq: int | None = None) -> None:
    if isinstance(memory, WritesNumbered):
        memory.write_numbered(record, seq)
    else:
        memory.write(record)


def describing(kind: str, attributes: Mapping[str, c.Codec], doc: str, reply: str = "") -> Method:
    """The request that reads `attributes` of the served object, once, at connection."""
    return Method("describe", returns=c.attributes(attributes), kind=kind, reply=reply, serve=lambda target: target,
                  doc=doc)


# --------------------------------------------------------------------------- the declarations


LIFECYCLE = (
    Method("apply", (c.SETTINGS,), kind="settings", doc="Module.apply: new settings from the configurator."),
    Method("activate", mirror=True, doc="Module.activate."),
    Method("deactivate", mirror=True, doc="Module.deactivate."),
)
"""What every module answers."""

MODULE_LOCAL = {"close": "closes the caller's connection; the served module is closed by whoever serves it"}

CONFIGURATOR = Contract("configurator", Configurator, "a configurator", LIFECYCLE + (
    Method("configure", (c.TASK,), c.SETTINGS, reply="settings", doc="Settings for a task."),
), local=MODULE_LOCAL)

PERCEPTION = Contract("perception", Perception, "a perception module", LIFECYCLE + (
    Method("encode", (c.OBSERVATIONS,), c.tensor("states", 2), reply="encoded", cycle=True,
           doc="Observation or observations -> states (B, D); a batch is one request."),
), describe=describing("perception_info", {
    "state_dim": c.integer("state_dim", 0), "needs_images": c.boolean("needs_images"),
    "info": c.data("info", Data(finite=False)),
}, "A perception's state_dim, needs_images and info (plain data: a trained one's world_params)."), local=MODULE_LOCAL)

WORLD_MODEL = Contract("world_model", WorldModel, "a world model", LIFECYCLE + (
    Method("rollout", (c.tensor("states", 2, finite=True), c.tensor("actions", 3, finite=True)),
           c.tensor("states", 3), reply="states", check=_rollout_fits,
           doc="states (B or 1, D), actions (B, H, A) -> predicted states (B, H, D)."),
    Method("brake_action", (c.tensor("states", 2, finite=True),), c.tensor("actions", 2), kind="brake",
           reply="actions", cycle=True, check=_brake_fits, doc="states (B, D) -> braking actions (B, A)."),
    Method("goal_states", (c.tensor("goal", 1, finite=True), c.number("tolerance")), c.tensor("states", 2),
           doc="goal (D,), tolerance (m) -> states (N, D) that realise the goal."),
), describe=describing("model_info", {
    "state_dim": c.integer("state_dim", 1), "action_dim": c.integer("action_dim", 1), "dt": c.number("dt"),
    "action_low": c.tensor("action_low", 1, finite=True), "action_high": c.tensor("action_high", 1, finite=True),
}, "A world model's dimensions, step (s) and action bounds."), local=MODULE_LOCAL)

COST = Contract("cost", Cost, "a cost module", LIFECYCLE + (
    Method("evaluate", (c.tensor("states", 3, finite=True), c.tensor("actions", 3, finite=True)), c.COST_REPORT,
           reply="cost_report", check=_evaluate_fits, doc="states (B, H, D), actions (B, H, A) -> CostReport."),
), local=MODULE_LOCAL)

MEMORY = Contract("memory", Memory, "a memory module", LIFECYCLE + (
    Method("write", (c.RECORD,), kind="remember", extra={"seq": Int(min=0, optional=True)}, cycle=True,
           serve=_write, doc="Store one record; `seq` numbers a writer's records, so a re-sent one is stored once "
                             "(the memory journal's frames are these messages too)."),
    Method("recent", (c.count("n"),), c.RECORDS, reply="records", doc="The last n records, oldest first."),
    Method("sample", (c.count("n"), c.GENERATOR), c.RECORDS, reply="records", optional=1,
           doc="n records drawn with replacement, from a seed drawn from the caller's generator."),
    Method("__len__", returns=c.integer("size", 0), kind="memory_size", doc="How many records are held."),
), local=MODULE_LOCAL)

ACTOR = Contract("actor", Actor, "an actor", LIFECYCLE + (
    Method("reset", doc="Forget warm-start state."),
    Method("act", (c.tensor("state", 2, finite=True),), c.PLAN, reply="plan_reply", cycle=True,
           doc="state (1, D) -> Plan."),
), local={**MODULE_LOCAL, "bind": "a served actor is bound by its host to the agent's world model and cost"})

BODY = Contract("body", Body, "a body server", (
    Method("observe", returns=c.OBSERVATION, reply="observation", doc="The body's observation."),
    Method("command", (c.floats("action"),), extra={"seq": Int()}, check=_action_fits,
           doc="Hold action (A,) until the next command; `seq` numbers commands from one sender."),
    Method("stop", doc="Brake to a standstill and hold."),
    Method("estop", (c.text("reason"),), doc="Emergency stop: commands are refused until release."),
    Method("release", doc="Lift an emergency stop."),
), describe=describing("describe", {"action_low": c.floats("action_low"), "action_high": c.floats("action_high")},
                       "A body's action bounds, (A,) each.", reply="body_info"),
    local={"close": "closes the caller's connection; the served body stays up"})

_SWAPPED = Record({"module": Str(max_len=64), "plugin": Str(), "applied": Bool()})
_STATUS = Record({"agent": Str(), "pid": Int(min=0), "runtime": Str(max_len=64),
                  "modules": MapOf(Str()), "down": ListOf(Str(max_len=64)), "cycles": Int(min=0),
                  "placement": Data(optional=True)})

CONTROL = Contract("control", Control, "the control endpoint", (
    Method("swap", (c.text("module", 64), c.data("spec", Data())), c.payload(_SWAPPED), reply="ok",
           doc="Hot-swap one module's plugin: spec {name, params}."),
    Method("status", returns=c.payload(_STATUS), kind="agent_status", reply="ok", doc="What a running agent runs."),
))

MODULES: dict[str, Contract] = {k.name: k for k in (CONFIGURATOR, PERCEPTION, WORLD_MODEL, COST, MEMORY, ACTOR)}
"""The six module contracts, by module kind."""

DECLARED: dict[str, Contract] = {**MODULES, "body": BODY, "control": CONTROL}
"""Every contract that crosses processes."""

IN_PROCESS = ("cost_term", "guardrail", "critic", "world")
"""Contracts that never cross: cost terms, guardrails and the critic live inside the cost module, a world beside
its bodies (a body crosses through the body protocol)."""


def contract_of(module: Module) -> Contract:
    """The module contract `module` implements; ConfigError for anything but the six agent modules."""
    for contract in MODULES.values():
        if isinstance(module, contract.cls):
            return contract
    raise ConfigError(f"only the six agent modules are served ({', '.join(MODULES)}), not {type(module).__name__}")
