"""`amiagent eval`: seeded episodes summarised as a table, eval.csv, eval.json and eval.png."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from amiagent.cli import common


def add_parser(sub: Any) -> None:
    """Register `amiagent eval`."""
    cmd = common.config_command(
        sub, "eval", main, "evaluate an agent over seeded episodes (agent=... world=... episodes=N seed=S)",
        "agent=hierarchical world=maze episodes=50",
        description="Runs `episodes` seeded episodes (seeds seed, seed+1, ...) and reports success, steps, "
                    "ground-truth violations, infeasible-goal reports and planning time per episode and overall. "
                    "Plans are waited for (lockstep=true) unless overridden, so under runtime=local the results "
                    "depend on the seeds only.")
    cmd.add_argument("--json", metavar="PATH", help="also write the eval JSON here")


def main(args: argparse.Namespace) -> int:
    """Run the seeded episodes and report them."""
    from amiagent.cli.launch import compose, report_recoveries, running
    from amiagent.config import to_yaml
    from amiagent.evaluation.evaluate import write_eval
    from amiagent.evaluation.report import new_run_dir
    from amiagent.runtime.local import run_episode
    from amiagent.evaluation.stats import Tally

    # lockstep by default: every plan is waited for, so results depend on the seeds, not the machine's load
    cfg, run, runtime = compose(["lockstep=true", "progress=true", *args.overrides])
    if args.cfg:
        print(to_yaml(cfg))
        return 0
    console = common.console()
    agent_name, world_name = cfg["agent"]["name"], cfg["world"]["name"]
    label = f"{agent_name} in {world_name}"
    episodes = []
    with running(cfg, run, runtime, console) as (agent, world, telemetry), \
            common.progress(console, run.progress) as progress:
        bar = progress.add_task(f"eval {label}", total=run.episodes, status="")
        for i in range(run.episodes):
            episode = run_episode(agent, world, run.seed + i, realtime=run.realtime, on_cycle=telemetry)
            episodes.append(episode)
            progress.update(bar, advance=1, status=Tally.of([e.stats for e in episodes]).progress())
            if agent.failure is not None:
                console.print(f"[red]stopping after episode {i + 1}:[/] {agent.failure}")
                break

    run_dir = Path(run.run_dir) if run.run_dir else new_run_dir(Path("runs"), f"eval-{agent_name}-{world_name}")
    json_path = Path(args.json) if args.json else None
    result = write_eval(run_dir, to_yaml(cfg), episodes, label, json_path=json_path, plot=run.plot)
    seeds = f"seeds {run.seed}..{run.seed + len(episodes) - 1}"
    console.print(_table(result["aggregate"], f"eval: {label} ({runtime.name} runtime, {seeds})"))
    failed = [e for e in episodes if not e.success or e.total_violations]
    if failed:
        shown = ", ".join(f"{e.seed} ({e.status}{f', {e.total_violations} violations' if e.total_violations else ''})"
                          for e in failed[:20])
        console.print(f"not reached or violating: {shown}{' ...' if len(failed) > 20 else ''}")
    report_recoveries(agent, console)
    console.print(f"run directory: {run_dir} (eval.csv, eval.json{', eval.png' if run.plot else ''})")
    return 0


def _table(agg: dict, title: str):
    from rich.table import Table

    table = Table(title=title)
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
    return table
