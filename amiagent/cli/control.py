"""`amiagent swap` and `amiagent agents`: talking to running agents through their control endpoints."""

from __future__ import annotations

import argparse
from typing import Any

from amiagent.cli import common
from amiagent.errors import AmiagentError


def add_parsers(sub: Any) -> None:
    """Register `amiagent swap` and `amiagent agents`."""
    swap_cmd = sub.add_parser("swap", help="hot-swap one module's plugin in a running agent",
                              usage="amiagent swap [AGENT] MODULE [name=PLUGIN] [params.KEY=VALUE ...] [--endpoint E]",
                              description="Replace one module of a running agent, e.g. "
                                          "`amiagent swap navigator world_model params.substeps=12` (merged onto what "
                                          "the module runs now) or `... actor name=mpc params.optimizer=mppi`. The new "
                                          "module is built and checked first; it takes over at a cycle boundary.")
    swap_cmd.add_argument("words", nargs="+", metavar="WORD",
                          help="agent name (optional when one runs), module, and the new plugin's spec")
    swap_cmd.add_argument("--endpoint", help="the agent's control endpoint (default: looked up by name)")
    swap_cmd.set_defaults(func=swap)

    agents_cmd = sub.add_parser("agents", help="list running agents and what their modules run")
    agents_cmd.set_defaults(func=agents)


def swap(args: argparse.Namespace) -> int:
    """Ask a running agent to replace one module's plugin."""
    from omegaconf import OmegaConf

    from amiagent.bus.control import connect
    from amiagent.errors import RemoteError

    words = list(args.words)
    pairs = [w for w in words if "=" in w]
    names = [w for w in words if "=" not in w]
    if len(names) not in (1, 2):
        raise AmiagentError("usage: amiagent swap [AGENT] MODULE [name=PLUGIN] [params.KEY=VALUE ...]")
    agent, module = (None, names[0]) if len(names) == 1 else names
    try:
        spec = OmegaConf.to_container(OmegaConf.from_dotlist(pairs), resolve=True)
    except Exception as exc:  # omegaconf's own grammar errors
        raise AmiagentError(f"cannot read the plugin spec {pairs}: {exc}") from exc
    if not spec:
        raise AmiagentError("say what changes: params.KEY=VALUE (merged onto what the module runs now), "
                            "or name=PLUGIN for another plugin")
    with connect(agent, args.endpoint) as client:
        try:
            reply = client.request("swap", {"module": module, "spec": spec})["payload"]
        except RemoteError as exc:
            raise AmiagentError(f"swap refused: {exc.remote_message}") from None
    state = "now running" if reply["applied"] else "queued for the next cycle (the agent is not cycling)"
    common.console().print(f"{module}: {reply['plugin']} {state}")
    return 0


def agents(args: argparse.Namespace) -> int:
    """List the running agents, what their modules run and which are down."""
    from rich.table import Table

    from amiagent.bus.control import connect, running_agents

    found = running_agents()
    if not found:
        common.console().print("no agents running")
        return 0
    table = Table(title="running agents")
    for col in ("agent", "pid", "runtime", "cycles", "modules", "down"):
        table.add_column(col)
    for name, entry in found.items():
        try:
            with connect(None, entry["endpoint"], timeout=2.0) as client:
                s = client.request("agent_status")["payload"]
        except AmiagentError as exc:
            table.add_row(name, str(entry["pid"]), entry["runtime"], "?", f"unreachable: {exc}", "")
            continue
        mods = "\n".join(f"{k}: {v}" for k, v in s["modules"].items())
        table.add_row(name, str(s["pid"]), s["runtime"], str(s["cycles"]), mods, ", ".join(s["down"]) or "-")
    common.console().print(table)
    return 0
