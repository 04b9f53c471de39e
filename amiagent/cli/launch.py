"""Launching an agent in a world for `run` and `eval`: the config checked up front, then the world, the
agent under its runtime, its control endpoint and telemetry, all closed on the way out."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from amiagent.cli.schema import LocalRuntime, RunConfig, runtime_config
from amiagent.config import check_keys, load_config, typed
from amiagent.errors import AmiagentError, PluginError


def compose(overrides: list[str]) -> tuple[dict, RunConfig, LocalRuntime]:
    """The composed config of a run or eval, its typed top-level settings and its typed runtime.

    Everything that can be checked without building a module is checked here, before any process or Ray
    cluster starts: the top-level keys and values, the `runtime` section, the agent's keys and cycle timing.
    """
    cfg = load_config(overrides)
    run = RunConfig.from_config(cfg)
    runtime = runtime_config(cfg["runtime"], root=cfg)
    check_agent(cfg)
    agent = cfg["agent"]
    if agent.get("goal_from") == "observation" or _sees_frames(agent):
        # an agent that sees frames, or is given its goal as one, needs the world's camera
        params = cfg["world"].setdefault("params", {})
        if "camera" in params:
            params["camera"] = True
    if runtime.name == "ray":
        from amiagent.runtime.ray import check_runtime_config

        check_runtime_config(cfg["agent"], cfg["runtime"])  # placement and restart policy
    return cfg, run, runtime


def check_agent(cfg: Mapping[str, Any]) -> None:
    """The agent section's keys and its cycle timing (`agent.loop`), checked before anything starts; its
    plugins are checked as they are built."""
    from amiagent.agent import LoopConfig
    from amiagent.build import AGENT_KEYS

    agent = check_keys("agent", cfg["agent"], AGENT_KEYS)
    typed(LoopConfig, agent.get("loop"), "agent.loop", root=cfg)


def _sees_frames(agent: dict) -> bool:
    """Whether the perception of level 0, or of any hierarchy level, reads camera frames."""
    from amiagent import registry

    levels = agent.get("hierarchy")
    levels = list(levels.values()) if isinstance(levels, dict) else []  # a malformed one: the build says why
    specs = [agent.get("perception")] + [level.get("perception") for level in levels if isinstance(level, dict)]
    for name in {spec["name"] for spec in specs if isinstance(spec, dict) and isinstance(spec.get("name"), str)}:
        try:
            if registry.load_class("perception", name).needs_images:
                return True
        except PluginError:  # the build names the unknown plugin, with the installed ones
            continue
    return False


@contextlib.contextmanager
def running(cfg: dict, run: RunConfig, runtime: LocalRuntime, out) -> Iterator[tuple[Any, Any, Any]]:
    """The agent, world and telemetry publisher (or None) of a composed config; all closed on the way out."""
    import dataclasses

    import torch

    from amiagent.build import build_world

    torch.set_num_threads(runtime.torch_threads or torch.get_num_threads())
    agent_name = cfg["agent"]["name"]
    if runtime.control:
        from amiagent.bus.control import running_agents

        if agent_name in running_agents():  # before anything starts
            raise AmiagentError(f"an agent named {agent_name!r} is already running (see `amiagent agents`); "
                                "give this one another name (agent.name=...) or runtime.control=null")
    world = build_world(cfg["world"])
    session = control = agent = telemetry = None
    try:
        agent, session = _start_agent(cfg, out)
        if run.lockstep:
            agent.loop = dataclasses.replace(agent.loop, lockstep=True)
        if runtime.control:
            control = _control(agent, agent_name, runtime)
        if runtime.telemetry:
            from amiagent.bus.telemetry import TelemetryPublisher

            telemetry = TelemetryPublisher(runtime.telemetry, agent_name)
            out.print(f"telemetry on {telemetry.endpoint}, topic {telemetry.topic}")
        yield agent, world, telemetry
    finally:
        for closing in (control, agent, world, telemetry, session):
            if closing is not None:
                closing.close()


def _start_agent(cfg: dict, out):
    """The agent of a composed config under its runtime, and the Ray session it opened (or None)."""
    from amiagent.build import build_agent, check_agent_config

    rt = cfg["runtime"]
    if rt["name"] == "local":
        return build_agent(cfg["agent"]), None
    from amiagent.runtime.ray import RaySession, ray_agent

    check_agent_config(cfg["agent"])  # every module's spec, before Ray starts (the agent is built once, below)
    where = "an embedded Ray instance" if rt.get("address") is None else f"Ray at {rt['address']}"
    with out.status(f"starting {where} and the agent's modules..."):
        session = RaySession(rt.get("address"), namespace=rt.get("namespace") or "amiagent",
                             logs=bool(rt.get("ray_logs")))
        try:
            agent = ray_agent(cfg["agent"], rt)
        except BaseException:
            session.close()
            raise
    groups = "; ".join(f"{name} ({', '.join(g['modules'])})" for name, g in agent.runtime.placement().items())
    out.print(f"ray runtime, placement {rt.get('placement')!s}: {groups}")
    return agent, session


def _control(agent, name: str, runtime: LocalRuntime):
    """The control endpoint of a running agent, for `amiagent swap` and `amiagent agents`."""
    import os

    from amiagent.bus.control import ControlServer

    def swap(module: str, spec: dict):
        done = agent.swap_plugin(module, spec)
        return done.label, done

    def status() -> dict:
        return {"agent": name, "pid": os.getpid(), "runtime": runtime.name, "modules": dict(agent.plugins),
                "down": sorted(agent.down), "cycles": agent.counters.cycles}

    return ControlServer(name, runtime.control, swap=swap, status=status, runtime=runtime.name)


def report_recoveries(agent, out) -> None:
    """One line per restart of a module group during the run."""
    for r in agent.runtime.recoveries:
        out.print(f"group {r.group} ({', '.join(r.modules)}) restarted (restart {r.restart}): "
                  f"modules back after {r.seconds:.2f} s")

