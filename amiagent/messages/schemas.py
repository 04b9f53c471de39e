"""Message schemas: each kind's fields, and the table of kinds amiagent speaks.

The kinds registered here are the values every part shares (observation, task,
settings, telemetry, ok, error). The requests and replies of the contracts that
cross processes (modules, the body protocol, the control endpoint) are
registered by their one declaration, `amiagent.contracts.declared`, when
`amiagent.contracts` is imported.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field


from amiagent.errors import ConfigError, MessageError


from amiagent.messages.wire import _RESERVED
from amiagent.messages.specs import (
    Array,
    Data,
    Int,
    ListOf,
    MapOf,
    Number,
    Record,
    Spec,
    Str,
)


@dataclass(frozen=True)
class Schema:
    """The fields of one message kind: name -> Spec."""

    kind: str
    fields: Mapping[str, Spec] = field(default_factory=dict)
    doc: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", types.MappingProxyType(dict(self.fields)))
        object.__setattr__(self, "_items", tuple(self.fields.items()))  # iterated on every message
        reserved = _RESERVED & set(self.fields)
        if reserved:
            raise ConfigError(f"schema {self.kind!r}: field names {sorted(reserved)} are reserved for the envelope")


_SCHEMAS: dict[str, Schema] = {}


def register_schema(schema: Schema, *, replace: bool = False) -> Schema:
    """Add a message kind. Registering a different schema under a taken kind needs `replace=True`."""
    old = _SCHEMAS.get(schema.kind)
    if old is not None and old != schema and not replace:
        raise ConfigError(f"message kind {schema.kind!r} is already registered with another schema")
    _SCHEMAS[schema.kind] = schema
    return schema


def schema_for(kind: str) -> Schema:
    """The schema of `kind`; MessageError if unknown."""
    try:
        return _SCHEMAS[kind]
    except KeyError:
        raise MessageError(f"unknown message kind {kind!r}; known: {sorted(_SCHEMAS)}") from None


def kinds() -> tuple[str, ...]:
    """Registered message kinds, sorted."""
    return tuple(sorted(_SCHEMAS))


_FLOATS = frozenset({"float32", "float64"})
_DATA_MAP = MapOf(MapOf(Data()))  # name -> parameters, as Task.constraints / Settings.guardrails
_GOAL = ListOf(Number(), min_len=1, max_len=256)

_STATE = Array(_FLOATS, (None,), finite=True)
_IMAGES = MapOf(Array({"uint8"}, (None, None, 3)), max_items=32, optional=True)

for _schema in (
    Schema("observation", {
        "t": Number(),
        "state": _STATE,
        "images": _IMAGES,
    }, "A body's Observation: t (s), state (S,), images name -> (h, w, 3) uint8."),
    Schema("telemetry", {
        "cycle": Int(min=0),
        "t": Number(),
        "values": MapOf(Number(), max_items=1024),
        "events": ListOf(Str(max_len=4096), max_len=64, optional=True),
    }, "Figures of one agent cycle, and what changed before it (module down or back, hot swap)."),
    Schema("task", {
        "name": Str(),
        "goal": _GOAL,
        "constraints": _DATA_MAP,
        "goal_tolerance": Number(),
        "max_steps": Int(),
        "goal_observation": Record({"t": Number(), "state": _STATE, "images": _IMAGES}, optional=True),
    }, "A contracts.Task; `goal_observation`, when the goal is also given as an observation: its t, state, images."),
    Schema("settings", {
        "goal": _GOAL,
        "horizon": Int(min=1),
        "weights": MapOf(Number(), max_items=1024),
        "guardrails": _DATA_MAP,
        "mode": Str(max_len=64),
        "version": Int(),
    }, "A contracts.Settings."),
    Schema("plan", {
        "actions": Array({"float32"}, (None, None), finite=True),
        "states": Array({"float32"}, (None, None), finite=True),
        "total": Number(),
        "violation": Array(_FLOATS, (None,), finite=True),
    }, "An actor's plan: actions (H, A), states (H, D), total cost, violation (H,)."),
    Schema("ok", {"payload": Data(arrays=True, optional=True)}, "Success, with optional plain data."),
    Schema("error", {
        "kind": Str(max_len=256),
        "message": Str(max_len=16384),
    }, "A failed request: error type name and text."),
):
    register_schema(_schema)

