"""`amiagent bench hierarchy`: the issue's evaluations, flat against hierarchical, over seeded episodes.

    two_rooms  flat (level 0 only) and hierarchical    target: hierarchical >= 98% success
    maze       flat and hierarchical                    target: hierarchical >= 95% success
    workcell   reacher                                  target: >= 95% within 3 cm
    open_field navigator (only with --worlds)           target: >= 95% success (the walking skeleton's)
    every one: zero ground-truth guardrail violations in every episode

Episodes run in lockstep under the local runtime (every plan is waited for),
so success and violations depend on the seeds alone; planning time per cycle
is measured as it happens (the p50/p99 printed). The flat agent is the
reference timed in the same run: same level-0 optimiser and sample budget; the
compute each spends per cycle is reported as world-model steps evaluated
(counted, machine independent) and as milliseconds, and the hierarchical
agent's as ratios to the flat one's, with the difference in success rate
(`against_flat` in the JSON). Seeds are split over
`--jobs` worker processes, each with one torch thread.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from amiagent.evaluation.stats import EpisodeStats, Tally

TARGETS = {("two_rooms", "hierarchical"): 0.98, ("maze", "hierarchical"): 0.95, ("workcell", "reacher"): 0.95,
           ("open_field", "navigator"): 0.95}
SUITES = {"two_rooms": ("flat", "hierarchical"), "maze": ("flat", "hierarchical"), "workcell": ("reacher",),
          "open_field": ("navigator",)}
DEFAULT_WORLDS = ("two_rooms", "maze", "workcell")
CHUNK = 5
"""Episodes per work item: small enough for a live progress bar, large enough to amortise a build."""


@dataclass(frozen=True)
class Job:
    agent: str
    world: str
    seeds: tuple[int, ...]
    overrides: tuple[str, ...]
    label: str = ""
    """The suite the episodes count towards (default: the agent's name), e.g. one of several trained models."""

    @property
    def suite(self) -> tuple[str, str]:
        return self.world, self.label or self.agent


def run_job(job: Job) -> tuple[list[dict[str, Any]], list[float], list[float]]:
    """Episodes of one work item, in a worker process: their eval rows, planning ms and model steps per cycle."""
    import dataclasses

    import torch

    from amiagent.build import build_agent, build_world
    from amiagent.config import load_config
    from amiagent.evaluation.evaluate import episode_row
    from amiagent.runtime.local import run_episode

    torch.set_num_threads(1)
    cfg = load_config([f"agent={job.agent}", f"world={job.world}", "runtime=local", *job.overrides])

    def build():
        agent = build_agent(cfg["agent"])
        agent.loop = dataclasses.replace(agent.loop, lockstep=True)
        return agent, build_world(cfg["world"])

    agent, world = build()
    rows, plan_ms, steps = [], [], []
    try:
        for seed in job.seeds:
            try:
                episode = run_episode(agent, world, seed)
            except Exception as exc:  # one broken episode is a failure to report, not the end of the benchmark
                rows.append(error_row(seed, exc))
                agent.close()
                world.close()
                agent, world = build()  # whatever state the error left behind goes with them
                continue
            rows.append(episode_row(episode))
            plan_ms.extend(episode.planning_ms().tolist())
            steps.extend(episode.model_steps().tolist())
    finally:
        agent.close()
        world.close()
    return rows, plan_ms, steps


def error_row(seed: int, exc: BaseException) -> dict[str, Any]:
    """The row of an episode that raised: not a success, its violations unknown, the error named."""
    return EpisodeStats.failed(seed, exc).row()


def tally(rows: list[dict[str, Any]]) -> Tally:
    """The rows' episodes counted by the one definition of success, infeasible and violation."""
    return Tally.of([EpisodeStats.from_row(r) for r in rows])


def summary(rows: list[dict[str, Any]], plan_ms: list[float], steps: list[float]) -> dict[str, Any]:
    """A suite's figures from its eval rows, planning ms and model steps per cycle."""
    t = tally(rows)
    return {
        "episodes": t.episodes,
        "success_rate": t.success_rate,
        "success_rate_95ci": t.success_rate_95ci,
        "episodes_with_violations": t.episodes_with_violations,
        "total_violations": t.total_violations,
        "infeasible_reports": t.infeasible_reports,
        "steps_mean": t.steps_mean,
        "plan_ms_p50": float(np.percentile(plan_ms, 50)) if plan_ms else None,
        "plan_ms_p99": float(np.percentile(plan_ms, 99)) if plan_ms else None,
        "model_steps_per_cycle": float(np.mean(steps)) if steps else None,
        "missed_deadlines": t.missed_deadlines,
        "failures": t.failures,
        "errors": t.errors,
        "seeds_with_violations": t.seeds_with_violations,
    }


def against_flat(hierarchical: dict[str, Any], flat: dict[str, Any]) -> dict[str, Any]:
    """The hierarchical agent's `summary` against the flat one's (the reference, same seeds): the difference
    in success rate and the ratios of compute per cycle, counted (model steps) and timed (planning ms p50).
    A ratio is None where either side never planned."""

    def ratio(key: str) -> float | None:
        a, b = hierarchical[key], flat[key]
        return a / b if a is not None and b else None

    return {"success_rate_delta": hierarchical["success_rate"] - flat["success_rate"],
            "model_steps_ratio": ratio("model_steps_per_cycle"), "plan_ms_p50_ratio": ratio("plan_ms_p50")}


def plan_ms(s: dict[str, Any]) -> str:
    """A summary's planning time p50 / p99 for a table ("-" when no episode planned)."""
    return "-" if s["plan_ms_p50"] is None else f"{s['plan_ms_p50']:.1f} / {s['plan_ms_p99']:.1f}"


def print_errors(console, label: str, s: dict[str, Any]) -> None:
    """Name the episodes that raised (counted as failures; their violations are unknown)."""
    for seed, error in list(s["errors"].items())[:10]:
        console.print(f"[red]{label}: seed {seed} raised {error}[/red] (counted as not reached)")
    if len(s["errors"]) > 10:
        console.print(f"[red]{label}: {len(s['errors']) - 10} more episodes raised[/red]")


def run_jobs(jobs: list[Job], per_suite: int, workers: int, console) -> dict[tuple[str, str], tuple[list, list, list]]:
    """Run `jobs` over `workers` spawned processes with a progress bar per (world, label or agent) suite of
    `per_suite` episodes; returns each suite's eval rows, planning ms and model steps per cycle."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    results: dict[tuple[str, str], tuple[list, list, list]] = {}
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited torch or pybullet state
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool, Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), console=console,
    ) as progress:
        bars = {}
        for job in jobs:
            if job.suite not in bars:
                bars[job.suite] = progress.add_task(f"{job.suite[1]} in {job.world}", total=per_suite, status="")
        futures = {pool.submit(run_job, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                rows, plan_ms, steps = future.result()
            except Exception as exc:  # the worker itself died (killed, out of memory): its episodes are errors
                rows, plan_ms, steps = [error_row(seed, exc) for seed in job.seeds], [], []
            got = results.setdefault(job.suite, ([], [], []))
            got[0].extend(rows)
            got[1].extend(plan_ms)
            got[2].extend(steps)
            so_far = tally(got[0])
            progress.update(bars[job.suite], advance=len(rows), status=so_far.progress())
            if not console.is_terminal:  # a log: one line per finished work item instead of a live bar
                console.print(f"{job.suite[1]} in {job.world}: {len(got[0])}/{per_suite} episodes, "
                              f"success {so_far.successes}, with violations {so_far.episodes_with_violations}")
    return results


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(prog="amiagent bench hierarchy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=200, help="seeded episodes per agent and world")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--worlds", default=",".join(DEFAULT_WORLDS),
                        help="comma-separated, from: " + ", ".join(SUITES))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every agent (e.g. agent.actor.params.samples=200)")
    args = parser.parse_args(argv)
    worlds = [w.strip() for w in args.worlds.split(",") if w.strip()]
    unknown = sorted(set(worlds) - set(SUITES))
    if unknown or args.episodes < 1 or args.jobs < 1:
        parser.error(f"unknown world(s) {unknown}" if unknown else "--episodes and --jobs must be >= 1")
    seeds = list(range(args.seed, args.seed + args.episodes))
    jobs = [Job(agent, world, tuple(seeds[i : i + CHUNK]), tuple(args.overrides))
            for world in worlds for agent in SUITES[world] for i in range(0, len(seeds), CHUNK)]
    console = Console()
    if not console.is_terminal:  # piped or logged: rich would assume 80 columns and squeeze the table
        console = Console(width=160)
    results = run_jobs(jobs, len(seeds), args.jobs, console)

    table = Table(title=f"bench hierarchy: {args.episodes} seeded episodes each (seeds {seeds[0]}..{seeds[-1]}), "
                        "lockstep, local runtime")
    for col in ("world", "agent", "success (95% CI)", "target", "eps w/ violations", "infeasible reports",
                "steps", "plan ms p50/p99", "model steps/cycle", "missed"):
        table.add_column(col, justify="right")
    out: dict[str, Any] = {"episodes": args.episodes, "first_seed": args.seed, "overrides": args.overrides,
                           "results": {}}
    comparisons: list[str] = []
    for world in worlds:
        for agent in SUITES[world]:
            s = summary(*results[(world, agent)])
            target = TARGETS.get((world, agent))
            met = target is not None and s["success_rate"] >= target and s["episodes_with_violations"] == 0
            s["target"], s["target_met"] = target, met if target is not None else None
            out["results"][f"{world}/{agent}"] = s
            low, high = s["success_rate_95ci"]
            table.add_row(
                world, agent, f"{s['success_rate']:.1%} ({low:.1%}-{high:.1%})",
                "-" if target is None else f">= {target:.0%}, 0 viol: {'met' if met else 'NOT met'}",
                str(s["episodes_with_violations"]), str(s["infeasible_reports"]), f"{s['steps_mean']:.0f}",
                plan_ms(s), "-" if s["model_steps_per_cycle"] is None else f"{s['model_steps_per_cycle']:.0f}",
                str(s["missed_deadlines"]),
            )
    for world in worlds:
        if set(SUITES[world]) == {"flat", "hierarchical"}:
            hier = out["results"][f"{world}/hierarchical"]
            vs = hier["against_flat"] = against_flat(hier, out["results"][f"{world}/flat"])
            comparisons.append(
                f"{world}: hierarchical - flat success {vs['success_rate_delta']:+.1%}; per cycle, model steps "
                + ("-" if vs["model_steps_ratio"] is None else f"{vs['model_steps_ratio']:.2f}x")
                + ", planning ms p50 " + ("-" if vs["plan_ms_p50_ratio"] is None else f"{vs['plan_ms_p50_ratio']:.2f}x"))
    console.print(table)
    for line in comparisons:
        console.print(line)
    for key, s in out["results"].items():
        if s["failures"] or s["seeds_with_violations"]:
            console.print(f"{key}: not reached {s['failures'][:30]}; with violations {s['seeds_with_violations'][:30]}")
        print_errors(console, key, s)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0
