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

The package: `wire` (arrays and limits), `specs` (field specs), `schemas` (the
kinds and their fields), `envelope` (encode / decode), `convert` (to and from
the contract dataclasses). Import everything from `amiagent.messages`.
"""

from amiagent.messages.convert import (
    observation_from_message,
    observation_to_fields,
    settings_from_message,
    settings_to_fields,
    task_from_message,
    task_to_fields,
)
from amiagent.messages.envelope import Message, check_value, decode, encode
from amiagent.messages.schemas import Schema, kinds, register_schema, schema_for
from amiagent.messages.specs import Array, Bool, Data, Int, ListOf, MapOf, Number, Record, Spec, Str
from amiagent.messages.wire import (
    DEFAULT_MAX_ELEMENTS,
    MAX_CONTAINER_LEN,
    MAX_FRAME_BYTES,
    MAX_NDIM,
    MAX_STR_LEN,
    NDARRAY_EXT,
    VERSION,
    WIRE_DTYPES,
)

__all__ = [
    "DEFAULT_MAX_ELEMENTS", "MAX_CONTAINER_LEN", "MAX_FRAME_BYTES", "MAX_NDIM", "MAX_STR_LEN", "NDARRAY_EXT",
    "VERSION", "WIRE_DTYPES", "Array", "Bool", "Data", "Int", "ListOf", "MapOf", "Message", "Number", "Record",
    "Schema", "Spec", "Str", "check_value", "decode", "encode", "kinds", "observation_from_message",
    "observation_to_fields", "register_schema", "schema_for", "settings_from_message", "settings_to_fields",
    "task_from_message", "task_to_fields",
]

