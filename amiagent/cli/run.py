"""`amiagent run`: an agent in a world for a few episodes (runtime=ray by default), into a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from amiagent.cli import common


def add_parser(sub: Any) -> None:
    """Register `amiagent run`."""
    common.config_command(sub, "run", main, "run an agent in a world (Hydra overrides: agent=... world=... seed=...)",
                          "world=two_rooms episodes=3")


def main(args: argparse.Namespace) -> int:
    """Run the episodes, print a table per episode, write the run directory."""
    from rich.table import Table

    from amiagent.cli.launch import compose, report_recoveries, running
    from amiagent.config import to_yaml
    from amiagent.evaluation.report import new_run_dir, write_run
    from amiagent.runtime.local import run_episode

    cfg, run, runtime = compose(args.overrides)
    if args.cfg:
        print(to_yaml(cfg))
        return 0
    console = common.console()
    agent_name, world_name = cfg["agent"]["name"], cfg["world"]["name"]
    episodes, layouts = [], []
    with running(cfg, run, runtime, console) as (agent, world, telemetry), \
            common.progress(console, run.progress) as progress:
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
    table = Table(title=f"{agent_name} in {world_name} ({runtime.name} runtime)")
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
    report_recoveries(agent, console)
    console.print(f"run directory: {run_dir}")
    return 0
