"""`amiagent bench plan`: time per plan of the MPC actor against a bare inline CEM loop.

Both solve the same problem in the same run: CEM with 300 samples, horizon 16,
10 iterations, 30 elites, on the point-mass model with goal distance, action
effort and one keep-out circle. The bare loop is what a researcher would write
inline in torch; the ratio is the framework's overhead. Runs alternate in
rounds so that machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from amiagent import registry
from amiagent.contracts import Settings
from amiagent.planning.cost import IntrinsicCost

SAMPLES, HORIZON, ITERATIONS, ELITES = 300, 16, 10, 30
START = (-4.0, 0.3, 0.0, 0.0)
GOAL = (4.0, 0.0)
ZONE = (0.0, 0.0, 0.8)
ROBOT_RADIUS, MARGIN = 0.2, 0.05
EFFORT_WEIGHT, TERMINAL, MAX_ACCEL, INIT_STD, MIN_STD = 0.02, 4.0, 2.0, 0.5, 0.05


def framework_actor():
    """The MPC actor and cost module, built through the registry like any agent's."""
    wm = registry.create("world_model", "point_mass", {"max_accel": MAX_ACCEL})
    cost = IntrinsicCost(
        {"goal_distance": (registry.create("cost_term", "goal_distance", {"terminal": TERMINAL}), 1.0),
         "action_effort": (registry.create("cost_term", "action_effort"), EFFORT_WEIGHT)},
        {"keep_out": registry.create("guardrail", "keep_out", {"margin": MARGIN, "braking": False})},
    )
    settings = Settings(goal=(*GOAL, 0.0, 0.0), horizon=HORIZON,
                        guardrails={"keep_out": {"circles": [list(ZONE)], "robot_radius": ROBOT_RADIUS}})
    actor = registry.create("actor", "mpc", {"samples": SAMPLES, "iterations": ITERATIONS, "elites": ELITES,
                                            "init_std": INIT_STD, "min_std": MIN_STD, "warm_start": False})
    cost.apply(settings)
    actor.bind(wm, cost)
    actor.apply(settings)
    state = torch.tensor([START])
    return lambda: actor.act(state)


def bare_loop():
    """The same CEM written inline: no modules, no reports, one function."""
    dt, substeps = 0.1, 24
    gain = (dt / substeps) ** 2 * substeps * (substeps + 1) / 2
    p0, v0 = torch.tensor(START[:2]), torch.tensor(START[2:])
    steps = torch.arange(1, HORIZON + 1, dtype=torch.float32).view(1, HORIZON, 1)
    step_w = torch.ones(HORIZON)
    step_w[-1] = TERMINAL
    cx, cy, r = ZONE
    reach = r + ROBOT_RADIUS + MARGIN
    gen = torch.Generator().manual_seed(0)

    def plan():
        mean = torch.zeros(HORIZON, 2)
        std = torch.full((HORIZON, 2), INIT_STD * MAX_ACCEL)
        for _ in range(ITERATIONS):
            a = (mean + std * torch.randn(SAMPLES, HORIZON, 2, generator=gen)).clamp(-MAX_ACCEL, MAX_ACCEL)
            s = torch.cumsum(a, 1)
            p = p0 + dt * (steps * v0 + dt * (torch.cumsum(s, 1) - s)) + gain * s
            px, py = p[..., 0], p[..., 1]
            dist = torch.sqrt((px - GOAL[0]) ** 2 + (py - GOAL[1]) ** 2)
            cost = (dist * step_w).sum(1) + EFFORT_WEIGHT * (a * a).sum((1, 2))
            viol = torch.relu(reach - torch.sqrt((px - cx) ** 2 + (py - cy) ** 2)).sum(1)
            order = torch.argsort(cost)
            order = order[torch.argsort(viol[order], stable=True)]
            elites = a[order[:ELITES]]
            mean = elites.mean(0)
            std = elites.std(0).clamp_min(MIN_STD * MAX_ACCEL)
        return a[order[0]]

    return plan


def _time(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="amiagent bench plan", description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--rounds", type=int, default=20, help="alternating rounds (default 20)")
    parser.add_argument("--per-round", type=int, default=10, help="plans per round and side (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, the runtime's)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.per_round < 1 or args.threads < 1:
        parser.error("--rounds, --per-round and --threads must be >= 1")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        _bench(args)
    finally:  # called in-process (tests, notebooks): leave the caller's thread count as it was
        torch.set_num_threads(threads)
    return 0


def _bench(args: argparse.Namespace) -> None:
    console = Console()
    sides = {"amiagent MPC actor (CEM)": framework_actor(), "bare inline torch CEM": bare_loop()}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for fn in sides.values():  # warm up
        _time(fn, 5)
    with console.status("timing plans..."):
        for _ in range(args.rounds):
            for name, fn in sides.items():
                times[name] += _time(fn, args.per_round)
    figures = {
        name: {"p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99)),
               "mean_ms": float(np.mean(t)), "plans": len(t)}
        for name, t in times.items()
    }
    fw, bare = figures.values()
    ratio = fw["p50_ms"] / bare["p50_ms"]
    table = Table(title=f"plan: CEM {SAMPLES} samples x H{HORIZON} x {ITERATIONS} it, {ELITES} elites, "
                        f"point mass + 1 keep-out ({args.threads} torch thread(s))")
    for col in ("planner", "p50 ms", "p99 ms", "mean ms", "plans"):
        table.add_column(col, justify="right")
    for name, f in figures.items():
        table.add_row(name, f"{f['p50_ms']:.2f}", f"{f['p99_ms']:.2f}", f"{f['mean_ms']:.2f}", str(f["plans"]))
    console.print(table)
    def verdict(ok: bool) -> str:
        return "[green]met[/]" if ok else "[red]not met[/]"

    console.print(f"amiagent / bare (p50): [bold]{ratio:.2f}x[/], target <= 1.2x: {verdict(ratio <= 1.2)}")
    console.print(f"amiagent p50 {fw['p50_ms']:.2f} ms per plan, target < 3 ms: {verdict(fw['p50_ms'] < 3.0)}"
                  f" (the bare loop itself takes {bare['p50_ms']:.2f} ms on this machine)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"figures": figures, "ratio_p50": ratio, "threads": args.threads,
                       "targets": {"ratio_p50_max": 1.2, "ratio_met": ratio <= 1.2,
                                   "p50_ms_max": 3.0, "time_met": fw["p50_ms"] < 3.0},
                       "sizes": {"samples": SAMPLES, "horizon": HORIZON, "iterations": ITERATIONS,
                                 "elites": ELITES}}, f, indent=2)


if __name__ == "__main__":
    raise SystemExit(main())
