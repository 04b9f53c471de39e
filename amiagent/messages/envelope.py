"""The envelope: `encode` validates and packs, `decode` checks size, unpacks and validates."""

from __future__ import annotations

import types
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from amiagent.errors import MessageError


from amiagent.messages.wire import (
    VERSION,
    MAX_FRAME_BYTES,
    MAX_CONTAINER_LEN,
    MAX_STR_LEN,
    _ext_hook,
    _packer,
    _describe,
    _local,
)
from amiagent.messages.specs import Spec, _Invalid
from amiagent.messages.schemas import (
    Schema,
    schema_for,
    _SCHEMAS,
)


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


def check_value(spec: Spec, value: Any, where: str) -> Any:
    """`value` checked and normalised by `spec` (as a message field is); MessageError naming `where`."""
    try:
        return spec.check(value)
    except _Invalid as e:
        raise MessageError(f"{where}{e.path}: {e.reason}") from None


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

