"""Planning in a learned latent space, from pixels: camera -> encoder -> latent MPC -> safety filter on the
measured state -> body.

Most tests run on tiny models trained in seconds (the shared `tiny_checkpoint` in open_field, and one
trained here in two_rooms) and assert what holds whatever the model learned: the goal is the goal image's
encoding, every cycle plans, plans and latents are finite, and the filter on the measured state lets no
violation through. One test trains a small model of the benchmark's kind and asserts the progress such a
model measurably makes, never one seed's arrival: success rates are `amiagent bench jepa`'s.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from amiagent.bench.jepa import AGENT_OVERRIDES
from amiagent.build import build_agent, build_world
from amiagent.learning.collect import CollectConfig, collect, make_policy
from amiagent.config import load_config
from amiagent.errors import ConfigError
from amiagent.learning.jepa import JEPAConfig
from amiagent.learning.train import TrainConfig, train
from amiagent.runtime.local import Episode, run_episode
from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.slow


def _config(checkpoint, *overrides, world="open_field"):
    return load_config(["agent=jepa", f"world={world}", "runtime=local", "world.params.camera=true",
                        f"agent.checkpoint={checkpoint}", "+agent.loop.lockstep=true", *overrides])


def _run(cfg: dict, seed: int) -> tuple[Episode, dict]:
    """One lock-step episode, and what the agent planned toward: its goal, and perception's encoding of the
    task's goal image, start and goal positions, the action bound."""
    agent, world = build_agent(cfg["agent"]), build_world(cfg["world"])
    try:
        episode = run_episode(agent, world, seed)
        task, layout = world.task, world.layout()
        seen = {"goal": agent.task_settings.goal,
                "goal_image": tuple(agent.modules.perception.encode(task.goal_observation)[0].tolist()),
                "start": layout.start, "task_goal": task.goal, "max_accel": world.params.max_accel}
    finally:
        agent.close()
        world.close()
    return episode, seen


def _assert_plans_every_cycle_within_the_guardrails(episode: Episode, seen: dict, steps: int) -> None:
    # the goal is perception's encoding of the goal image, [probe(z), z], not the task's coordinates
    assert seen["goal"] == seen["goal_image"] and len(seen["goal"]) > len(seen["task_goal"])
    assert all(math.isfinite(g) for g in seen["goal"])
    assert episode.steps == steps  # never near the goal in so few steps: every cycle ran
    assert episode.sources["plan"] == steps  # lock-step: each cycle sent a fresh plan's action
    latents = np.array([c.state for c in episode.cycles])
    actions = np.array([c.action for c in episode.cycles])
    assert np.isfinite(latents).all() and latents.shape[1] == len(seen["goal"])
    assert np.isfinite(actions).all() and np.abs(actions).max() <= seen["max_accel"]
    assert all(math.isfinite(c.cost) for c in episode.cycles)
    # the model may be wrong; the filter checks every action on the measured state with the analytic model
    assert episode.total_violations == 0, episode.violations


def test_latent_planning_plans_every_cycle_toward_the_goal_image_and_breaks_no_guardrail(tiny_checkpoint):
    cfg = _config(tiny_checkpoint, "world.params.n_zones=1", "world.params.max_steps=12")
    episode, seen = _run(cfg, 0)
    _assert_plans_every_cycle_within_the_guardrails(episode, seen, 12)


@pytest.fixture(scope="module")
def two_rooms_checkpoint(tmp_path_factory):
    """The tiny JEPA trained for 10 steps on 8 reward-free two_rooms episodes of 20 steps (about 3 s), frames
    drawn as the shipped world config draws them."""
    root = tmp_path_factory.mktemp("two_rooms")
    world_cfg = load_config(["world=two_rooms"], config_name="collect")["world"]
    world_cfg["params"]["camera"] = True
    world = build_world(world_cfg)
    try:
        collect(world, make_policy({"name": "noisy_expert"}),
                CollectConfig(episodes=8, steps=20, data=str(root / "data.h5"), progress=False))
    finally:
        world.close()
    train(root / "data.h5", root / "jepa.pt", JEPAConfig(**TINY_MODEL),
          TrainConfig(steps=10, batch=16, eval_every=10, checkpoint_every=10, probe_steps=1))
    return root / "jepa.pt"


def test_planning_from_pixels_in_two_rooms_plans_every_cycle_and_breaks_no_guardrail(two_rooms_checkpoint):
    """The benchmark's two_rooms agent settings (geodesic distance round the wall on the probe's reading)."""
    cfg = _config(two_rooms_checkpoint, "world.params.max_steps=8", *AGENT_OVERRIDES["two_rooms"], world="two_rooms")
    episode, seen = _run(cfg, 0)
    _assert_plans_every_cycle_within_the_guardrails(episode, seen, 8)
    assert episode.violations["wall_contact"] == 0


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    """A JEPA of the shipped architecture (8-D latent, 8 keypoints) trained for 200 steps on 60 reward-free
    open_field episodes of 60 steps (20-30 s here): the cheapest recipe measured to pass the test below on
    every training seed tried (0-5). Cheaper ones did not: with 120 steps or batch 16 some seeds' agents ended
    further from the goal, or under 1 m nearer; with 30 episodes of 40 steps one read a goal image 0.77 m off."""
    root = tmp_path_factory.mktemp("jepa")
    world = build_world({"name": "open_field", "params": {"camera": True, "n_zones": 0}})
    try:
        collect(world, make_policy({"name": "noisy_expert"}),
                CollectConfig(episodes=60, steps=60, data=str(root / "data.h5"), progress=False))
    finally:
        world.close()
    train(root / "data.h5", root / "jepa.pt", JEPAConfig(latent_dim=8, keypoints=8),
          TrainConfig(steps=200, batch=32, eval_every=50, probe_steps=100))
    return root / "jepa.pt"


@pytest.mark.timeout(360)  # the training above, on a loaded 2-core machine
@pytest.mark.parametrize("seed", [0, 1])
def test_a_briefly_trained_model_reads_the_goal_image_and_plans_toward_it(trained_checkpoint, seed):
    """What such a model measurably does, on any training seed: measured with training seeds 0-5 (the same
    data) and episode seeds 0-3, 30 steps, one zone; not whether it arrives."""
    cfg = _config(trained_checkpoint, "world.params.n_zones=1", "world.params.max_steps=30")
    episode, seen = _run(cfg, seed)
    _assert_plans_every_cycle_within_the_guardrails(episode, seen, 30)
    # the probe reads the goal image near the task's goal: 0.29 m at most over 20 goal images for each of
    # the 6 trained models (mean 0.06-0.14 m); 0.6 m is twice that
    assert float(torch.dist(torch.tensor(seen["goal"][:2]), torch.tensor(seen["task_goal"]))) < 0.6
    # 30 planned steps bring the body closer to the goal: by 2.1-4.4 m in all 24 measured episodes (it starts
    # 6.6-8.0 m away; 4.5 m is the most 3 s at 1.5 m/s allow); 1.0 m is under half the least of them
    start = float(np.linalg.norm(np.subtract(seen["start"], seen["task_goal"])))
    assert start - episode.final_distance > 1.0, (start, episode.final_distance)


def test_without_a_goal_image_the_agent_says_what_is_missing(tiny_checkpoint):
    cfg = _config(tiny_checkpoint)
    cfg["world"]["params"]["camera"] = False
    agent, world = build_agent(cfg["agent"]), build_world(cfg["world"])
    try:
        with pytest.raises(ConfigError, match="camera"):
            run_episode(agent, world, 0)
    finally:
        agent.close()
        world.close()


@pytest.mark.parametrize("setting", ["camera_supersample=2", "image_size=32", "camera_zones=true"])
def test_frames_drawn_otherwise_than_the_training_data_are_refused(tiny_checkpoint, setting):
    cfg = _config(tiny_checkpoint, f"world.params.{setting}")
    agent, world = build_agent(cfg["agent"]), build_world(cfg["world"])
    name = setting.split("=")[0]
    try:
        with pytest.raises(ConfigError, match=f"trained on frames with {name}=.* set world.params.{name}="):
            run_episode(agent, world, 0)
    finally:
        agent.close()
        world.close()


def test_a_measured_state_safety_filter_needs_its_own_model(tiny_checkpoint):
    cfg = _config(tiny_checkpoint)
    del cfg["agent"]["safety"]["world_model"]
    with pytest.raises(ConfigError, match="measured needs agent.safety.world_model"):
        build_agent(cfg["agent"])
