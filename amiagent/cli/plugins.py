"""`amiagent plugins`: the installed plugins and whether each one imports."""

from __future__ import annotations

import argparse
from typing import Any

from amiagent.cli import common


def add_parser(sub: Any) -> None:
    """Register `amiagent plugins`."""
    cmd = sub.add_parser("plugins", help="list installed plugins and whether they import")
    cmd.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Print the plugin table, then why each failing plugin fails; exit 1 if any does."""
    from rich.table import Table

    from amiagent import registry

    table = Table(title="amiagent plugins")
    for col in ("kind", "name", "target", "from", "status"):
        table.add_column(col)
    rows = registry.table()
    failed = [row for row in rows if row["status"] != "ok"]
    for row in rows:
        status = "[green]ok[/]" if row["status"] == "ok" else "[red]fails to load (below)[/]"
        table.add_row(row["kind"], row["name"], row["target"], row["dist"], status)
    console = common.console()
    console.print(table)
    for row in failed:
        console.print(f"[red]{row['kind']}.{row['name']}[/]: {row['status'].removeprefix('error: ')}")
    return 1 if failed else 0
