"""Loading launch configs with Hydra's compose API, and checking them against typed schemas.

The configs ship inside the package (`amiagent.agents`); overrides use Hydra's
syntax (`agent=navigator world.params.n_zones=3`). What leaves this module is
plain containers, never OmegaConf objects, so it can cross process boundaries.

`typed(Schema, mapping)` builds a settings dataclass from such a mapping, once, at
launch: unknown keys are refused with the closest valid dotted path, values are
checked against the field annotations, and ranges by the dataclass's own
`__post_init__`. Every error names the dotted config path.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

from amiagent.errors import ConfigError

CONFIG_MODULE = "amiagent.agents"

T = TypeVar("T")


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _paths(cfg: Mapping, where: str = "") -> Iterator[str]:
    """Every dotted key path of a nested mapping, sections and leaves alike."""
    for key, value in cfg.items():
        path = _join(where, key)
        yield path
        if isinstance(value, Mapping):
            yield from _paths(value, path)


def suggestions(path: str, siblings: Iterable[Any] = (), root: Mapping | None = None) -> list[str]:
    """The likeliest meant dotted paths for an unknown `path`, best first (at most three): a key of the
    same name in another section of `root`, then close matches among `siblings` (the valid keys beside
    it), then close matches among every key name of `root`."""
    parent, _, key = path.rpartition(".")
    elsewhere: list[str] = list(_paths(root)) if root is not None else []
    found = [p for p in elsewhere if p.rpartition(".")[2] == key]
    found += [_join(parent, k) for k in difflib.get_close_matches(key, sorted(map(str, siblings)), n=3)]
    if not found:
        by_name: dict[str, list[str]] = {}
        for p in elsewhere:
            by_name.setdefault(p.rpartition(".")[2], []).append(p)
        for name in difflib.get_close_matches(key, list(by_name), n=3):
            found += by_name[name]
    return [p for p in dict.fromkeys(found) if p != path][:3]


def unknown_key(path: str, siblings: Iterable[Any] = (), root: Mapping | None = None) -> str:
    """"unknown key 'episode', did you mean 'episodes'?" (or the valid keys beside it when nothing is close)."""
    siblings = sorted(map(str, siblings))
    close = suggestions(path, siblings, root)
    if close:
        return f"unknown key {path!r}, did you mean {' or '.join(map(repr, close))}?"
    return f"unknown key {path!r} (valid keys here: {', '.join(siblings) or 'none'})"


def check_keys(where: str, value: Any, allowed: set[str]) -> dict:
    """`value` as a dict (None: empty) whose keys are all in `allowed`; ConfigError naming `where` otherwise,
    with the closest valid key of each unknown one."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        hints = {key: suggestions(_join(where, key), allowed) for key in unknown}
        meant = [" or ".join(map(repr, close)) + (f" for {key!r}" if len(unknown) > 1 else "")
                 for key, close in hints.items() if close]
        hint = f"did you mean {', '.join(meant)}? " if meant else ""
        raise ConfigError(f"{where}: unknown key(s) {unknown}; {hint}valid keys: {sorted(allowed)}")
    return dict(value)


def check_number(where: str, value: Any, minimum: float = 0.0) -> float:
    """`value` as a float, if it is a finite number >= `minimum` (never a bool); ConfigError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{where} must be a finite number >= {minimum:g}, got {value!r}")
    return float(value)


def typed(cls: type[T], data: Any, where: str = "", *, sections: Iterable[str] = (),
          root: Mapping | None = None) -> T:
    """The settings dataclass `cls` built from the plain mapping `data` (None: all defaults) found at the
    dotted path `where` ("" for a whole config).

    Keys that are not fields of `cls` are refused with a did-you-mean naming the dotted path, searched
    among the valid keys beside it and every key of `root` (default: `data`); `sections` are keys allowed
    beside the fields whose mappings other builders check (e.g. `agent`, `world`): they must be mappings
    and are not passed to `cls`. Each value is checked against its field's annotation (nested dataclasses
    are built the same way; lists become tuples where a tuple is declared); ranges are `cls.__post_init__`'s.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'the config'} must be a mapping, got {data!r}")
    if root is None:  # suggestions search `data` itself, under its own path
        root = data
        for part in reversed(where.split(".") if where else []):
            root = {part: root}
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    allowed = set(fields) | set(sections)
    unknown = [key for key in data if key not in allowed]
    if unknown:
        raise ConfigError("; ".join(unknown_key(_join(where, key), allowed, root) for key in unknown))
    for name in set(sections) & set(data):
        if data[name] is not None and not isinstance(data[name], Mapping):
            raise ConfigError(f"{_join(where, name)} must be a mapping (a config section), got {data[name]!r}")
    hints = typing.get_type_hints(cls)
    values = {key: _check(value, hints[key], _join(where, key), root) for key, value in data.items() if key in fields}
    for name, f in fields.items():
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(where, name)} is required (set {_join(where, name)}=...)")
    return cls(**values)


def describe(tp: Any) -> str:
    """An annotation in the words of an error message: `int | None` -> "an integer or null"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if dataclasses.is_dataclass(tp) or tp in (dict, Mapping) or origin in (dict, Mapping):
        return "a mapping"
    if tp in (list, tuple) or origin in (list, tuple):
        inner = [a for a in args if a is not Ellipsis]
        return "a list" + (f" of {describe(inner[0]).removeprefix('a ').removeprefix('an ')}s" if len(inner) == 1 else "")
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _check(value: Any, tp: Any, path: str, root: Mapping) -> Any:
    """`value` if it fits the annotation `tp` (converted where harmless: lists to tuples, ints to floats)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return typed(tp, value, path, root=root)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _check(value, arg, path, root)
            except ConfigError:
                continue
    elif origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
    elif tp in (list, tuple) or origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            inner = args[0] if args and (origin is list or args[-1] is Ellipsis) else None
            items = [v if inner is None else _check(v, inner, f"{path}[{i}]", root) for i, v in enumerate(value)]
            return tuple(items) if tuple in (tp, origin) else items
    elif tp in (dict, Mapping) or origin in (dict, Mapping):
        if isinstance(value, Mapping):
            return dict(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp in (bool, str, type(None)):
        if type(value) is tp or (tp is type(None) and value is None):
            return value
    else:  # an annotation this checker does not know: the dataclass's __post_init__ judges the value
        return value
    raise ConfigError(f"{path} must be {describe(tp)}, got {value!r}")


_resolvers_registered = False


def _register_resolvers() -> None:
    global _resolvers_registered
    if _resolvers_registered:
        return
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("div", lambda a, b: float(a) / float(b), replace=True)
    OmegaConf.register_new_resolver("mul", lambda a, b: float(a) * float(b), replace=True)
    # e.g. physics substeps per control step: 240 Hz * 0.1 s = 24
    OmegaConf.register_new_resolver("round_mul", lambda a, b: int(round(float(a) * float(b))), replace=True)
    _resolvers_registered = True


NOT_OVERRIDABLE = "Could not override '"
"""How Hydra starts the error for an override of a key the config lacks; it then advises `+key=value`, which
adds a key nothing reads (and, for a misspelt or misplaced key, silently does nothing)."""


def load_config(overrides: Sequence[str] = (), config_name: str = "config") -> dict[str, Any]:
    """Compose the launch config with `overrides`; returns plain, resolved containers.

    An override of a key the config lacks is refused with the closest existing dotted path, found by
    composing the config without it (Hydra's own advice, to add it with `+`, would add a key nothing reads).
    """
    overrides = list(overrides)
    unknown: list[str] = []
    while True:
        try:
            cfg = _compose(overrides, config_name)
            break
        except ConfigError as exc:
            line = _unknown_override(exc.__cause__)
            if line is None or line not in overrides:
                raise
            overrides.remove(line)
            unknown.append(line.partition("=")[0])
    if unknown:
        messages = []
        for key in unknown:
            parent = key.rpartition(".")[0]
            beside = _select(cfg, parent)
            messages.append(unknown_key(key, beside if isinstance(beside, Mapping) else (), cfg))
        raise ConfigError("; ".join(messages))
    return cfg


def _unknown_override(exc: BaseException | None) -> str | None:
    """The override line of Hydra's "Could not override 'key'. To append to your config use +line", if `exc`
    is that error."""
    text = str(exc or "")
    marker = "\nTo append to your config use +"
    if not text.startswith(NOT_OVERRIDABLE) or marker not in text:
        return None
    return text.partition(marker)[2].strip()


def _select(cfg: Mapping, path: str) -> Any:
    for part in path.split(".") if path else ():
        if not isinstance(cfg, Mapping):
            return None
        cfg = cfg.get(part)
    return cfg


def _compose(overrides: list[str], config_name: str) -> dict[str, Any]:
    import yaml
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    _register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
        return OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException, yaml.YAMLError) as exc:
        raise ConfigError(f"bad configuration: {exc}") from exc
    finally:
        GlobalHydra.instance().clear()


def to_yaml(cfg: dict[str, Any]) -> str:
    """The config as YAML text (for the run directory)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(cfg))
