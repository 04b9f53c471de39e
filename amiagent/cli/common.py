"""What every command shares: the console, progress bars, Ctrl-C on SIGTERM, config-driven subparsers."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from typing import Any


def console():
    """A rich console; 120 columns when piped or logged (rich would assume 80 and clip the tables)."""
    from rich.console import Console

    out = Console()
    if not out.is_terminal:
        out = Console(width=120)
    return out


def progress(out, enabled: bool):
    """Progress bars with a status field (`progress.update(bar, status=...)`); nothing shown if not `enabled`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                    console=out, disable=not enabled, transient=False)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile, so files are closed on the way out as with Ctrl-C."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def config_command(sub: Any, name: str, func: Callable[[argparse.Namespace], int], summary: str, example: str,
                   description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand configured by Hydra overrides, with --cfg to print the composed config."""
    cmd = sub.add_parser(name, help=summary, description=description)
    cmd.add_argument("overrides", nargs="*", help=f"Hydra overrides, e.g. {example}")
    cmd.add_argument("--cfg", action="store_true", help="print the composed config and exit")
    cmd.set_defaults(func=func)
    return cmd
