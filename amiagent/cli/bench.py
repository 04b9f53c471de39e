"""`amiagent bench NAME [options]`: a benchmark of amiagent.bench, with its own argparse options."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

BENCHES = ("bus", "plan", "loop", "hierarchy", "jepa")


def add_parser(sub: Any) -> None:
    """Register `amiagent bench`."""
    cmd = sub.add_parser("bench", help="benchmarks: " + ", ".join(BENCHES))
    cmd.add_argument("name", choices=BENCHES)
    cmd.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own options (--json PATH ...)")
    cmd.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Hand the remaining arguments to the benchmark's own `main`."""
    module = importlib.import_module(f"amiagent.bench.{args.name}")
    return int(module.main(args.rest) or 0)
