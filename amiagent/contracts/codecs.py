"""How contract values cross the wire: the message fields each one fills, and the conversions both ways.

A `Codec` is one value's wire form. A method's request is the fields of its
arguments' codecs, its reply the fields of its return codec
(`amiagent.contracts.declared`), so both ends convert a value the same way.
Tensors travel as float32 arrays; received arrays are copied into tensors
torch may own (decoded arrays are read-only views of the frame).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from amiagent.contracts.values import CostReport, MemoryRecord, Observation, Plan
from amiagent.messages import (
    Array,
    Bool,
    Data,
    Int,
    ListOf,
    MapOf,
    Message,
    Number,
    Record,
    Spec,
    Str,
    check_value,
    observation_to_fields,
    schema_for,
    settings_from_message,
    settings_to_fields,
    task_from_message,
    task_to_fields,
)

F32 = frozenset({"float32"})
FLOATS = frozenset({"float32", "float64"})
MAX_ELEMENTS = 1 << 22
"""Elements per tensor on the wire: 4 M floats, 16 MiB."""


@dataclass(frozen=True)
class Codec:
    """One value's wire form: the message `fields` it fills (name -> Spec), `pack(value) -> fields`
    and `unpack(message) -> value`; `about` names the Python value, for documentation."""

    fields: Mapping[str, Spec]
    pack: Callable[[Any], dict[str, Any]]
    unpack: Callable[[Message], Any]
    about: str
    names: tuple[str, ...] = ()
    """For `attributes`: the attribute names."""


def to_tensor(value: np.ndarray) -> torch.Tensor:
    """A received array as a tensor torch may own (a copy: received arrays are read-only)."""
    return torch.from_numpy(np.array(value))


def to_array(t: torch.Tensor) -> np.ndarray:
    """A tensor as the float32 C-order array it is sent as."""
    return t.detach().to(torch.float32).contiguous().numpy()


def tensor(name: str, dims: int, *, finite: bool = False) -> Codec:
    """A float32 tensor of `dims` dimensions in field `name` (`finite`: NaN and inf refused)."""
    spec = Array(F32, (None,) * dims, finite=finite, max_elements=MAX_ELEMENTS)
    return Codec({name: spec}, lambda t: {name: to_array(t)}, lambda m: to_tensor(m[name]),
                 f"float32 tensor, {dims}-d")


def floats(name: str) -> Codec:
    """A (n,) numpy float64 vector (a body's action or bound); float32 is accepted on receipt."""
    spec = Array(FLOATS, (None,), finite=True, max_elements=4096)
    return Codec({name: spec}, lambda v: {name: np.asarray(v, dtype=np.float64)},
                 lambda m: np.array(m[name], dtype=np.float64), "float64 array (n,)")


def scalar(name: str, spec: Spec, convert: Callable[[Any], Any], about: str) -> Codec:
    """A plain value in field `name`: `convert` applies on both ends (int, float, bool, str, data)."""
    return Codec({name: spec}, lambda v: {name: convert(v)}, lambda m: convert(m[name]), about)


def integer(name: str, minimum: int | None = None) -> Codec:
    return scalar(name, Int(min=minimum), int, "int")


def number(name: str) -> Codec:
    return scalar(name, Number(), float, "float")


def boolean(name: str) -> Codec:
    return scalar(name, Bool(), bool, "bool")


def text(name: str, max_len: int = 4096) -> Codec:
    return scalar(name, Str(max_len=max_len), str, "str")


def data(name: str, spec: Spec) -> Codec:
    return scalar(name, spec, lambda v: v, "plain data")


def count(name: str) -> Codec:
    """A count n >= 0 (a negative one asks for none)."""
    return Codec({name: Int(min=0)}, lambda n: {name: max(int(n), 0)}, lambda m: int(m[name]), "int >= 0")


def payload(spec: Record) -> Codec:
    """A map in an `ok` reply's `payload`, checked against `spec` on both ends."""
    return Codec(dict(schema_for("ok").fields), lambda v: {"payload": check_value(spec, dict(v), "payload")},
                 lambda m: check_value(spec, m.get("payload"), "reply payload"), "dict")


def attributes(codecs: Mapping[str, Codec]) -> Codec:
    """Named attributes of an object (its dimensions, bounds, info) -> one reply; unpacks to a dict."""
    fields = {name: spec for codec in codecs.values() for name, spec in codec.fields.items()}
    return Codec(fields, lambda obj: {k: v for name, codec in codecs.items() for k, v in
                                      codec.pack(getattr(obj, name)).items()},
                 lambda m: {name: codec.unpack(m) for name, codec in codecs.items()},
                 f"attributes {', '.join(codecs)}", tuple(codecs))


NOTHING = Codec({}, lambda _: {}, lambda _: None, "None")


# --------------------------------------------------------------------------- the contracts' values


def _observation(m: Mapping[str, Any]) -> Observation:
    # copies: a perception may hand frames to torch, which wants arrays it may write
    images = m.get("images") or {}
    return Observation(t=float(m["t"]), state=np.array(m["state"]), images={k: np.array(v) for k, v in images.items()})


OBSERVATION = Codec(dict(schema_for("observation").fields), observation_to_fields, _observation, "Observation")

_OBSERVATION_RECORD = Record(dict(schema_for("observation").fields))


def _observations_fields(obs: Observation | Sequence[Observation]) -> dict[str, Any]:
    many = not isinstance(obs, Observation)
    return {"observations": [observation_to_fields(o) for o in (obs if many else [obs])], "batch": many}


def _observations(m: Message) -> Observation | list[Observation]:
    # a single observation is handed on as one, as the caller gave it
    got = [_observation(o) for o in m["observations"]]
    return got if m["batch"] else got[0]


OBSERVATIONS = Codec({"observations": ListOf(_OBSERVATION_RECORD, min_len=1, max_len=1024), "batch": Bool()},
                     _observations_fields, _observations, "Observation or a sequence of them")

TASK = Codec(dict(schema_for("task").fields), task_to_fields,
             lambda m: task_from_message(Message("task", m.fields)), "Task")
SETTINGS = Codec(dict(schema_for("settings").fields), settings_to_fields,
                 lambda m: settings_from_message(Message("settings", m.fields)), "Settings")

_REPORT_FIELDS = {
    "total": Array(F32, (None,), max_elements=MAX_ELEMENTS),
    "terms": Array(F32, (None, None), max_elements=MAX_ELEMENTS),
    "names": ListOf(Str(max_len=256), max_len=1024),
    "violation": Array(F32, (None, None), max_elements=MAX_ELEMENTS),
}


def _report_fields(report: CostReport) -> dict[str, Any]:
    return {"total": to_array(report.total), "terms": to_array(report.terms), "names": list(report.names),
            "violation": to_array(report.violation)}


def _report(m: Message) -> CostReport:
    return CostReport(to_tensor(m["total"]), to_tensor(m["terms"]), tuple(m["names"]), to_tensor(m["violation"]))


COST_REPORT = Codec(_REPORT_FIELDS, _report_fields, _report, "CostReport")


def _plan_fields(plan: Plan) -> dict[str, Any]:
    return {"actions": to_array(plan.actions), "states": to_array(plan.states), **_report_fields(plan.cost),
            "info": {k: float(v) for k, v in plan.info.items()}}


PLAN = Codec({"actions": Array(F32, (None, None), max_elements=MAX_ELEMENTS),
              "states": Array(F32, (None, None), max_elements=MAX_ELEMENTS),
              **_REPORT_FIELDS, "info": MapOf(Number(finite=False), max_items=256)},
             _plan_fields,
             lambda m: Plan(to_tensor(m["actions"]), to_tensor(m["states"]), _report(m), dict(m["info"])),
             "Plan")


def _record_fields(record: MemoryRecord) -> dict[str, Any]:
    cost = record.cost if math.isfinite(record.cost) else float("nan")
    return {"t": float(record.t), "state": to_array(record.state), "action": to_array(record.action),
            "cost": float(cost), "violation": float(record.violation)}


RECORD = Codec({"t": Number(), "state": Array(F32, (None,), max_elements=MAX_ELEMENTS),
                "action": Array(F32, (None,), max_elements=MAX_ELEMENTS),
                "cost": Number(finite=False), "violation": Number(finite=False)},
               _record_fields,
               lambda m: MemoryRecord(float(m["t"]), to_tensor(m["state"]), to_tensor(m["action"]),
                                      float(m["cost"]), float(m["violation"])),
               "MemoryRecord")


def _records_fields(records: list[MemoryRecord]) -> dict[str, Any]:
    if not records:  # no rows: (0, 0) arrays
        empty = np.zeros((0, 0), np.float32)
        return {"t": np.zeros(0), "states": empty, "actions": empty, "cost": np.zeros(0, np.float32),
                "violation": np.zeros(0, np.float32)}
    return {"t": np.array([r.t for r in records], dtype=np.float64),
            "states": np.stack([to_array(r.state) for r in records]),
            "actions": np.stack([to_array(r.action) for r in records]),
            "cost": np.array([r.cost for r in records], dtype=np.float32),
            "violation": np.array([r.violation for r in records], dtype=np.float32)}


def _records(m: Message) -> list[MemoryRecord]:
    states, actions = to_tensor(m["states"]), to_tensor(m["actions"])
    return [MemoryRecord(float(t), states[i], actions[i], float(c), float(v))
            for i, (t, c, v) in enumerate(zip(m["t"], m["cost"], m["violation"]))]


RECORDS = Codec({"t": Array(frozenset({"float64"}), (None,), max_elements=MAX_ELEMENTS),
                 "states": Array(F32, (None, None), max_elements=MAX_ELEMENTS),
                 "actions": Array(F32, (None, None), max_elements=MAX_ELEMENTS),
                 "cost": Array(F32, (None,), max_elements=MAX_ELEMENTS),
                 "violation": Array(F32, (None,), max_elements=MAX_ELEMENTS)},
                _records_fields, _records, "list[MemoryRecord], oldest first")


def _seed_fields(generator: torch.Generator | None) -> dict[str, Any]:
    # a seed drawn from the caller's generator keeps the caller's sampling reproducible
    return {} if generator is None else {"seed": int(torch.randint(0, 2**31 - 1, (1,), generator=generator))}


GENERATOR = Codec({"seed": Int(min=0, optional=True)}, _seed_fields,
                  lambda m: None if m.get("seed") is None else torch.Generator().manual_seed(m["seed"]),
                  "torch.Generator or None (sent as a seed drawn from it)")
