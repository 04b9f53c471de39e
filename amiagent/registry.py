"""Plugin registry: plugins are found through the entry-point group `amiagent.plugins`.

An entry point is named `kind.name` and points at a class implementing the
contract of `kind` (`world_model.mlp = "pkg.module:Class"`). Nothing is imported
until asked for: `import amiagent` never loads a plugin.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from amiagent.contracts import CONTRACTS, Module
from amiagent.errors import ConfigError, PluginError

GROUP = "amiagent.plugins"


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin: where it points and the distribution that ships it."""

    kind: str
    name: str
    target: str
    dist: str
    conflict: str | None = None
    """Set when another distribution declares the same kind.name."""

    @property
    def key(self) -> str:
        return f"{self.kind}.{self.name}"


# Plugins registered at run time (tests, notebooks) beside the entry points.
_local: dict[tuple[str, str], type] = {}


def register(kind: str, name: str, cls: type) -> None:
    """Register `cls` as plugin `kind.name` for this process, without packaging it."""
    _check_kind(kind)
    contract = CONTRACTS[kind]
    if not (isinstance(cls, type) and issubclass(cls, contract)):
        raise PluginError(f"cannot register {cls!r} as {kind}.{name}: it is not a subclass of {contract.__name__}")
    _local[(kind, name)] = cls


def unregister(kind: str, name: str) -> None:
    """Drop a plugin registered with `register`."""
    _local.pop((kind, name), None)


def discover() -> dict[tuple[str, str], PluginInfo]:
    """Every plugin declared by an installed distribution (nothing imported).

    Two distributions declaring the same `kind.name` are a conflict, never a
    silent replacement (a guardrail swapped for another must not go unnoticed):
    the entry records both, and loading it fails.
    """
    found: dict[tuple[str, str], PluginInfo] = {}
    dist_names: dict[int, str] = {}  # a distribution's name reads its metadata: once per distribution
    for ep in entry_points(group=GROUP):
        kind, _, name = ep.name.partition(".")
        dist = "?"
        if ep.dist is not None:
            dist = dist_names.get(id(ep.dist)) or dist_names.setdefault(id(ep.dist), ep.dist.name)
        previous = found.get((kind, name))
        if previous is not None and (previous.dist, previous.target) != (dist, ep.value):
            conflict = f"{previous.dist} ({previous.target}) and {dist} ({ep.value})"
            found[(kind, name)] = PluginInfo(kind, name, previous.target, f"{previous.dist}, {dist}", conflict)
            continue
        found[(kind, name)] = PluginInfo(kind, name, ep.value, dist)
    for (kind, name), cls in _local.items():
        found[(kind, name)] = PluginInfo(kind, name, f"{cls.__module__}:{cls.__qualname__}", "(registered at run time)")
    return found


def names(kind: str) -> list[str]:
    """Installed plugin names of `kind`, sorted."""
    return sorted(name for (k, name) in discover() if k == kind)


def load_class(kind: str, name: str) -> type:
    """Import and return the class of plugin `kind.name`, checked against its contract."""
    _check_kind(kind)
    if (kind, name) in _local:
        return _local[(kind, name)]
    info = discover().get((kind, name))
    if info is None:
        installed = names(kind)
        close = difflib.get_close_matches(name, installed, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise PluginError(
            f"unknown {kind} plugin {name!r}.{hint} Installed {kind} plugins: {', '.join(installed) or 'none'}."
        )
    if info.conflict:
        raise PluginError(
            f"{kind} plugin {name!r} is declared by two distributions: {info.conflict}; "
            "uninstall one, or rename its entry point"
        )
    module_name, _, attr = info.target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # any import-time failure of third-party code is reported, not raised raw
        raise PluginError(
            f"{kind} plugin {name!r} ({info.target}, from {info.dist}) failed to import: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    contract = CONTRACTS[kind]
    if not (isinstance(obj, type) and issubclass(obj, contract)):
        raise PluginError(f"{kind} plugin {name!r} ({info.target}) is not a subclass of {contract.__name__}")
    return obj


def build_params(cls: type, params: Mapping[str, Any] | None, where: str = "") -> Any:
    """Build `cls.Params` from a mapping; unknown or ill-typed values fail with the valid list."""
    params_cls = getattr(cls, "Params", None)
    where = where or cls.__name__
    if params_cls is None or not dataclasses.is_dataclass(params_cls):
        raise PluginError(f"{where}: plugin class has no dataclass `Params`")
    params = dict(params or {})
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    hints = typing.get_type_hints(params_cls)
    valid = ", ".join(f"{n}: {_type_name(hints[n])}" for n in fields) or "none"
    unknown = sorted(set(params) - set(fields))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PluginError(f"{where}: unknown parameter(s) {', '.join(unknown)}{hint}. Valid parameters: {valid}")
    values = {}
    for key, value in params.items():
        try:
            values[key] = _coerce(value, hints[key])
        except (TypeError, ValueError) as exc:
            raise PluginError(
                f"{where}: parameter {key!r} must be {_type_name(hints[key])}, got {value!r} ({exc}). "
                f"Valid parameters: {valid}"
            ) from None
    try:
        return params_cls(**values)
    except PluginError:
        raise
    except (TypeError, ValueError, ConfigError) as exc:
        raise PluginError(f"{where}: invalid parameters: {exc}. Valid parameters: {valid}") from exc


def create(kind: str, name: str, params: Mapping[str, Any] | None = None, where: str | None = None) -> Module:
    """Instantiate plugin `kind.name` with validated parameters; `where` names it in errors (a config path)."""
    cls = load_class(kind, name)
    return cls(build_params(cls, params, where=where or f"{kind}.{name}"))


def table() -> list[dict[str, str]]:
    """One row per installed plugin, importing each to report whether it loads."""
    rows = []
    for (kind, name), info in sorted(discover().items()):
        try:
            load_class(kind, name)
            status = "ok"
        except PluginError as exc:
            status = f"error: {exc}"
        rows.append({"kind": kind, "name": name, "target": info.target, "dist": info.dist, "status": status})
    return rows


def _check_kind(kind: str) -> None:
    if kind not in CONTRACTS:
        close = difflib.get_close_matches(kind, list(CONTRACTS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise PluginError(f"unknown plugin kind {kind!r}.{hint} Kinds: {', '.join(sorted(CONTRACTS))}")


def _type_name(tp: Any) -> str:
    if typing.get_args(tp):  # generic aliases such as tuple[int, ...] keep their arguments
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any) -> Any:
    """Check `value` against a Params annotation, converting lists to tuples and ints to floats."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError("; ".join(errors))
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"expected one of {args}")
        return value
    if origin in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise TypeError("expected a list")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = tuple(_coerce(v, args[0]) for v in value)
        elif origin is tuple and args:
            if len(value) != len(args):
                raise ValueError(f"expected {len(args)} items")
            items = tuple(_coerce(v, a) for v, a in zip(value, args))
        else:
            inner = args[0] if args else Any
            items = tuple(_coerce(v, inner) for v in value)
        return items if origin is tuple else list(items)
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise TypeError("expected a mapping")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError("expected true or false")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("expected a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("expected an integer")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise TypeError("expected a string")
        return value
    return value
