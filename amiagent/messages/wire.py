"""Numpy arrays on the wire: the msgpack extension type, its header, size limits."""

from __future__ import annotations

import math
import reprlib
import struct
import threading
from typing import Any

import msgpack
import numpy as np

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


class _Invalid(Exception):
    """Raised by specs with a path-relative reason; turned into a MessageError naming the field."""

    def __init__(self, reason: str, path: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.path = path


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

