"""The `amiagent` command line.

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
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amiagent.errors import AmiagentError, PluginError

BENCHES = ("bus", "plan", "loop", "hierarchy", "jepa")

log = logging.getLogger("amiagent")


def _console():
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped or logged: rich would assume 80 columns and clip the tables
        console = Console(width=120)
    return console


def _compose(overrides: list[str]) -> tuple[dict, Any]:
    """The composed config of a run or eval, and its checked top-level settings."""
    from amiagent.build import RunConfig
    from amiagent.config import load_config

    cfg = load_config(overrides)
    agent = cfg["agent"]
    if agent.get("goal_from") == "observation" or _sees_frames(agent):
        # an agent that sees frames, or is given its goal as one, needs the world's camera
        params = cfg["world"].setdefault("params", {})
        if "camera" in params:
            params["camera"] = True
    run = RunConfig.from_config(cfg)
    if cfg["runtime"]["name"] not in ("local", "ray"):
        raise AmiagentError(f"unknown runtime {cfg['runtime']['name']!r}; choose runtime=ray (the default) or "
                            "runtime=local")
    return cfg, run


def _sees_frames(agent: dict) -> bool:
    """Whether the perception of level 0, or of any hierarchy level, reads camera frames."""
    from amiagent import registry

    levels = agent.get("hierarchy")
    levels = list(levels.values()) if isinstance(levels, dict) else []  # a malformed one: the build says why
    specs = [agent.get("perception")] + [level.get("perception") for level in levels if isinstance(level, dict)]
    for name in {spec["name"] for spec in specs if isinstance(spec, dict) and isinstance(spec.get("name"), str)}:
        try:
            if getattr(registry.load_class("perception", name), "needs_images", False):
                return True
        except PluginError:  # the build names the unknown plugin, with the installed ones
            continue
    return False


@contextlib.contextmanager
def _running(cfg: dict, run: Any, console) -> Iterator[tuple[Any, Any, Any]]:
    """The agent, world and telemetry publisher (or None) of a composed config; all closed on the way out."""
    import dataclasses

    import torch

    from amiagent.build import build_world

    torch.set_num_threads(int(cfg["runtime"].get("torch_threads") or torch.get_num_threads()))
    agent_name = cfg["agent"]["name"]
    if cfg["runtime"].get("control"):
        from amiagent.control import running_agents

        if agent_name in running_agents():  # before anything starts
            raise AmiagentError(f"an agent named {agent_name!r} is already running (see `amiagent agents`); "
                                "give this one another name (agent.name=...) or runtime.control=null")
    world = build_world(cfg["world"])
    session = control = agent = telemetry = None
    try:
        agent, session = _start_agent(cfg, console)
        if run.lockstep:
            agent.loop = dataclasses.replace(agent.loop, lockstep=True)
        if cfg["runtime"].get("control"):
            control = _control(agent, agent_name, cfg["runtime"])
        if cfg["runtime"].get("telemetry"):
            from amiagent.telemetry import TelemetryPublisher

            telemetry = TelemetryPublisher(cfg["runtime"]["telemetry"], agent_name)
            console.print(f"telemetry on {telemetry.endpoint}, topic {telemetry.topic}")
        yield agent, world, telemetry
    finally:
        for closing in (control, agent, world, telemetry, session):
            if closing is not None:
                closing.close()


def _recoveries(agent, console) -> None:
    for r in getattr(agent, "recoveries", []):
        console.print(f"group {r.group} ({', '.join(r.modules)}) restarted (restart {r.restart}): "
                      f"modules back after {r.seconds:.2f} s")


def _progress(console, enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                    console=console, disable=not enabled, transient=False)


def cmd_run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from amiagent.config import to_yaml
    from amiagent.report import new_run_dir, write_run
    from amiagent.runtime.local import run_episode

    cfg, run = _compose(args.overrides)
    if args.cfg:
        print(to_yaml(cfg))
        return 0
    console = _console()
    agent_name, world_name, runtime = cfg["agent"]["name"], cfg["world"]["name"], cfg["runtime"]["name"]
    episodes, layouts = [], []
    with _running(cfg, run, console) as (agent, world, telemetry), _progress(console, run.progress) as progress:
        for i in range(run.episodes):
            seed = run.seed + i
            max_steps = getattr(world.params, "max_steps", None)
            bar = progress.add_task(f"episode {i + 1}/{run.episodes} seed {seed}", total=max_steps, status="")

            def on_cycle(c, bar=bar):
                progress.update(bar, advance=1, status=f"{c.source:8s} {c.plan_ms:5.1f} ms/plan")
                if telemetry is not None:
                    telemetry(c)

            episode = run_episode(agent, world, seed, realtime=run.realtime, on_cycle=on_cycle)
            progress.update(bar, total=episode.steps, completed=episode.steps, status=episode.status)
            episodes.append(episode)
            layouts.append(world.layout())
            if agent.failure is not None:  # a module is gone for good: no more episodes
                console.print(f"[red]stopping after episode {i + 1}:[/] {agent.failure}")
                break

    run_dir = Path(run.run_dir) if run.run_dir else new_run_dir(Path("runs"), f"{agent_name}-{world_name}")
    summary = write_run(run_dir, to_yaml(cfg), episodes, layouts, plot=run.plot)
    table = Table(title=f"{agent_name} in {world_name} ({runtime} runtime)")
    for col in ("seed", "status", "steps", "violations", "dist m", "cycle ms p50/p99", "missed", "filtered"):
        table.add_column(col, justify="right", no_wrap=True)
    for e in episodes:
        s = e.summary()
        table.add_row(
            str(e.seed), e.status, str(e.steps), str(e.total_violations), f"{e.final_distance:.3f}",
            f"{s['cycle_ms_p50']:.1f} / {s['cycle_ms_p99']:.1f}" if e.steps else "-",
            str(e.missed_deadlines), str(e.filtered),
        )
    console.print(table)
    agg = summary["aggregate"]
    console.print(
        f"success {agg['success_rate']:.0%} over {agg['episodes']} episode(s); ground-truth violations "
        f"{agg['total_violations']}; infeasible goals reported {agg['infeasible_goals_reported']}; "
        f"missed deadlines {agg['missed_deadlines']}"
    )
    _recoveries(agent, console)
    console.print(f"run directory: {run_dir}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rich.table import Table

    from amiagent.config import to_yaml
    from amiagent.evaluate import write_eval
    from amiagent.report import new_run_dir
    from amiagent.runtime.local import run_episode

    # lockstep by default: every plan is waited for, so results depend on the seeds, not the machine's load
    cfg, run = _compose(["lockstep=true", "progress=true", *args.overrides])
    if args.cfg:
        print(to_yaml(cfg))
        return 0
    console = _console()
    agent_name, world_name, runtime = cfg["agent"]["name"], cfg["world"]["name"], cfg["runtime"]["name"]
    label = f"{agent_name} in {world_name}"
    episodes = []
    with _running(cfg, run, console) as (agent, world, telemetry), _progress(console, run.progress) as progress:
        bar = progress.add_task(f"eval {label}", total=run.episodes, status="")
        for i in range(run.episodes):
            episode = run_episode(agent, world, run.seed + i, realtime=run.realtime,
                                  on_cycle=telemetry)
            episodes.append(episode)
            wins = sum(e.success for e in episodes)
            bad = sum(e.total_violations > 0 for e in episodes)
            progress.update(bar, advance=1, status=f"success {wins}/{len(episodes)}, with violations {bad}")
            if agent.failure is not None:
                console.print(f"[red]stopping after episode {i + 1}:[/] {agent.failure}")
                break

    run_dir = Path(run.run_dir) if run.run_dir else new_run_dir(Path("runs"), f"eval-{agent_name}-{world_name}")
    json_path = Path(args.json) if args.json else None
    result = write_eval(run_dir, to_yaml(cfg), episodes, label, json_path=json_path, plot=run.plot)
    agg = result["aggregate"]
    table = Table(title=f"eval: {label} ({runtime} runtime, seeds {run.seed}..{run.seed + len(episodes) - 1})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    low, high = agg["success_rate_95ci"]
    rows = [
        ("episodes", str(agg["episodes"])),
        ("success", f"{agg['successes']}/{agg['episodes']} = {agg['success_rate']:.1%} (95% CI {low:.1%}-{high:.1%})"),
        ("outcomes", ", ".join(f"{k} {v}" for k, v in sorted(agg["statuses"].items()))),
        ("episodes with violations", str(agg["episodes_with_violations"])),
        ("ground-truth violations (substeps)", str(agg["total_violations"])),
        ("goals infeasible / infeasible reports", f"{agg['goals_infeasible']} / {agg['infeasible_reports']}"),
        ("steps (mean)", f"{agg['steps_mean']:.1f}"),
        ("planning ms per cycle p50 / p99", f"{agg['plan_ms_p50']} / {agg['plan_ms_p99']}"),
        ("cycle ms p50 / p99", f"{agg['cycle_ms_p50']} / {agg['cycle_ms_p99']}"),
        ("world-model steps per cycle (mean)", str(agg["model_steps_per_cycle"])),
        ("missed deadlines", str(agg["missed_deadlines"])),
        ("upper-level re-plans", str(agg["replans"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    failed = [e for e in episodes if not e.success or e.total_violations]
    if failed:
        shown = ", ".join(f"{e.seed} ({e.status}{f', {e.total_violations} violations' if e.total_violations else ''})"
                          for e in failed[:20])
        console.print(f"not reached or violating: {shown}{' ...' if len(failed) > 20 else ''}")
    _recoveries(agent, console)
    console.print(f"run directory: {run_dir} (eval.csv, eval.json{', eval.png' if run.plot else ''})")
    return 0


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile, so files are closed on the way out as with Ctrl-C."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def cmd_collect(args: argparse.Namespace) -> int:
    from amiagent import registry
    from amiagent.build import build_world
    from amiagent.collect import CollectConfig, collect, make_policy, supports_collect
    from amiagent.config import load_config, to_yaml

    cfg = load_config(args.overrides, config_name="collect")
    config = CollectConfig.from_config(cfg)
    world_name = cfg["world"]["name"]
    if not supports_collect(registry.load_class("world", world_name)):
        fit = [n for n in registry.names("world") if supports_collect(registry.load_class("world", n))]
        raise AmiagentError(f"collect needs a point-robot world with a camera; {world_name!r} has none. "
                            f"Choose world={' | '.join(fit)}")
    cfg["world"]["params"]["camera"] = True  # the frames are the point of the data, whatever the overrides say
    if args.cfg:
        print(to_yaml(cfg))
        return 0
    policy = make_policy(cfg["policy"])
    console = _console()
    label = f"collect {policy.name} in {world_name}"
    world = build_world(cfg["world"])
    try:
        with _progress(console, config.progress) as progress, _sigterm_interrupts():
            bars = []  # the bar shows once the file is open and checked

            def on_episode(done: int, total: int) -> None:
                if not bars:
                    bars.append(progress.add_task(label, total=total, status=""))
                progress.update(bars[0], completed=done, status=f"-> {config.data}")

            result = collect(world, policy, config, on_episode=on_episode)
    finally:
        world.close()
    size = world.params.image_size
    rate = result.frames / result.seconds if result.seconds > 0 else 0.0
    console.print(f"{result.path}: {result.episodes} complete episode(s), {result.new} new: {result.frames} "
                  f"frames of {size}x{size} in {result.seconds:.1f} s ({rate:.0f} frames/s); "
                  f"file {result.bytes / 2**20:.1f} MiB")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from amiagent.config import check_keys, load_config, to_yaml
    from amiagent.learning.jepa import JEPAConfig
    from amiagent.learning.train import TrainConfig, train

    cfg = load_config(args.overrides, config_name="train")
    if args.cfg:
        print(to_yaml(cfg))
        return 0
    spec = check_keys("world_model", cfg["world_model"], {"name", "model", "train"})
    if spec.get("name") != "jepa":
        raise AmiagentError(f"amiagent train knows world_model=jepa only, got {spec.get('name')!r}")
    model_cfg = JEPAConfig.from_dict(dict(spec.get("model") or {}))
    train_keys = set(TrainConfig.__dataclass_fields__)
    train_cfg = TrainConfig(**check_keys("world_model.train", spec.get("train"), train_keys))
    if cfg.get("data") in (None, "", "???"):
        raise AmiagentError("amiagent train needs data=PATH: an HDF5 file from `amiagent collect`")
    if not Path(cfg["data"]).exists():
        raise AmiagentError(f"no data file at {cfg['data']}: collect one with `amiagent collect world=... "
                            f"data={cfg['data']}`")
    console = _console()
    out = Path(cfg["out"])
    with _progress(console, bool(cfg.get("progress", True))) as progress:
        bar = progress.add_task(f"train jepa on {cfg['data']}", total=train_cfg.steps, status="")

        def on_step(step: int, steps: int, parts: dict) -> None:
            progress.update(bar, completed=step, status=f"loss {parts['loss']:.4f}")

        result = train(cfg["data"], out, model_cfg, train_cfg, progress=on_step, resume=bool(cfg.get("resume", True)))
    final = result.final
    console.print(f"{result.checkpoint}: {result.steps} steps in {result.seconds / 60:.1f} min; held-out "
                  f"prediction {final['val_prediction']:.4g} (copy-last baseline {final['val_copy_baseline']:.4g}), "
                  f"effective rank {final['val_effective_rank']:.1f} of {model_cfg.latent_dim}, "
                  f"min per-dim std {final['val_std_min']:.3f}, probe position RMSE "
                  f"{final['val_probe_position_rmse']:.3f} m")
    console.print(f"metrics: {out.with_suffix('.metrics.csv')}, plot: {out.with_suffix('.png')}")
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    import torch

    from amiagent.config import load_config, to_yaml
    from amiagent.learning.distill import DistillConfig, distill

    cfg = load_config(args.overrides, config_name="distill")
    if args.cfg:
        print(to_yaml(cfg))
        return 0
    config = DistillConfig.from_mapping({**(cfg.get("distill") or {}), "episodes": cfg["episodes"], "seed": cfg["seed"]})
    torch.set_num_threads(int(cfg.get("torch_threads") or torch.get_num_threads()))
    console = _console()
    label = f"{cfg['agent']['name']} in {cfg['world']['name']}"
    with _progress(console, bool(cfg.get("progress", True))) as progress:
        record = progress.add_task(f"record Mode-2 plans: {label}", total=config.total_episodes, status="")
        fit = progress.add_task("fit Mode-1 policy", total=config.epochs * (config.dagger_rounds + 1), status="")

        def on_episode(done: int, total: int, status: str) -> None:
            driver = "Mode 2 drives" if done <= config.episodes else "Mode 1 drives (DAgger)"
            progress.update(record, completed=done, status=f"{driver}: {status}")

        def on_epoch(epoch: int, epochs: int, row: dict) -> None:
            progress.update(fit, completed=epoch, status=f"round {row['round']}: loss {row['train_loss']:.4f}, "
                                                        f"validation {row['val_loss']:.4f}")

        result = distill(cfg["agent"], cfg["world"], config, cfg["out"], on_episode=on_episode, on_epoch=on_epoch)
    best = result.history[result.kept_epoch - 1]
    last_seed = config.seed + config.total_episodes - 1
    console.print(f"{result.checkpoint}: {result.samples} plans from {result.train_episodes} training + "
                  f"{result.val_episodes} validation episode(s) (seeds {config.seed}..{last_seed}), "
                  f"recorded in {result.collect_s:.1f} s, fitted in {result.train_s:.1f} s; kept epoch "
                  f"{result.kept_epoch}: train loss {best['train_loss']:.4g}, validation {best['val_loss']:.4g}")
    for r in result.rounds:
        console.print(f"  round {r['round']}: {r['driver']} drove {r['episodes']} episode(s), reached "
                      f"{r['reached']}; {r['plans']} plans recorded; validation loss after it {r['val_loss']:.4g}")
    console.print(f"metrics: {result.checkpoint.with_suffix('.metrics.csv')}, plot: {result.checkpoint.with_suffix('.png')}")
    console.print(f"Mode 1 alone: amiagent eval agent=mode1 world={cfg['world']['name']} runtime=local "
                  f"agent.checkpoint={result.checkpoint} seed=0 episodes=50")
    return 0


def _start_agent(cfg: dict, console):
    """The agent of a composed config under its runtime, and the Ray session it opened (or None)."""
    from amiagent.build import build_agent

    if cfg["runtime"]["name"] == "local":
        return build_agent(cfg["agent"]), None
    from amiagent.runtime.ray import RayAgent, RaySession

    from amiagent.runtime.ray import check_runtime_config

    rt = cfg["runtime"]
    check_runtime_config(cfg["agent"], rt)  # config errors surface before Ray starts
    build_agent(cfg["agent"]).close()
    where = "an embedded Ray instance" if rt.get("address") is None else f"Ray at {rt['address']}"
    with console.status(f"starting {where} and the agent's modules..."):
        session = RaySession(rt.get("address"), namespace=rt.get("namespace") or "amiagent",
                             logs=bool(rt.get("ray_logs")))
        try:
            agent = RayAgent(cfg["agent"], rt)
        except BaseException:
            session.close()
            raise
    groups = "; ".join(f"{name} ({', '.join(g['modules'])})" for name, g in agent.placement().items())
    console.print(f"ray runtime, placement {rt.get('placement')!s}: {groups}")
    return agent, session


def _control(agent, name: str, runtime_cfg: dict):
    """The control endpoint of a running agent, for `amiagent swap` and `amiagent agents`."""
    import os

    from amiagent.control import ControlServer

    def swap(module: str, spec: dict):
        done = agent.swap_plugin(module, spec)
        return done.label, done

    def status() -> dict:
        return {"agent": name, "pid": os.getpid(), "runtime": runtime_cfg["name"], "modules": dict(agent.plugins),
                "down": sorted(agent.down), "cycles": agent.counters.cycles}

    return ControlServer(name, runtime_cfg["control"], swap=swap, status=status, runtime=runtime_cfg["name"])


def cmd_swap(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from amiagent.control import connect

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
    from amiagent.errors import RemoteError

    with connect(agent, args.endpoint) as client:
        try:
            reply = client.request("swap", {"module": module, "spec": spec})["payload"]
        except RemoteError as exc:
            raise AmiagentError(f"swap refused: {exc.remote_message}") from None
    state = "now running" if reply["applied"] else "queued for the next cycle (the agent is not cycling)"
    _console().print(f"{module}: {reply['plugin']} {state}")
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    from rich.table import Table

    from amiagent.control import connect, running_agents

    found = running_agents()
    if not found:
        _console().print("no agents running")
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
    _console().print(table)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
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
    console = _console()
    console.print(table)
    for row in failed:
        console.print(f"[red]{row['kind']}.{row['name']}[/]: {row['status'].removeprefix('error: ')}")
    return 1 if failed else 0


def _params(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs -> plugin parameters; each value is read as YAML (numbers, lists, true/false)."""
    import yaml

    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise AmiagentError(f"plugin parameters are key=value, got {pair!r}")
        try:
            params[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise AmiagentError(f"parameter {key}: cannot read {value!r}: {exc}") from None
    return params


def cmd_check(args: argparse.Namespace) -> int:
    from amiagent import checks, registry

    plugin = registry.create(args.kind, args.name, _params(args.params), where=f"{args.kind}.{args.name}")
    try:
        checks.check(args.kind, plugin)
    finally:
        plugin.close()
    _console().print(f"[green]{args.kind}.{args.name} passes the {args.kind} contract checks[/]")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"amiagent.bench.{args.name}")
    return int(module.main(args.rest) or 0)


def _config_command(sub: Any, name: str, func: Any, summary: str, description: str, example: str) -> None:
    """A subcommand configured by Hydra overrides, with --cfg to print the composed config."""
    cmd = sub.add_parser(name, help=summary, description=description)
    cmd.add_argument("overrides", nargs="*", help=f"Hydra overrides, e.g. {example}")
    cmd.add_argument("--cfg", action="store_true", help="print the composed config and exit")
    cmd.set_defaults(func=func)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amiagent", description="Objective-driven embodied agents.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an agent in a world (Hydra overrides: agent=... world=... seed=...)")
    run.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. world=two_rooms episodes=3")
    run.add_argument("--cfg", action="store_true", help="print the composed config and exit")
    run.set_defaults(func=cmd_run)

    ev = sub.add_parser("eval", help="evaluate an agent over seeded episodes (agent=... world=... episodes=N seed=S)",
                        description="Runs `episodes` seeded episodes (seeds seed, seed+1, ...) and reports success, "
                                    "steps, ground-truth violations, infeasible-goal reports and planning time per "
                                    "episode and overall. Plans are waited for (lockstep=true) unless overridden, "
                                    "so under runtime=local the results depend on the seeds only.")
    ev.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. agent=hierarchical world=maze episodes=50")
    ev.add_argument("--json", metavar="PATH", help="also write the eval JSON here")
    ev.add_argument("--cfg", action="store_true", help="print the composed config and exit")
    ev.set_defaults(func=cmd_eval)

    _config_command(sub, "collect", cmd_collect,
                    "reward-free episodes into an HDF5 file (world=... policy=random|noisy_expert episodes=N data=PATH)",
                    "Runs `episodes` seeded episodes (seeds seed, seed+1, ...) of `steps` control steps with a scripted "
                    "policy and the world's top-down camera on, and writes frames, states and actions to `data` "
                    "(HDF5, see amiagent.collect). Running it again resumes the file; overwrite=true starts it afresh.",
                    "world=two_rooms policy=noisy_expert episodes=200 policy.params.noise=0.5")

    _config_command(sub, "train", cmd_train,
                    "train a JEPA world model on collected episodes (world_model=jepa data=PATH out=PATH)",
                    "Trains the encoder, predictor and probe of world_model=jepa on the episodes in `data` (from "
                    "amiagent collect) into the checkpoint `out`, with loss curves and collapse diagnostics in "
                    "<out>.metrics.csv and <out>.png. Running it again on the same `out` resumes up to "
                    "world_model.train.steps; resume=false starts afresh.",
                    "data=data/open_field.h5 out=models/open_field.pt world_model.model.regularizer=sigreg "
                    "world_model.train.max_minutes=10")

    _config_command(sub, "distill", cmd_distill,
                    "distil a Mode-1 policy from the Mode-2 agent's plans (agent=... world=... episodes=N out=PATH)",
                    "Runs `episodes` seeded Mode-2 episodes (seeds seed, seed+1, ...; runtime local, lockstep), "
                    "records each cycle's state, goal and plan, and fits a policy network to the plans by behaviour "
                    "cloning (validation split by episode) into `out`, with the loss per epoch in <out>.metrics.csv "
                    "and <out>.png. Act with it alone through agent=mode1, or as the Mode-2 actor's warm start "
                    "(agent.actor.params.proposal).",
                    "world=open_field episodes=40 out=models/mode1-open_field.pt distill.epochs=300")

    swap = sub.add_parser("swap", help="hot-swap one module's plugin in a running agent",
                          usage="amiagent swap [AGENT] MODULE [name=PLUGIN] [params.KEY=VALUE ...] [--endpoint E]",
                          description="Replace one module of a running agent, e.g. "
                                      "`amiagent swap navigator world_model params.substeps=12` (merged onto what the "
                                      "module runs now) or `... actor name=mpc params.optimizer=mppi`. The new module "
                                      "is built and checked first; it takes over at a cycle boundary.")
    swap.add_argument("words", nargs="+", metavar="WORD",
                      help="agent name (optional when one runs), module, and the new plugin's spec")
    swap.add_argument("--endpoint", help="the agent's control endpoint (default: looked up by name)")
    swap.set_defaults(func=cmd_swap)

    agents = sub.add_parser("agents", help="list running agents and what their modules run")
    agents.set_defaults(func=cmd_agents)

    plugins = sub.add_parser("plugins", help="list installed plugins and whether they import")
    plugins.set_defaults(func=cmd_plugins)

    check = sub.add_parser("check", help="run the contract checker on an installed plugin")
    check.add_argument("kind")
    check.add_argument("name")
    check.add_argument("params", nargs="*", help="plugin parameters as key=value, e.g. checkpoint=models/m.pt")
    check.set_defaults(func=cmd_check)

    bench = sub.add_parser("bench", help="benchmarks: " + ", ".join(BENCHES))
    bench.add_argument("name", choices=BENCHES)
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own options (--json PATH ...)")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except AmiagentError as exc:
        _console().print(f"[red]error:[/] {exc}")
        return 2
    except KeyboardInterrupt:
        _console().print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
