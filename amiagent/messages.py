"""The wire format: msgpack envelopes, described by schemas and validated on receipt.

A frame is one msgpack map `{"k": kind, "v": 1, **fields}`. Each kind has a
schema (a mapping of field name -> `Spec`); `encode` validates before packing,
so a malformed message never goes on the wire, and `decode` validates after
unpacking, so a malformed one never reaches a handler. Every failure is a
`MessageError` whose text names the message kind, the field, what was expected
and what arrived. No pickle, ever.

numpy arrays travel as msgpack extension type `NDARRAY_EXT` (= 1). Its payload:

    u8  n            length of the dtype string
    n   bytes        dtype string, one of `WIRE_DTYPES` ("<f8", "|u1", ...)
    u8  ndim         number of dimensions (<= 8)
    ndim x u32 LE    shape
    ...              raw C-order element bytes, exactly prod(shape) * itemsize

Decoded arrays are `np.frombuffer` views over the extension payload that
msgpack hands over: no copy beyond msgpack's own, and therefore READ-ONLY
(`arr.flags.writeable` is False). Copy before writing (`np.array(arr)`). The
format assumes little-endian hosts; big-endian arrays are refused on both
sides rather than silently byte-swapped.
"""

from __future__ import annotations

import math
import reprlib
import struct
import threading
import types
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np

from amiagent.errors import ConfigError, MessageError

if TYPE_CHECKING:  # contracts imports torch; the wire layer stays light
    from amiagent.contracts import Observation, Settings, Task

NDARRAY_EXT = 1
"""msgpack extension type code for numpy arrays."""

VERSION = 1
"""Protocol version carried in every envelope as `"v"`."""

MAX_FRAME_BYTES = 16 * 1024 * 1024
"""Default frame size limit (bytes) for `decode`; checked before unpacking."""

# msgpack's own limits, so a hostile frame cannot declare huge containers.
MAX_CONTAINER_LEN = 65_536
MAX_STR_LEN = 1024 * 1024
MAX_NDIM = 8
DEFAULT_MAX_ELEMENTS = 1 << 24

WIRE_DTYPES: dict[str, np.dtype] = {
    s: np.dtype(s) for s in ("|b1", "|u1", "<i4", "<i8", "<f4", "<f8")
}
"""Wire dtype string -> dtype: bool, uint8, int32, int64, float32, float64. Nothing else."""

_DTYPE_NAMES = frozenset(d.name for d in WIRE_DTYPES.values())
# Builtin dtypes are singletons and WIRE_DTYPES keeps them alive, so their ids are stable:
# an id lookup is much cheaper than building dtype.str for every array.
_WIRE_BY_ID = {id(d): s for s, d in WIRE_DTYPES.items()}


_INT64_MIN, _UINT64_MAX = -(1 << 63), (1 << 64) - 1
_RESERVED = frozenset({"k", "v"})


def _wire_str(dtype: np.dtype) -> str:
    return _WIRE_BY_ID.get(id(dtype)) or dtype.str


# --------------------------------------------------------------------------- arrays
#
# Arrays cross msgpack in two steps, each done once per array, so that a field's
# spec sees dtype, shape and size without asking numpy for them (numpy attribute
# getters are a large share of a small message's cost):
#   receiving: the ext hook parses the header (cached by its bytes) into a
#     `_WireArray`; the field's spec checks dtype/shape/size on it and only then
#     builds the ndarray view (`to_array`).
#   sending: the field's spec checks the ndarray and returns its `ExtType`
#     (`_to_ext`), so the packer needs no `default` callback.


class _BadArray:
    """An ndarray extension payload that failed to parse; reported by the field that holds it."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason


class _WireArray:
    """A received array whose header parsed: dtype, shape and element count, and its bytes."""

    __slots__ = ("dtype", "shape", "count", "data", "offset")

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...], count: int, data: bytes, offset: int):
        self.dtype, self.shape, self.count, self.data, self.offset = dtype, shape, count, data, offset

    def to_array(self) -> np.ndarray:
        """A read-only ndarray view of the data; `_Invalid` if bool bytes are not 0 or 1."""
        arr = _frombuffer(self.data, self.dtype, self.count, self.offset)  # positional: keywords parse slowly
        if len(self.shape) != 1:
            arr = arr.reshape(self.shape)
        # bool bytes other than 0/1 make numpy comparisons lie
        if self.dtype is _BOOL and self.count and int(arr.view(np.uint8).max()) > 1:
            raise _Invalid("malformed array (bool array holds bytes other than 0 and 1)")
        return arr


# Parsed array headers by their bytes. Bounded, and single dict operations are atomic
# under the GIL, so threads may share it; a lost entry only costs a re-parse.
_HEADER_CACHE: dict[bytes, tuple[np.dtype, tuple[int, ...], int, int]] = {}
_HEADER_CACHE_SIZE = 256
_BOOL = WIRE_DTYPES["|b1"]
_frombuffer = np.frombuffer


def _ext_hook(code: int, data: bytes) -> Any:
    """msgpack ext_hook: `_WireArray`s for NDARRAY_EXT; other codes are refused later by their field."""
    if code != NDARRAY_EXT:
        return msgpack.ExtType(code, data)
    n = len(data)
    if n < 2 or n < data[0] + 2:
        return _BadArray("header truncated")
    dlen = data[0]
    start = 2 + dlen + 4 * data[1 + dlen]
    if n < start:
        return _BadArray("shape truncated")
    header = data[:start]
    parsed = _HEADER_CACHE.get(header)  # the same few headers recur on a stream
    if parsed is None:
        parsed = _parse_header(header, dlen)
        if isinstance(parsed, _BadArray):
            return parsed
        if len(_HEADER_CACHE) >= _HEADER_CACHE_SIZE:
            _HEADER_CACHE.clear()
        _HEADER_CACHE[header] = parsed
    dtype, shape, count, nbytes = parsed
    if n - start != nbytes:
        return _BadArray(f"{n - start} data bytes, but {dtype.name} shape {shape} needs {nbytes}")
    return _WireArray(dtype, shape, count, data, start)


def _parse_header(header: bytes, dlen: int) -> tuple[np.dtype, tuple[int, ...], int, int] | _BadArray:
    """(dtype, shape, element count, data bytes) of an array extension header."""
    dstr = header[1 : 1 + dlen].decode("ascii", "replace")
    dtype = WIRE_DTYPES.get(dstr)
    if dtype is None:
        return _BadArray(f"dtype {dstr!r} not allowed (allowed: {sorted(WIRE_DTYPES)})")
    ndim = header[1 + dlen]
    if ndim > MAX_NDIM:
        return _BadArray(f"{ndim} dimensions (at most {MAX_NDIM})")
    shape = struct.unpack_from(f"<{ndim}I", header, 2 + dlen)
    count = math.prod(shape)
    return dtype, shape, count, count * dtype.itemsize


_ExtType, _new_tuple = msgpack.ExtType, tuple.__new__
_PACK_HEADERS: dict[tuple[str, tuple[int, ...]], bytes] = {}


def _to_ext(arr: np.ndarray, dstr: str, shape: tuple[int, ...]) -> msgpack.ExtType:
    """The wire form of a checked array whose wire dtype string is `dstr`."""
    header = _PACK_HEADERS.get((dstr, shape))
    if header is None:
        header = struct.pack(f"<B{len(dstr)}sB{len(shape)}I", len(dstr), dstr.encode(), len(shape), *shape)
        if len(_PACK_HEADERS) >= _HEADER_CACHE_SIZE:
            _PACK_HEADERS.clear()
        _PACK_HEADERS[(dstr, shape)] = header
    # tobytes() is C order whatever the array's layout; ExtType is a namedtuple whose
    # __new__ re-checks types we know are right
    return _new_tuple(_ExtType, (NDARRAY_EXT, header + arr.tobytes()))


_local = threading.local()


def _packer() -> msgpack.Packer:
    # msgpack.packb builds a Packer per call; reuse one per thread (Packers are not thread-safe)
    packer = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = msgpack.Packer(use_bin_type=True, autoreset=True)
    return packer


def _describe(value: Any) -> str:
    if isinstance(value, (np.ndarray, _WireArray)):
        return f"{value.dtype.str} array of shape {value.shape}"
    if isinstance(value, _BadArray):
        return f"malformed array ({value.reason})"
    return f"{type(value).__name__} {_REPR.repr(value)}"


# bounded in depth and length: a hostile value must not make the error message itself fail
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 3, 40, 40, 4, 4


# --------------------------------------------------------------------------- specs


class _Invalid(Exception):
    """Raised by specs with a path-relative reason; turned into a MessageError naming the field."""

    def __init__(self, reason: str, path: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.path = path


@dataclass(frozen=True)
class Spec:
    """One field's expected value. `optional`: the field may be absent (or None when sending)."""

    optional: bool = field(default=False, kw_only=True)

    def check(self, value: Any) -> Any:
        """Return `value` normalised, or raise `_Invalid`.

        Sending, values become plain wire types (an ndarray becomes its ExtType);
        receiving, a `_WireArray` becomes its read-only ndarray.
        """
        raise NotImplementedError

    def expected(self) -> str:
        """What this spec accepts, for error messages."""
        raise NotImplementedError

    def _fail(self, value: Any, why: str = "") -> _Invalid:
        return _Invalid(f"expected {self.expected()}, got {_describe(value)}{why}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Number(Spec):
    """An int or float (never bool). `finite`: refuse NaN and +-inf."""

    finite: bool = True

    def check(self, value: Any) -> Any:
        if type(value) is float and (not self.finite or math.isfinite(value)):
            return value  # fast path
        if _is_int(value):
            value = int(value)
            if not _INT64_MIN <= value <= _UINT64_MAX:
                raise self._fail(value, " (out of 64-bit range)")
            return value
        if isinstance(value, (float, np.floating)):
            value = float(value)
            if self.finite and not math.isfinite(value):
                raise self._fail(value, " (non-finite)")
            return value
        raise self._fail(value)

    def expected(self) -> str:
        return "a finite number" if self.finite else "a number"


@dataclass(frozen=True)
class Int(Spec):
    """An integer (never bool, never float), within [`min`, `max`] when given."""

    min: int | None = None
    max: int | None = None

    def check(self, value: Any) -> Any:
        if type(value) is not int:
            if not _is_int(value):
                raise self._fail(value)
            value = int(value)
        lo = _INT64_MIN if self.min is None else self.min
        hi = _UINT64_MAX if self.max is None else self.max
        if not lo <= value <= hi:
            raise self._fail(value, " (out of range)")
        return value

    def expected(self) -> str:
        if self.min is None and self.max is None:
            return "an int"
        return f"an int in [{self.min}, {self.max}]"


@dataclass(frozen=True)
class Str(Spec):
    """A unicode string of at most `max_len` characters."""

    max_len: int = 4096

    def check(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise self._fail(value)
        if len(value) > self.max_len:
            raise _Invalid(f"expected a string of at most {self.max_len} characters, got {len(value)}")
        return value

    def expected(self) -> str:
        return "a string"


@dataclass(frozen=True)
class Bool(Spec):
    """True or False."""

    def check(self, value: Any) -> Any:
        if not isinstance(value, (bool, np.bool_)):
            raise self._fail(value)
        return bool(value)

    def expected(self) -> str:
        return "a bool"


@dataclass(frozen=True)
class Array(Spec):
    """A numpy array.

    `dtypes`: allowed dtype names (subset of bool, uint8, int32, int64, float32,
    float64). `shape`: pattern, one entry per dimension, None = any length.
    `finite`: refuse NaN / inf (float dtypes). `max_elements`: size bound.
    """

    dtypes: frozenset[str]
    shape: tuple[int | None, ...]
    finite: bool = False
    max_elements: int = DEFAULT_MAX_ELEMENTS

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtypes", frozenset(self.dtypes))
        object.__setattr__(self, "shape", tuple(self.shape))
        unknown = self.dtypes - _DTYPE_NAMES
        if unknown:
            raise ConfigError(f"Array dtypes {sorted(unknown)} are not wire dtypes {sorted(_DTYPE_NAMES)}")
        # match on wire dtype strings (see _wire_str): dtype.name is slow to build
        wire = frozenset(s for s, d in WIRE_DTYPES.items() if d.name in self.dtypes)
        object.__setattr__(self, "_wire", wire)
        object.__setattr__(self, "_fixed", tuple((i, n) for i, n in enumerate(self.shape) if n is not None))

    def check(self, value: Any) -> Any:
        """A received `_WireArray` -> its ndarray; an ndarray to send -> its wire `ExtType`."""
        received = isinstance(value, _WireArray)
        if received:
            dtype, shape, size = value.dtype, value.shape, value.count
        elif isinstance(value, np.ndarray):
            dtype, shape, size = value.dtype, value.shape, value.size
        else:
            raise self._fail(value)
        dstr = _WIRE_BY_ID.get(id(dtype)) or dtype.str  # _wire_str, inlined: hot path
        if dstr not in self._wire:
            raise _Invalid(f"expected dtype {'|'.join(sorted(self.dtypes))} (little-endian), got {dtype.str}")
        if len(shape) != len(self.shape):
            raise _Invalid(f"expected shape {self._pattern()}, got {shape}")
        for i, want in self._fixed:
            if shape[i] != want:
                raise _Invalid(f"expected shape {self._pattern()}, got {shape}")
        if size > self.max_elements:
            raise _Invalid(f"expected at most {self.max_elements} elements, got {size}")
        arr = value.to_array() if received else value
        if self.finite and dtype.kind == "f" and not _ALL(_ISFINITE(arr), None):
            bad = int(np.count_nonzero(~np.isfinite(arr)))
            raise _Invalid(f"expected finite values, got {bad} NaN/inf of {size}")
        return arr if received else _to_ext(arr, dstr, shape)

    def _pattern(self) -> str:
        dims = ", ".join("*" if p is None else str(p) for p in self.shape)
        return f"({dims}{',' if len(self.shape) == 1 else ''})"

    def expected(self) -> str:
        return f"{'|'.join(sorted(self.dtypes))} array of shape {self._pattern()}"


@dataclass(frozen=True)
class MapOf(Spec):
    """A map with string keys and values matching `value`; at most `max_items` entries."""

    value: Spec
    max_items: int = 256

    def check(self, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise self._fail(value)
        if len(value) > self.max_items:
            raise _Invalid(f"expected at most {self.max_items} entries, got {len(value)}")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Invalid(f"expected string keys, got {_describe(key)}")
            try:
                out[key] = self.value.check(item)
            except _Invalid as e:
                raise _Invalid(e.reason, f"[{key!r}]{e.path}") from None
        return out

    def expected(self) -> str:
        return f"a map of str -> {self.value.expected()}"


@dataclass(frozen=True)
class ListOf(Spec):
    """A list (tuples accepted when sending) of `min_len`..`max_len` items matching `item`."""

    item: Spec
    min_len: int = 0
    max_len: int = 1024

    def check(self, value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise self._fail(value)
        if not self.min_len <= len(value) <= self.max_len:
            raise _Invalid(f"expected {self.min_len}..{self.max_len} items, got {len(value)}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(self.item.check(item))
            except _Invalid as e:
                raise _Invalid(e.reason, f"[{i}]{e.path}") from None
        return out

    def expected(self) -> str:
        return f"a list of {self.item.expected()}"


@dataclass(frozen=True)
class Data(Spec):
    """Plain nested data: None, bool, finite numbers, strings, lists, str-keyed maps.

    `arrays`: also allow wire arrays. `max_depth`: nesting bound.
    """

    arrays: bool = False
    max_depth: int = 8

    def check(self, value: Any) -> Any:
        return self._walk(value, self.max_depth)

    def _walk(self, value: Any, depth: int) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if _is_int(value) or isinstance(value, (float, np.floating)):
            return _NUMBER.check(value)
        if isinstance(value, _WireArray) and self.arrays:  # received
            return value.to_array()
        if isinstance(value, np.ndarray) and self.arrays:  # to be sent
            dstr = _wire_str(value.dtype)
            if dstr not in WIRE_DTYPES:
                raise _Invalid(f"expected a wire dtype {sorted(WIRE_DTYPES)}, got {value.dtype.str}")
            return _to_ext(value, dstr, value.shape)
        if isinstance(value, (list, tuple, Mapping)):
            if depth <= 0:
                raise _Invalid(f"expected data nested at most {self.max_depth} deep")
            if isinstance(value, Mapping):
                out = {}
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise _Invalid(f"expected string keys, got {_describe(key)}")
                    try:
                        out[key] = self._walk(item, depth - 1)
                    except _Invalid as e:
                        raise _Invalid(e.reason, f"[{key!r}]{e.path}") from None
                return out
            out_list = []
            for i, item in enumerate(value):
                try:
                    out_list.append(self._walk(item, depth - 1))
                except _Invalid as e:
                    raise _Invalid(e.reason, f"[{i}]{e.path}") from None
            return out_list
        raise self._fail(value)

    def expected(self) -> str:
        return "plain data (None, bool, finite number, str, list, map)" + (" or array" if self.arrays else "")


_NUMBER = Number()
_ISFINITE, _ALL = np.isfinite, np.logical_and.reduce  # skips ndarray.all's Python wrapper


# --------------------------------------------------------------------------- schemas


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

for _schema in (
    Schema("observation", {
        "t": Number(),
        "state": Array(_FLOATS, (None,), finite=True),
        "images": MapOf(Array({"uint8"}, (None, None, 3)), max_items=32, optional=True),
    }, "A body's Observation: t (s), state (S,), images name -> (h, w, 3) uint8."),
    Schema("command", {
        "action": Array(_FLOATS, (None,), finite=True, max_elements=4096),
        "seq": Int(),
    }, "Hold `action` (A,); `seq` numbers commands from one sender."),
    Schema("stop", {}, "Brake to a standstill."),
    Schema("estop", {"reason": Str()}, "Emergency stop: refuse commands until release."),
    Schema("release", {}, "Lift an emergency stop."),
    Schema("observe", {}, "Ask a body for an observation."),
    Schema("describe", {}, "Ask a body for its body_info."),
    Schema("body_info", {
        "action_low": Array(_FLOATS, (None,), finite=True, max_elements=4096),
        "action_high": Array(_FLOATS, (None,), finite=True, max_elements=4096),
    }, "A body's action bounds, (A,) each."),
    Schema("telemetry", {
        "cycle": Int(min=0),
        "t": Number(),
        "values": MapOf(Number(), max_items=1024),
    }, "Figures of one agent cycle."),
    Schema("task", {
        "name": Str(),
        "goal": _GOAL,
        "constraints": _DATA_MAP,
        "goal_tolerance": Number(),
        "max_steps": Int(),
    }, "A contracts.Task."),
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


# --------------------------------------------------------------------------- envelope


@dataclass(frozen=True, slots=True)
class Message:
    """A validated message: its `kind` and read-only `fields` (arrays are read-only too)."""

    kind: str
    fields: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        """A field's value, or `default` when the (optional) field is absent."""
        return self.fields.get(name, default)


def _validate(schema: Schema, fields: Mapping[str, Any], sending: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in schema._items:
        value = fields.get(name, _MISSING)
        if value is _MISSING or (sending and value is None and spec.optional):
            if not spec.optional:
                raise MessageError(f"message {schema.kind!r}: missing field {name!r} (expected {spec.expected()})")
            continue
        try:
            out[name] = spec.check(value)
        except _Invalid as e:
            raise MessageError(f"message {schema.kind!r}, field '{name}{e.path}': {e.reason}") from None
    if len(fields) != len(out):
        extra = sorted(str(k) for k in fields if k not in schema.fields)
        if extra:
            raise MessageError(
                f"message {schema.kind!r}: unexpected field(s) {extra}; expected only {sorted(schema.fields)}"
            )
    return out


_MISSING = object()


def encode(kind: str, fields: Mapping[str, Any] | None = None) -> bytes:
    """Validate `fields` against `kind`'s schema and pack them into one frame.

    Optional fields given as None are left out. Raises MessageError naming the
    field on any mismatch, so nothing malformed reaches the wire.
    """
    schema = _SCHEMAS.get(kind) or schema_for(kind)  # schema_for raises the error
    body = _validate(schema, fields or {}, sending=True)
    body["k"] = kind
    body["v"] = VERSION
    try:
        return _packer().pack(body)
    except Exception as e:  # e.g. a value msgpack cannot represent; re-raised as ours
        _local.packer = None  # its buffer may hold a partial frame
        raise MessageError(f"message {kind!r}: cannot pack: {e}") from e


def decode(
    frame: bytes | bytearray | memoryview,
    expect: str | Collection[str] | None = None,
    *,
    max_bytes: int = MAX_FRAME_BYTES,
) -> Message:
    """Unpack and validate one frame; `expect` restricts the accepted kinds.

    The size is checked before unpacking, and msgpack's container limits are
    bounded, so a hostile frame cannot allocate much. Raises only MessageError,
    whatever the bytes.
    """
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise MessageError(f"expected a bytes frame, got {type(frame).__name__}")
    size = frame.nbytes if isinstance(frame, memoryview) else len(frame)
    if size > max_bytes:
        raise MessageError(f"frame of {size} bytes exceeds the limit of {max_bytes} bytes")
    try:
        if size <= MAX_CONTAINER_LEN:
            # msgpack bounds every length by the frame size by default, which for a
            # frame this small is already within our limits; passing the keywords
            # costs microseconds per message. raw=False and strict_map_key are defaults.
            obj = msgpack.unpackb(frame, ext_hook=_ext_hook)
        else:
            obj = msgpack.unpackb(
                frame,
                ext_hook=_ext_hook,
                raw=False,
                strict_map_key=True,
                timestamp=0,
                max_bin_len=max_bytes,
                max_ext_len=max_bytes,
                max_str_len=min(max_bytes, MAX_STR_LEN),
                max_array_len=MAX_CONTAINER_LEN,
                max_map_len=MAX_CONTAINER_LEN,
            )
    except Exception as e:  # msgpack raises ValueError, StackError, UnicodeDecodeError...
        raise MessageError(f"frame is not a valid msgpack message ({size} bytes): {type(e).__name__}: {e}") from e
    if not isinstance(obj, dict):
        raise MessageError(f"expected a msgpack map envelope, got {_describe(obj)}")
    kind = obj.pop("k", _MISSING)
    if kind is _MISSING:
        raise MessageError("envelope: missing field 'k' (message kind)")
    if not isinstance(kind, str):
        raise MessageError(f"envelope, field 'k': expected a kind string, got {_describe(kind)}")
    version = obj.pop("v", _MISSING)
    if version is _MISSING:
        raise MessageError(f"message {kind[:64]!r}: missing field 'v' (protocol version)")
    if type(version) is not int or version != VERSION:
        raise MessageError(
            f"message {kind[:64]!r}, field 'v': expected protocol version {VERSION}, got {_describe(version)}"
        )
    schema = _SCHEMAS.get(kind)
    if schema is None:
        raise MessageError(f"unknown message kind {kind[:64]!r}; known: {sorted(_SCHEMAS)}")
    if expect is not None:
        allowed = (expect,) if isinstance(expect, str) else expect
        if kind not in allowed:
            raise MessageError(f"field 'k': expected message kind {' or '.join(map(repr, allowed))}, got {kind!r}")
    return Message(kind, types.MappingProxyType(_validate(schema, obj, sending=False)))


# --------------------------------------------------------------------------- converters


def observation_to_fields(obs: Observation) -> dict[str, Any]:
    """Fields of an `observation` message; `state` is sent as float64."""
    fields: dict[str, Any] = {"t": float(obs.t), "state": np.ascontiguousarray(obs.state, dtype=np.float64)}
    if obs.images:
        fields["images"] = dict(obs.images)
    return fields


def observation_from_message(msg: Message) -> Observation:
    """The Observation carried by an `observation` message (arrays read-only)."""
    from amiagent.contracts import Observation

    _expect_kind(msg, "observation")
    return Observation(t=float(msg["t"]), state=msg["state"], images=dict(msg.get("images", {})))


def task_to_fields(task: Task) -> dict[str, Any]:
    """Fields of a `task` message."""
    return {
        "name": task.name,
        "goal": list(task.goal),
        "constraints": task.constraints,
        "goal_tolerance": task.goal_tolerance,
        "max_steps": task.max_steps,
    }


def task_from_message(msg: Message) -> Task:
    """The Task carried by a `task` message; MessageError if its values are invalid."""
    from amiagent.contracts import Task

    _expect_kind(msg, "task")
    return _build(Task, "task", name=msg["name"], goal=tuple(msg["goal"]), constraints=msg["constraints"],
                  goal_tolerance=msg["goal_tolerance"], max_steps=msg["max_steps"])


def settings_to_fields(settings: Settings) -> dict[str, Any]:
    """Fields of a `settings` message."""
    return {
        "goal": list(settings.goal),
        "horizon": settings.horizon,
        "weights": settings.weights,
        "guardrails": settings.guardrails,
        "mode": settings.mode,
        "version": settings.version,
    }


def settings_from_message(msg: Message) -> Settings:
    """The Settings carried by a `settings` message; MessageError if its values are invalid."""
    from amiagent.contracts import Settings

    _expect_kind(msg, "settings")
    return _build(Settings, "settings", goal=tuple(msg["goal"]), horizon=msg["horizon"], weights=msg["weights"],
                  guardrails=msg["guardrails"], mode=msg["mode"], version=msg["version"])


def _expect_kind(msg: Message, kind: str) -> None:
    if msg.kind != kind:
        raise MessageError(f"expected a {kind!r} message, got {msg.kind!r}")


def _build(cls: type, kind: str, **kwargs: Any) -> Any:
    try:
        return cls(**kwargs)
    except ConfigError as e:  # well-formed on the wire but invalid as a value
        raise MessageError(f"message {kind!r}: {e}") from e
