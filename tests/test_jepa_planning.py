"""Planning in a learned latent space, from pixels: a JEPA the test trains on data it collects.

The model is small and briefly trained (about a minute here), so these are
tests of the whole path (camera -> encoder -> latent MPC -> safety filter on the
measured state -> body), not of the benchmark figures (`amiagent bench jepa`).
"""

from __future__ import annotations

import pytest
import torch

from amiagent.build import build_agent, build_world
from amiagent.collect import CollectConfig, collect, make_policy
from amiagent.config import load_config
from amiagent.errors import ConfigError
from amiagent.learning.jepa import JEPAConfig
from amiagent.learning.train import TrainConfig, train
from amiagent.runtime.local import run_episode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A JEPA trained for 200 steps on 60 reward-free open_field episodes of 60 steps."""
    root = tmp_path_factory.mktemp("jepa")
    world = build_world({"name": "open_field", "params": {"camera": True, "n_zones": 0}})
    try:
        collect(world, make_policy({"name": "noisy_expert"}),
                CollectConfig(episodes=60, steps=60, data=str(root / "data.h5"), progress=False))
    finally:
        world.close()
    # one thread, as the suite runs: the model (and so the episodes) depends on the float summation order
    result = train(root / "data.h5", root / "jepa.pt", JEPAConfig(latent_dim=8, keypoints=8),
                   TrainConfig(steps=200, batch=32, eval_every=100, probe_steps=100))
    assert result.final["val_probe_position_rmse"] < 0.5  # the latent knows where the robot is
    return root / "jepa.pt"


def _config(checkpoint, *overrides):
    return load_config(["agent=jepa", "world=open_field", "runtime=local", "world.params.camera=true",
                        f"agent.checkpoint={checkpoint}", "+agent.loop.lockstep=true", *overrides])


@pytest.mark.parametrize("seed", [3, 11])
def test_latent_planning_reaches_an_image_goal_around_a_keep_out_zone_without_violations(checkpoint, seed):
    cfg = _config(checkpoint, "world.params.n_zones=1", "world.params.max_steps=150")
    agent, world = build_agent(cfg["agent"]), build_world(cfg["world"])
    try:
        episode = run_episode(agent, world, seed)
        # the goal the agent planned toward is the goal image's embedding, not the task's coordinates
        goal_probe = torch.tensor(agent.task_settings.goal[:2])
        assert torch.dist(goal_probe, torch.tensor(world.task.goal)) < 0.5
    finally:
        agent.close()
        world.close()
    assert episode.status == "reached", episode
    assert sum(episode.violations.values()) == 0, episode.violations


def test_without_a_goal_image_the_agent_says_what_is_missing(checkpoint):
    cfg = _config(checkpoint)
    cfg["world"]["params"]["camera"] = False
    agent, world = build_agent(cfg["agent"]), build_world(cfg["world"])
    try:
        with pytest.raises(ConfigError, match="camera"):
            run_episode(agent, world, 0)
    finally:
        agent.close()
        world.close()


@pytest.mark.parametrize("setting", ["camera_supersample=2", "image_size=32", "camera_zones=true"])
def test_frames_drawn_otherwise_than_the_training_data_are_refused(checkpoint, setting):
    cfg = _config(checkpoint, f"world.params.{setting}")
    agent, world = build_agent(cfg["agent"]), build_world(cfg["world"])
    name = setting.split("=")[0]
    try:
        with pytest.raises(ConfigError, match=f"trained on frames with {name}=.* set world.params.{name}="):
            run_episode(agent, world, 0)
    finally:
        agent.close()
        world.close()


def test_a_measured_state_safety_filter_needs_its_own_model(checkpoint):
    cfg = _config(checkpoint)
    del cfg["agent"]["safety"]["world_model"]
    with pytest.raises(ConfigError, match="measured needs agent.safety.world_model"):
        build_agent(cfg["agent"])
