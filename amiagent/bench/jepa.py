"""`amiagent bench jepa`: collect, train and plan from pixels, against the analytic oracle on the same seeds.

    1. collect   reward-free episodes (noisy_expert) with the world's top-down camera, once
    2. train     the JEPA of agents/world_model/jepa.yaml (two_rooms: TRAIN_OVERRIDES) once per training
                 seed (--train-seeds, default 3: seeds 0, 1, 2), each for the config's steps with its fixed
                 thread count, so the same command trains the same models (no time cap unless
                 --train-minutes sets one); --agent jepa_hierarchical also trains a stride-5 JEPA for level 1
    3. evaluate  agent=jepa with each model (goal given as an image, latent MPC, safety filter on the
                 measured state; two_rooms: AGENT_OVERRIDES) and the oracle (ORACLES: navigator, or
                 hierarchical in two_rooms; the analytic point-mass model, the same goal image read by state
                 perception) over the same seeds, in lockstep
    targets: open_field >= 95% success, two_rooms >= 90%, zero ground-truth violations in every episode,
    for the episodes of all models pooled

Prints the wall-clock of collect and train, each model's held-out training figures and success rate
(Wilson 95% CI), the spread of success over the models (what a new training run may give), the pooled
figures (episodes with violations, planning time per cycle p50/p99) and the oracle's. The pooled
interval counts episodes only; the spread shows how much the trained model itself varies. `--reuse`
keeps an existing data file and evaluates existing checkpoints as they are (their training time is the
one they recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from amiagent.bench.hierarchy import Job, plan_ms, print_errors, run_jobs, summary

TARGETS = {"open_field": 0.95, "two_rooms": 0.90}
ORACLES = {"open_field": "navigator", "two_rooms": "hierarchical"}
TRAIN_OVERRIDES = {"two_rooms": ("world_model.model.keypoints=16", "world_model.model.smooth_weight=0.0",
                                 "world_model.model.latent_dim=32", "world_model.model.proprio_weight=1.0",
                                 "world_model.model.horizon=8", "world_model.train.batch=32")}
"""Model settings per world on top of agents/world_model/jepa.yaml. In two_rooms the door moves between episodes
and stands still within one: with the smoothness term and 8 keypoints the latent tracked the door and the probe
could not find the robot (held-out position RMSE 2.1 m after 400 steps); 16 keypoints without it found it. A
32-D latent keeps all 16 keypoints' coordinates (the probe's error 0.17 -> 0.07 m against 8-D), and 8-step
prediction windows (batch 32, for the same time per step) give a predictor whose 16-step rollouts the planner
can follow (3-step windows: 3 of 8 diagnostic seeds reached, 8-step: 7 of 8)."""
AGENT_OVERRIDES = {"two_rooms": ("agent.cost.terms.latent_goal.weight=0.0",)}
"""Agent settings per world on top of agents/agent/<agent>.yaml (the command line's come after). In two_rooms the
latent distance to the goal image pulls straight at the goal, through the wall: with it the agent stalled in the
first room on every one of 8 diagnostic seeds, so only the geodesic distance on the probe scores the goal there."""
COARSE_STRIDE = {"jepa": 0, "jepa_hierarchical": 5}
"""The level-1 model's temporal stride each learned agent needs (0: none); agents/agent/jepa_hierarchical.yaml
reads `<world>-k5.pt`."""
CHUNK = 5


def train_settings(world: str, steps: int | None = None, minutes: float = 0.0,
                   threads: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model and training settings of the world's recipe (jepa.yaml and TRAIN_OVERRIDES), with the
    step count, time cap (0: none) and thread count given here where not None."""
    from amiagent.config import load_config

    spec = load_config(["world_model=jepa", *TRAIN_OVERRIDES.get(world, ())], config_name="train")["world_model"]
    train = {**spec["train"], "max_minutes": minutes}
    if steps is not None:
        train["steps"] = steps
    if threads is not None:
        train["threads"] = threads
    return dict(spec["model"]), train


def collect_data(world: str, data: Path, episodes: int, steps: int, reuse: bool, console) -> dict[str, Any]:
    """Collect (or, with `reuse`, keep) the reward-free episodes all models train on."""
    from amiagent.build import build_world
    from amiagent.learning.collect import CollectConfig, collect, make_policy
    from amiagent.config import load_config

    started = time.perf_counter()
    world_cfg = load_config([f"world={world}"], config_name="collect")["world"]
    world_cfg["params"]["camera"] = True
    built = build_world(world_cfg)
    try:
        got = collect(built, make_policy({"name": "noisy_expert"}),
                      CollectConfig(episodes=episodes, steps=steps, data=str(data), progress=False,
                                    overwrite=not reuse))
    finally:
        built.close()
    figures = {"data": str(data), "collect_s": time.perf_counter() - started, "frames": got.episodes * (steps + 1)}
    console.print(f"collected {got.episodes} episodes ({figures['frames']} frames) in {figures['collect_s']:.0f} s")
    return figures


def train_model(data: Path, out: Path, world: str, seed: int, model: dict[str, Any], train: dict[str, Any],
                reuse: bool, console, coarse_stride: int = 0) -> dict[str, Any]:
    """Train (or, with `reuse`, keep) training seed `seed`'s model `<world>-seed<seed>.pt` and, with
    `coarse_stride` > 0, its level-1 model `<world>-seed<seed>-k<stride>.pt`, on `data`; returns the
    checkpoints, timings and held-out figures."""
    from amiagent.learning.jepa import JEPAConfig
    from amiagent.learning.train import TrainConfig, load_checkpoint
    from amiagent.learning.train import train as train_jepa

    figures: dict[str, Any] = {"train_seed": seed, "checkpoint": str(out / f"{world}-seed{seed}.pt")}
    models = [("", Path(figures["checkpoint"]), 1)]
    if coarse_stride > 0:
        figures["checkpoint_coarse"] = str(out / f"{world}-seed{seed}-k{coarse_stride}.pt")
        models.append(("_coarse", Path(figures["checkpoint_coarse"]), coarse_stride))
    total = 0.0
    for suffix, path, stride in models:
        seconds = None
        if not (reuse and path.exists()):  # else evaluate the model as it is
            seconds = train_jepa(data, path, JEPAConfig.from_dict({**model, "stride": stride}),
                                 TrainConfig(**{**train, "seed": seed}), resume=False).seconds
        saved = load_checkpoint(path)
        final, steps_done = saved["history"][-1], int(saved["step"])  # the last figures, as a reused run reads them
        seconds = float(final["seconds"]) if seconds is None else seconds
        threads, cut = saved["info"].get("threads"), steps_done < int(saved["info"]["train_config"]["steps"])
        figures.update({f"train{suffix}_s": seconds, f"train{suffix}_steps": steps_done,
                        f"train{suffix}_threads": threads, f"train{suffix}_stopped_by_time": cut,
                        f"train{suffix}_final": final})
        total += seconds
        console.print(f"trained seed {seed}, stride {stride}: {steps_done} steps in {seconds / 60:.1f} min"
                      f"{' (cut by --train-minutes: not reproducible)' if cut else ''}: held-out prediction "
                      f"{final['val_prediction']:.4g} (copy-last {final['val_copy_baseline']:.4g}), effective rank "
                      f"{final['val_effective_rank']:.2f}, probe position RMSE "
                      f"{final['val_probe_position_rmse']:.3f} m")
    figures["train_s"] = total  # both models, for a hierarchical agent
    return figures


def spread(models: list[dict[str, Any]]) -> dict[str, Any]:
    """How success varies with the training seed: per-model rates, their min, max, mean and sample std."""
    rates = [m["result"]["success_rate"] for m in models]
    return {"train_seeds": [m["train_seed"] for m in models], "success_rates": rates,
            "success_rate_min": min(rates), "success_rate_max": max(rates),
            "success_rate_mean": statistics.mean(rates),
            "success_rate_std": statistics.stdev(rates) if len(rates) > 1 else 0.0}


def suite(model: dict[str, Any]) -> str:
    """The evaluation suite of one trained model."""
    return f"jepa seed {model['train_seed']}"


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(prog="amiagent bench jepa", description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", default="open_field", choices=sorted(TARGETS))
    parser.add_argument("--agent", default="jepa", choices=sorted(COARSE_STRIDE),
                        help="the learned agent: flat latent MPC, or with a level 1 on a stride-5 latent model")
    parser.add_argument("--episodes", type=int, default=100, help="seeded evaluation episodes per model and agent")
    parser.add_argument("--seed", type=int, default=1000, help="first evaluation seed (collection uses 0..)")
    parser.add_argument("--train-seeds", type=int, default=3,
                        help="models trained, with seeds 0..N-1, on the same data: the spread of success over them")
    parser.add_argument("--data-episodes", type=int, default=300, help="reward-free episodes to collect")
    parser.add_argument("--data-steps", type=int, default=100, help="control steps per collected episode")
    parser.add_argument("--train-steps", type=int, help="optimiser steps per model (default: the config's)")
    parser.add_argument("--train-threads", type=int,
                        help="torch threads while training (default: the config's; the model depends on it)")
    parser.add_argument("--train-minutes", type=float, default=0.0,
                        help="wall-clock cap per model (default 0: none; a cap makes the model depend on the "
                             "machine's speed)")
    parser.add_argument("--max-steps", type=int, help="evaluation episodes' step budget (default: the world's)")
    parser.add_argument("--out", default="bench-jepa", help="folder for the data file and checkpoints")
    parser.add_argument("--reuse", action="store_true", help="keep the data and checkpoints already in --out")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="evaluation worker processes")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the jepa agent")
    args = parser.parse_args(argv)
    for name in ("episodes", "jobs", "data_episodes", "data_steps", "train_seeds", "train_steps", "train_threads",
                 "max_steps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.train_minutes < 0:
        parser.error("--train-minutes must be >= 0 (0: no cap)")
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_cfg, train_cfg = train_settings(args.world, args.train_steps, args.train_minutes, args.train_threads)
    figures = collect_data(args.world, out_dir / f"{args.world}.h5", args.data_episodes, args.data_steps,
                           args.reuse, console)
    models = [train_model(Path(figures["data"]), out_dir, args.world, seed, model_cfg, train_cfg, args.reuse, console,
                          COARSE_STRIDE[args.agent]) for seed in range(args.train_seeds)]
    seeds = list(range(args.seed, args.seed + args.episodes))
    budget = (f"world.params.max_steps={args.max_steps}",) if args.max_steps else ()
    suites: dict[str, tuple[str, tuple[str, ...]]] = {}
    for m in models:
        checkpoints = [f"agent.checkpoint={Path(m['checkpoint']).resolve()}"]
        if "checkpoint_coarse" in m:
            checkpoints.append(f"agent.checkpoint_coarse={Path(m['checkpoint_coarse']).resolve()}")
        suites[suite(m)] = (args.agent, ("world.params.camera=true", *budget, *checkpoints,
                                                               *AGENT_OVERRIDES.get(args.world, ()), *args.overrides))
    suites["oracle"] = (ORACLES[args.world], ("world.params.camera=true", *budget, "+agent.goal_from=observation"))
    jobs = [Job(agent, args.world, tuple(seeds[i: i + CHUNK]), overrides, label)
            for label, (agent, overrides) in suites.items() for i in range(0, len(seeds), CHUNK)]
    results = run_jobs(jobs, len(seeds), args.jobs, console)
    target = TARGETS[args.world]
    for m in models:
        m["result"] = summary(*results[(args.world, suite(m))])
    # every model's episodes together: rows, planning ms and model steps, each concatenated
    pooled = summary(*([x for m in models for x in results[(args.world, suite(m))][part]] for part in range(3)))
    pooled["target_met"] = pooled["success_rate"] >= target and pooled["episodes_with_violations"] == 0
    oracle = summary(*results[(args.world, "oracle")])
    oracle["target_met"] = None
    out: dict[str, Any] = {
        "world": args.world, "agent": args.agent, "episodes": args.episodes, "first_seed": args.seed,
        "overrides": args.overrides, "max_steps": args.max_steps, "train_settings": train_cfg, **figures,
        "models": models, "spread": spread(models), "results": {"jepa": pooled, "oracle": oracle},
        "success_ratio_to_oracle": pooled["success_rate"] / oracle["success_rate"] if oracle["success_rate"] else None,
    }
    print_tables(console, out, seeds, target)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float))
    return 0


def print_tables(console, out: dict[str, Any], seeds: list[int], target: float) -> None:
    """The per-model, pooled and oracle rows, the spread, and what failed."""
    from rich.table import Table

    learned = "JEPA from pixels" + (", 2 levels" if COARSE_STRIDE[out["agent"]] else "")
    table = Table(title=f"bench jepa: {out['world']}, {out['episodes']} seeded episodes (seeds {seeds[0]}..{seeds[-1]}) "
                        f"per model, goals given as images, lockstep")
    for col in ("agent", "model", "success (95% CI)", "target", "eps w/ violations", "steps", "plan ms p50/p99",
                "missed"):
        table.add_column(col, justify="right")

    def row(label: str, model: str, s: dict[str, Any], verdict: str) -> None:
        low, high = s["success_rate_95ci"]
        table.add_row(label, model, f"{s['success_rate']:.1%} ({low:.1%}-{high:.1%})", verdict,
                      str(s["episodes_with_violations"]), f"{s['steps_mean']:.0f}", plan_ms(s),
                      str(s["missed_deadlines"]))

    for m in out["models"]:
        row(f"{out['agent']}, training seed {m['train_seed']}", learned, m["result"], "-")
    pooled = out["results"]["jepa"]
    row(f"{out['agent']}, {len(out['models'])} models pooled", learned, pooled,
        f">= {target:.0%}, 0 viol: {'met' if pooled['target_met'] else 'NOT met'}")
    row(f"oracle ({ORACLES[out['world']]})", "analytic point mass", out["results"]["oracle"], "-")
    console.print(table)
    s = out["spread"]
    console.print(f"success over training seeds {s['train_seeds']}: {s['success_rate_min']:.1%} to "
                  f"{s['success_rate_max']:.1%} (mean {s['success_rate_mean']:.1%}, std {s['success_rate_std']:.1%})")
    ratio = out["success_ratio_to_oracle"]
    train_min = sum(m["train_s"] for m in out["models"]) / 60
    console.print(f"success ratio jepa (pooled) / oracle: {'-' if ratio is None else f'{ratio:.3f}'}; collect "
                  f"{out['collect_s']:.0f} s + train {train_min:.1f} min = {out['collect_s'] / 60 + train_min:.1f} min")
    labelled = [(suite(m), m["result"]) for m in out["models"]] + [("oracle", out["results"]["oracle"])]
    for label, r in labelled:
        if r["failures"] or r["seeds_with_violations"]:
            console.print(f"{label}: not reached {r['failures'][:30]}; with violations {r['seeds_with_violations'][:30]}")
        print_errors(console, label, r)
