"""`amiagent distill`: a Mode-1 policy distilled from the Mode-2 agent's plans (with DAgger rounds)."""

from __future__ import annotations

import argparse
from typing import Any

from amiagent.cli import common


def add_parser(sub: Any) -> None:
    """Register `amiagent distill`."""
    common.config_command(
        sub, "distill", main,
        "distil a Mode-1 policy from the Mode-2 agent's plans (agent=... world=... episodes=N out=PATH)",
        "world=open_field episodes=40 out=models/mode1-open_field.pt distill.epochs=300",
        description="Runs `episodes` seeded Mode-2 episodes (seeds seed, seed+1, ...; runtime local, lockstep), "
                    "records each cycle's state, goal and plan, and fits a policy network to the plans by behaviour "
                    "cloning (validation split by episode) into `out`, with the loss per epoch in <out>.metrics.csv "
                    "and <out>.png. Act with it alone through agent=mode1, or as the Mode-2 actor's warm start "
                    "(agent.actor.params.proposal).")


def main(args: argparse.Namespace) -> int:
    """Record the plans, fit the policy, report each round."""
    import torch

    from amiagent.cli.launch import check_agent
    from amiagent.cli.schema import DistillCommand
    from amiagent.config import load_config, to_yaml, typed
    from amiagent.learning.distill import DistillConfig, distill

    cfg = load_config(args.overrides, config_name="distill")
    if args.cfg:
        print(to_yaml(cfg))
        return 0
    command = typed(DistillCommand, cfg, sections=DistillCommand.SECTIONS)
    check_agent(cfg)
    config = typed(DistillConfig, {**(cfg.get("distill") or {}), "episodes": command.episodes, "seed": command.seed},
                   "distill", root=cfg)
    torch.set_num_threads(command.torch_threads or torch.get_num_threads())
    console = common.console()
    label = f"{cfg['agent']['name']} in {cfg['world']['name']}"
    with common.progress(console, command.progress) as progress:
        record = progress.add_task(f"record Mode-2 plans: {label}", total=config.total_episodes, status="")
        fit = progress.add_task("fit Mode-1 policy", total=config.epochs * (config.dagger_rounds + 1), status="")

        def on_episode(done: int, total: int, status: str) -> None:
            driver = "Mode 2 drives" if done <= config.episodes else "Mode 1 drives (DAgger)"
            progress.update(record, completed=done, status=f"{driver}: {status}")

        def on_epoch(epoch: int, epochs: int, row: dict) -> None:
            progress.update(fit, completed=epoch, status=f"round {row['round']}: loss {row['train_loss']:.4f}, "
                                                        f"validation {row['val_loss']:.4f}")

        result = distill(cfg["agent"], cfg["world"], config, command.out, on_episode=on_episode, on_epoch=on_epoch)
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
