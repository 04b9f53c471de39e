"""The `amiagent` command line, one module per command.

    amiagent run [hydra overrides...]     run an agent in a world (runtime=ray by default), write a run directory
    amiagent eval [hydra overrides...]    seeded episodes summarised: table, eval.csv, eval.json, eval.png
    amiagent collect [hydra overrides...] reward-free episodes (camera frames, states, actions) into an HDF5 file
    amiagent train [hydra overrides...]   a JEPA world model from collected episodes, checkpoints that resume
    amiagent distill [hydra overrides...] a Mode-1 policy distilled from the Mode-2 agent's plans
    amiagent swap [AGENT] MODULE k=v...   hot-swap one module's plugin in a running agent
    amiagent agents                       list running agents and what their modules run
    amiagent plugins                      list installed plugins and whether they load
    amiagent check KIND NAME              run the contract checker on one plugin
    amiagent bench {bus,plan,loop,hierarchy,jepa} [--json P]   benchmarks against a reference timed in the same run

A command's config is composed by Hydra and checked against its typed schema (`amiagent.cli.schema`) before
anything starts; an unknown key is refused with the closest valid dotted path.
"""

from __future__ import annotations

import argparse
import logging
import sys

from amiagent.cli import bench, check, collect, control, distill, plugins, run, train
from amiagent.cli import eval as evaluate
from amiagent.cli.common import console
from amiagent.cli.launch import compose as _compose  # noqa: F401  (tests compose configs as run does)
from amiagent.errors import AmiagentError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(prog="amiagent", description="Objective-driven embodied agents.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (run, evaluate, collect, train, distill):
        command.add_parser(sub)
    control.add_parsers(sub)
    for command in (plugins, check, bench):
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `amiagent` console script: 0 on success, 2 on a refused config or command, 130 on Ctrl-C."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except AmiagentError as exc:
        console().print(f"[red]error:[/] {exc}")
        return 2
    except KeyboardInterrupt:
        console().print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
