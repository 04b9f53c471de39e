"""`amiagent bench loop`: the agent cycle under each runtime against a monolithic loop, in one run.

Every variant drives the same seeded `open_field` episodes with the shipped
navigator (CEM 300 samples x horizon 16 x 10 iterations):

  * monolithic: one process calls the same plugin objects directly, in order
    (perception, actor bound to world model and cost, safety filter, memory),
    with no threads, deadlines or bus: the limit the runtimes are held to;
  * local: `runtime=local` (the Agent with its planning thread and deadline);
  * ray pod: every module in one Ray actor (the cycle calls it over the bus);
  * ray planner: actor + world model + cost in one actor, the rest one each;
  * ray separate: one actor per module, so every planner iteration crosses
    processes (a rollout and an evaluation per CEM iteration).

Latency is the agent's own time per cycle (observation in, action out,
memory written) over every cycle, with the share of cycles that used a fresh
plan (the others missed their deadline); the simulator's time is excluded.
The achieved control rate is what that latency would sustain.
Variants run in rounds, one episode each per round in a fresh random order, so
machine noise hits them alike. Cross-process calls per cycle count every bus
request, from this process and between actors. Memory is proportional set
size (PSS: shared pages divided among the processes sharing them, so sums are
honest), sampled between episodes: this process plus the variant's actors, and the whole run (this
process and every process Ray started). The fleet part starts 8 navigator
agents in `pod` placement at once, runs an episode with each, and reports the
whole run's peak.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil
import torch
from rich.console import Console
from rich.table import Table

from amiagent.agent import to_body_action
from amiagent.build import build_agent, build_world
from amiagent.config import load_config
from amiagent.contracts import MemoryRecord
from amiagent.evaluation.stats import REACHED, TIMEOUT, EpisodeStats, Tally

VARIANTS = ("monolithic", "local", "ray pod", "ray planner", "ray separate")
REFERENCE = "monolithic"
PLACEMENTS = {
    "ray pod": "pod",
    "ray planner": {"planner": {"modules": ["actor", "world_model", "cost"]}},
    "ray separate": "separate",
}
FLEET_TARGET_GIB = 8.0
TARGETS = {"ray pod": ("ratio", 1.10), "ray planner": ("ratio", 1.10), "ray separate": ("added_ms", 5.0)}


def _pss(pid: int) -> int:
    try:
        return psutil.Process(pid).memory_full_info().pss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def _run_pids() -> list[int]:
    """This process and every process it started (Ray's own and its workers, when Ray runs embedded)."""
    me = psutil.Process()
    return [me.pid] + [p.pid for p in me.children(recursive=True)]


class MemorySampler:
    """Peaks of PSS sums: of given process groups, and of the whole run.

    Sampled between episodes, never during timing: reading /proc for a dozen
    processes takes tens of milliseconds of this process's time.
    """

    def __init__(self) -> None:
        self.groups: dict[str, Callable[[], list[int]]] = {}
        self.peak: dict[str, int] = {}

    def watch(self, name: str, pids: Callable[[], list[int]]) -> None:
        self.groups[name] = pids

    def sample(self, *names: str) -> None:
        """Sample the named groups (all when none named) and the whole run."""
        for name in names or tuple(self.groups):
            self._update(name, self.groups[name]())
        self._update("whole run", _run_pids())

    def _update(self, name: str, pids: list[int]) -> None:
        self.peak[name] = max(self.peak.get(name, 0), sum(_pss(pid) for pid in pids))


class Monolithic:
    """The same plugin objects called directly in one process: the limit."""

    def __init__(self, agent_cfg: dict):
        self.agent = build_agent(agent_cfg)  # built like any agent; its cycle machinery is not used
        self.plan_ms: list[float] = []

    def episode(self, world: Any, seed: int) -> tuple[list[float], EpisodeStats]:
        m, safety = self.agent.modules, self.agent.safety
        task = world.reset(seed)
        settings = m.configurator.configure(task)
        for module in m.all() + self.agent.safety_modules:
            module.apply(settings)
            module.activate()
        safety.horizon = settings.horizon
        m.actor.act(m.perception.encode(world.body.observe()))  # warm-up, as Agent.start does
        m.actor.reset()
        goal = np.asarray(settings.goal[:2])
        times, status = [], TIMEOUT
        for _ in range(task.max_steps):
            obs = world.body.observe()
            if np.linalg.norm(obs.state[:2] - goal) <= task.goal_tolerance and np.linalg.norm(obs.state[2:4]) <= 0.25:
                status = REACHED
                break
            started = time.perf_counter()
            state = m.perception.encode(obs)
            plan = m.actor.act(state)
            self.plan_ms.append(float(plan.info.get("plan_ms", math.nan)))
            action = safety.filter(state, plan.actions[0]).action
            m.memory.write(MemoryRecord(obs.t, state[0], action, float(plan.cost.total[0]),
                                        float(plan.cost.violation_total[0])))
            times.append((time.perf_counter() - started) * 1e3)
            world.body.command(to_body_action(tuple(action.tolist())))
            world.advance(self.agent.loop.period)
        world.body.stop()
        world.advance(1.0)
        return times, EpisodeStats(seed=seed, status=status, steps=len(times), violations=dict(world.violations()))

    def close(self) -> None:
        self.agent.close()


def _agent_episode(agent: Any, world: Any, seed: int, plan_ms: list[float] | None = None,
                   fresh: list[float] | None = None) -> tuple[list[float], EpisodeStats]:
    from amiagent.runtime.local import run_episode

    episode = run_episode(agent, world, seed)
    if plan_ms is not None:
        plan_ms += [c.plan_ms for c in episode.cycles if c.source == "plan"]
    if fresh is not None:
        fresh.append(sum(c.source == "plan" for c in episode.cycles) / max(len(episode.cycles), 1))
    return [c.cycle_ms for c in episode.cycles], episode.stats


def _figures(times: list[float]) -> dict[str, float]:
    t = np.asarray(times)
    return {"cycles": int(len(t)), "p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99)),
            "mean_ms": float(t.mean()), "rate_hz": float(1e3 / t.mean())}


def _fleet(agent_cfg: dict, world_cfg: dict, size: int, seed: int, console: Console) -> dict[str, Any]:
    from amiagent.runtime.ray import ray_agent

    sampler = MemorySampler()
    agents, worlds, outcomes = [], [], []
    try:
        for i in range(size):
            agents.append(ray_agent(agent_cfg, {"placement": "pod"}, name=f"navigator-{i}"))
            worlds.append(build_world(world_cfg))
        for i, (agent, world) in enumerate(zip(agents, worlds)):
            outcomes.append(_agent_episode(agent, world, seed + i)[1])
            sampler.sample()
    finally:
        for agent in agents:
            agent.close()
        for world in worlds:
            world.close()
    peak, tally = sampler.peak["whole run"], Tally.of(outcomes)
    console.print(f"fleet of {size} pod agents: peak PSS of the whole run {peak / 2**30:.2f} GiB "
                  f"(target < {FLEET_TARGET_GIB:g} GiB: {_verdict(peak < FLEET_TARGET_GIB * 2**30)}); "
                  f"{tally.successes}/{size} reached, {tally.total_violations} violations")
    return {"size": size, "peak_pss_mib": peak / 2**20, "target_gib": FLEET_TARGET_GIB,
            "met": peak < FLEET_TARGET_GIB * 2**30, "reached": tally.successes,
            "violations": tally.total_violations}


def _nan_to_none(value: Any) -> Any:
    """`value` with every NaN float replaced by None: JSON has no NaN (`json.dump` would write a bare `NaN`)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def _verdict(ok: bool) -> str:
    return "[green]met[/]" if ok else "[red]not met[/]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="amiagent bench loop", description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--rounds", type=int, default=4, help="rounds: one seeded episode per variant each (4)")
    parser.add_argument("--fleet", type=int, default=8, help="agents in the fleet part; 0 skips it (8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode (0)")
    parser.add_argument("--address", help="join the Ray cluster at this address (default: start an embedded "
                                          "local instance, shut down at the end)")
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides for every variant, e.g. world.params.max_steps=20 for short episodes")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.fleet < 0:
        parser.error("--rounds must be >= 1 and --fleet >= 0")
    from amiagent.runtime.ray import RaySession

    quiet = logging.getLogger("amiagent")
    level, threads = quiet.level, torch.get_num_threads()
    quiet.setLevel(logging.ERROR)  # fallbacks under load are counted, not printed
    torch.set_num_threads(1)
    console = Console(width=160)
    try:
        # plans may take the whole period, so that the slower placements still use their own plans
        cfg = load_config(["runtime=local", "agent.loop.deadline_s=0.1", *args.overrides])
        session = RaySession(args.address)
        try:
            return _bench(args, console, cfg, session)
        finally:
            session.close()
    finally:  # called in-process (tests, notebooks): leave the caller's logging and threads as they were
        quiet.setLevel(level)
        torch.set_num_threads(threads)


def _bench(args: argparse.Namespace, console: Console, cfg: dict, session: Any) -> int:
    from amiagent.runtime.ray import ray_agent

    agent_cfg, world_cfg = cfg["agent"], cfg["world"]
    sampler = MemorySampler()
    runners: dict[str, Any] = {}
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    outcomes: dict[str, list[EpisodeStats]] = {v: [] for v in VARIANTS}
    calls: dict[str, float] = {}
    plans: dict[str, list[float]] = {v: [] for v in VARIANTS}
    fresh: dict[str, list[float]] = {v: [] for v in VARIANTS}
    world = build_world(world_cfg)
    try:
        with console.status("starting the agents..."):
            runners["monolithic"] = Monolithic(agent_cfg)
            runners["local"] = build_agent(agent_cfg)
            for variant, placement in PLACEMENTS.items():
                runners[variant] = ray_agent(agent_cfg, {"placement": placement}, name=variant.replace(" ", "-"))
        me = os.getpid()
        for variant in VARIANTS:
            agent = runners[variant]
            if variant in PLACEMENTS:  # modules in Ray actors
                sampler.watch(variant, lambda a=agent: [me] + [g["pid"] for g in a.runtime.placement().values()])
            else:
                sampler.watch(variant, lambda: [me])
        before = {v: runners[v].runtime.cross_process_calls() for v in PLACEMENTS}
        cycles = dict.fromkeys(VARIANTS, 0)
        rng = random.Random(args.seed)
        with console.status("running episodes...") as status:
            for r in range(args.rounds):
                order = list(VARIANTS)
                rng.shuffle(order)
                for variant in order:
                    status.update(f"round {r + 1}/{args.rounds}: {variant}")
                    runner = runners[variant]
                    if variant == "monolithic":
                        t, stats = runner.episode(world, args.seed + r)
                        cycles[variant] += len(t)
                    else:
                        t, stats = _agent_episode(runner, world, args.seed + r, plans[variant], fresh[variant])
                        cycles[variant] += runner.counters.cycles
                    times[variant] += t
                    outcomes[variant].append(stats)
                    sampler.sample(variant)
        for v in PLACEMENTS:
            calls[v] = (runners[v].runtime.cross_process_calls() - before[v]) / max(cycles[v], 1)
    finally:
        for runner in runners.values():
            runner.close()
        world.close()

    plans["monolithic"] = runners["monolithic"].plan_ms
    figures = {v: _figures(times[v]) for v in VARIANTS}
    for v, f in figures.items():  # time inside actor.act, wherever the actor runs
        f["plan_p50_ms"] = float(np.nanpercentile(plans[v], 50)) if plans[v] else math.nan
    ref = figures[REFERENCE]
    for v, f in figures.items():
        f["added_p50_ms"] = f["p50_ms"] - ref["p50_ms"]
        f["ratio_p50"] = f["p50_ms"] / ref["p50_ms"]
        f["cross_process_calls_per_cycle"] = calls.get(v, 0.0)
        f["peak_pss_mib"] = sampler.peak.get(v, 0) / 2**20
        tally = Tally.of(outcomes[v])
        f["reached"] = tally.successes
        f["violations"] = tally.total_violations
        f["episodes"] = tally.episodes
        f["fresh_plan_share"] = float(np.mean(fresh[v])) if fresh[v] else 1.0
    table = Table(title="agent cycle: navigator, open_field, CEM 300x16x10 (ms per cycle, every cycle)")
    for col in ("variant", "cycles", "p50", "p99", "mean", "plan p50", "rate Hz", "added p50", "/mono p50",
                "fresh plans", "calls/cycle",
                "peak PSS MiB", "reached", "violations"):
        table.add_column(col, justify="right")
    for v, f in figures.items():
        table.add_row(v, str(f["cycles"]), f"{f['p50_ms']:.1f}", f"{f['p99_ms']:.1f}", f"{f['mean_ms']:.1f}",
                      f"{f['plan_p50_ms']:.1f}",
                      f"{f['rate_hz']:.0f}", f"{f['added_p50_ms']:+.2f}", f"{f['ratio_p50']:.3f}x",
                      f"{f['fresh_plan_share']:.0%}",
                      f"{f['cross_process_calls_per_cycle']:.1f}", f"{f['peak_pss_mib']:.0f}",
                      f"{f['reached']}/{f['episodes']}", str(f["violations"]))
    console.print(table)
    console.print(f"whole run peak PSS (this process and every Ray process): "
                  f"{sampler.peak.get('whole run', 0) / 2**30:.2f} GiB")
    targets = {}
    for v, (kind, bound) in TARGETS.items():
        value = figures[v]["ratio_p50"] if kind == "ratio" else figures[v]["added_p50_ms"]
        met = value <= bound
        targets[v] = {kind: value, "bound": bound, "met": met}
        shown = f"{value:.3f}x (<= {bound:.2f}x)" if kind == "ratio" else f"{value:+.2f} ms (<= {bound:g} ms)"
        console.print(f"{v} against monolithic: {shown}: {_verdict(met)}")
    fleet = None
    if args.fleet > 0:
        with console.status(f"fleet of {args.fleet} pod agents..."):
            fleet = _fleet(agent_cfg, world_cfg, args.fleet, args.seed, console)
    if args.json:
        with open(args.json, "w") as f:  # NaN (a variant that never planned on time) is written as null
            report = {"figures": figures, "targets": targets, "fleet": fleet, "rounds": args.rounds,
                      "overrides": args.overrides, "whole_run_peak_pss_mib": sampler.peak.get("whole run", 0) / 2**20}
            json.dump(_nan_to_none(report), f, indent=2, allow_nan=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
