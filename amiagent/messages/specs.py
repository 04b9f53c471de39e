"""Field specs: what one field of a message may hold, checked on send and on receipt."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from amiagent.errors import ConfigError


from amiagent.messages.wire import (
    _Invalid,
    DEFAULT_MAX_ELEMENTS,
    WIRE_DTYPES,
    _DTYPE_NAMES,
    _WIRE_BY_ID,
    _INT64_MIN,
    _UINT64_MAX,
    _wire_str,
    _WireArray,
    _to_ext,
    _describe,
)


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
class Record(Spec):
    """A nested map with fixed fields, name -> Spec, checked like a message body (optional fields may be absent)."""

    fields: Mapping[str, Spec]

    def check(self, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise self._fail(value)
        extra = sorted(str(k) for k in value if k not in self.fields)
        if extra:
            raise _Invalid(f"unexpected field(s) {extra}; expected only {sorted(self.fields)}")
        out = {}
        for name, spec in self.fields.items():
            item = value.get(name)
            if item is None:
                if not spec.optional:
                    raise _Invalid(f"missing field (expected {spec.expected()})", f".{name}")
                continue
            try:
                out[name] = spec.check(item)
            except _Invalid as e:
                raise _Invalid(e.reason, f".{name}{e.path}") from None
        return out

    def expected(self) -> str:
        return "a map of " + ", ".join(f"{name}: {spec.expected()}" for name, spec in self.fields.items())


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
    """Plain nested data: None, bool, numbers, strings, lists, str-keyed maps.

    `arrays`: also allow wire arrays. `max_depth`: nesting bound. `finite`:
    refuse NaN and +-inf (a trained model's metrics, say, may hold NaN).
    """

    arrays: bool = False
    max_depth: int = 8
    finite: bool = True

    def check(self, value: Any) -> Any:
        return self._walk(value, self.max_depth)

    def _walk(self, value: Any, depth: int) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if _is_int(value) or isinstance(value, (float, np.floating)):
            return (_NUMBER if self.finite else _ANY_NUMBER).check(value)
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
_ANY_NUMBER = Number(finite=False)
_ISFINITE, _ALL = np.isfinite, np.logical_and.reduce  # skips ndarray.all's Python wrapper

