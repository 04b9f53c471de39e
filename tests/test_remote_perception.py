"""A trained perception's `info` crosses processes: the frame-settings check runs under runtime=ray as locally.

The check (`amiagent.build.check_frames_match`, called by `run_episode` before anything moves) reads the
perception's `info["world_params"]`: how the frames it was trained on were drawn. Under runtime=ray the
perception is a proxy; its info is read from the served module when the proxy connects.
"""

from __future__ import annotations

import copy

import pytest

from amiagent.build import build_agent, build_world
from amiagent.config import load_config
from amiagent.errors import ConfigError
from amiagent.bus.remote import ModuleServer, RemotePerception
from amiagent.runtime.local import run_episode

pytestmark = pytest.mark.slow


def _config(checkpoint, runtime: str, *overrides: str) -> dict:
    return load_config(["agent=jepa", "world=open_field", f"runtime={runtime}", "world.params.camera=true",
                        f"agent.checkpoint={checkpoint}", "+agent.loop.lockstep=true", *overrides])


def _refusal(cfg: dict) -> str:
    """The ConfigError `run_episode` raises for `cfg`, under its runtime."""
    if cfg["runtime"]["name"] == "ray":
        from amiagent.runtime.ray import ray_agent

        runtime = copy.deepcopy(cfg["runtime"])
        runtime["supervision"]["backoff_s"] = 0.2
        agent = ray_agent(cfg["agent"], runtime)  # the shipped placement: every module in one Ray actor
    else:
        agent = build_agent(cfg["agent"])
    world = build_world(cfg["world"])
    try:
        with pytest.raises(ConfigError) as refused:
            run_episode(agent, world, 0)
        return str(refused.value)
    finally:
        agent.close()
        world.close()


def test_a_served_perception_gives_its_info(tiny_checkpoint):
    from amiagent.build import build_module

    cfg = _config(tiny_checkpoint, "local")
    local = build_module("perception", cfg["agent"]["perception"])
    with ModuleServer(local, "ipc://*") as server, RemotePerception(server.endpoint, timeout=30.0) as remote:
        assert remote.info["world_params"] == local.info["world_params"] and remote.info["world_params"]["camera"]
        assert set(remote.info) == set(local.info)  # all of it crosses (as plain data: tuples become lists)
        assert (remote.state_dim, remote.needs_images) == (local.state_dim, True)
    local.close()


@pytest.mark.timeout(300)
def test_mismatched_camera_settings_are_refused_alike_locally_and_under_ray(tiny_checkpoint, ray_cluster):
    overrides = ("world.params.camera_supersample=2",)
    local = _refusal(_config(tiny_checkpoint, "local", *overrides))
    assert "trained on frames with camera_supersample=1" in local and "world.params.camera_supersample=1" in local
    assert _refusal(_config(tiny_checkpoint, "ray", *overrides)) == local
