"""`amiagent train`: a JEPA world model from collected episodes, into a checkpoint that resumes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from amiagent.cli import common
from amiagent.errors import AmiagentError


def add_parser(sub: Any) -> None:
    """Register `amiagent train`."""
    common.config_command(
        sub, "train", main, "train a JEPA world model on collected episodes (world_model=jepa data=PATH out=PATH)",
        "data=data/open_field.h5 out=models/open_field.pt world_model.model.regularizer=sigreg "
        "world_model.train.max_minutes=10",
        description="Trains the encoder, predictor and probe of world_model=jepa on the episodes in `data` (from "
                    "amiagent collect) into the checkpoint `out`, with loss curves and collapse diagnostics in "
                    "<out>.metrics.csv and <out>.png. Running it again on the same `out` resumes up to "
                    "world_model.train.steps; resume=false starts afresh.")


def main(args: argparse.Namespace) -> int:
    """Train (or resume) the model and report its held-out figures."""
    from amiagent.cli.schema import TrainCommand, WorldModelSection
    from amiagent.config import load_config, to_yaml, typed
    from amiagent.learning.jepa import JEPAConfig
    from amiagent.learning.train import TrainConfig, train

    cfg = load_config(args.overrides, config_name="train")
    if args.cfg:
        print(to_yaml(cfg))
        return 0
    spec = cfg["world_model"]
    typed(WorldModelSection, spec, "world_model", sections=WorldModelSection.SECTIONS, root=cfg)
    model_cfg = typed(JEPAConfig, spec.get("model"), "world_model.model", root=cfg)
    train_cfg = typed(TrainConfig, spec.get("train"), "world_model.train", root=cfg)
    command = typed(TrainCommand, cfg, sections=TrainCommand.SECTIONS)
    if not Path(command.data).exists():
        raise AmiagentError(f"no data file at {command.data}: collect one with `amiagent collect world=... "
                            f"data={command.data}`")
    console = common.console()
    out = Path(command.out)
    with common.progress(console, command.progress) as progress:
        bar = progress.add_task(f"train jepa on {command.data}", total=train_cfg.steps, status="")

        def on_step(step: int, steps: int, parts: dict) -> None:
            progress.update(bar, completed=step, status=f"loss {parts['loss']:.4f}")

        result = train(command.data, out, model_cfg, train_cfg, progress=on_step, resume=command.resume)
    final = result.final
    console.print(f"{result.checkpoint}: {result.steps} steps in {result.seconds / 60:.1f} min; held-out "
                  f"prediction {final['val_prediction']:.4g} (copy-last baseline {final['val_copy_baseline']:.4g}), "
                  f"effective rank {final['val_effective_rank']:.1f} of {model_cfg.latent_dim}, "
                  f"min per-dim std {final['val_std_min']:.3f}, probe position RMSE "
                  f"{final['val_probe_position_rmse']:.3f} m")
    console.print(f"metrics: {out.with_suffix('.metrics.csv')}, plot: {out.with_suffix('.png')}")
    return 0
