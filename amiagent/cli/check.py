"""`amiagent check KIND NAME [key=value ...]`: the contract checker run on one installed plugin."""

from __future__ import annotations

import argparse
from typing import Any

from amiagent.cli import common
from amiagent.errors import AmiagentError


def add_parser(sub: Any) -> None:
    """Register `amiagent check`."""
    cmd = sub.add_parser("check", help="run the contract checker on an installed plugin")
    cmd.add_argument("kind")
    cmd.add_argument("name")
    cmd.add_argument("params", nargs="*", help="plugin parameters as key=value, e.g. checkpoint=models/m.pt")
    cmd.set_defaults(func=main)


def params(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs -> plugin parameters; each value is read as YAML (numbers, lists, true/false)."""
    import yaml

    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise AmiagentError(f"plugin parameters are key=value, got {pair!r}")
        try:
            found[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise AmiagentError(f"parameter {key}: cannot read {value!r}: {exc}") from None
    return found


def main(args: argparse.Namespace) -> int:
    """Build the plugin with the given parameters and run its kind's checker on it."""
    from amiagent import registry
    from amiagent.contracts import checks

    plugin = registry.create(args.kind, args.name, params(args.params), where=f"{args.kind}.{args.name}")
    try:
        checks.check(args.kind, plugin)
    finally:
        plugin.close()
    common.console().print(f"[green]{args.kind}.{args.name} passes the {args.kind} contract checks[/]")
    return 0
