"""`amiagent collect`: reward-free episodes (camera frames, states, actions) into an HDF5 file."""

from __future__ import annotations

import argparse
from typing import Any

from amiagent.cli import common
from amiagent.errors import AmiagentError


def add_parser(sub: Any) -> None:
    """Register `amiagent collect`."""
    common.config_command(
        sub, "collect", main,
        "reward-free episodes into an HDF5 file (world=... policy=random|noisy_expert episodes=N data=PATH)",
        "world=two_rooms policy=noisy_expert episodes=200 policy.params.noise=0.5",
        description="Runs `episodes` seeded episodes (seeds seed, seed+1, ...) of `steps` control steps with a "
                    "scripted policy and the world's top-down camera on, and writes frames, states and actions to "
                    "`data` (HDF5, see amiagent.learning.collect). Running it again resumes the file; overwrite=true starts "
                    "it afresh.")


def main(args: argparse.Namespace) -> int:
    """Collect the episodes into the file, resuming it."""
    from amiagent import registry
    from amiagent.build import build_world
    from amiagent.learning.collect import CollectConfig, collect, make_policy, supports_collect
    from amiagent.config import load_config, to_yaml, typed

    cfg = load_config(args.overrides, config_name="collect")
    config = typed(CollectConfig, cfg, sections=("world", "policy"))
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
    console = common.console()
    label = f"collect {policy.name} in {world_name}"
    world = build_world(cfg["world"])
    try:
        with common.progress(console, config.progress) as progress, common.sigterm_interrupts():
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
