"""The navigator in open_field: seeded episodes with keep-out zones between start and goal.

Real pybullet, the shipped config, the local runtime. Success rates come from
seeded episodes; violations are the world's own ground truth.
"""

from __future__ import annotations

import pytest

from amiagent.build import build_agent, build_world
from amiagent.runtime.local import run_episode

SEEDS = (28, 35, 19, 18, 12, 16, 25, 10)
"""The hard seeds of 0..39: the five longest detours (70-75 steps) and the three nearest passes by a zone.
The success rate over many seeds is the benchmark's: `amiagent bench hierarchy --worlds open_field` runs
200 seeded episodes."""


@pytest.fixture
def navigator(navigator_config):
    def make(**world_params):
        navigator_config["world"]["params"].update(world_params)
        return build_agent(navigator_config["agent"]), build_world(navigator_config["world"])
    return make


@pytest.mark.slow
def test_reaches_goals_around_keep_out_zones(navigator):
    """The shipped navigator gets around the zones without a ground-truth violation on the hard seeds (a
    machinery check; the benchmark measures the success rate)."""
    agent, world = navigator()
    try:
        episodes = [run_episode(agent, world, seed) for seed in SEEDS]
    finally:
        agent.close()
        world.close()
    reached = sum(e.success for e in episodes)
    violated = {e.seed: e.violations for e in episodes if e.total_violations}
    failed = {e.seed: (e.status, round(e.final_distance, 2)) for e in episodes if not e.success}
    assert len(episodes) == len(SEEDS)
    assert violated == {}, f"ground-truth violations: {violated}"
    assert reached >= 0.95 * len(SEEDS), f"reached {reached}/{len(SEEDS)}; failures: {failed}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_goal_inside_keep_out_is_reported_infeasible(navigator, seed):
    agent, world = navigator(goal_in_keep_out=True)
    try:
        episode = run_episode(agent, world, seed)
        task_goal = world.task.goal
        constraints = world.task.constraints["keep_out"]
    finally:
        agent.close()
        world.close()
    assert not episode.goal_feasible
    assert episode.status == "infeasible_goal", episode.summary()
    assert episode.total_violations == 0, episode.violations
    # it stopped short: outside the zone, but nearer the goal than it started
    assert episode.final_distance > 0
    assert episode.min_clearance > 0
    assert episode.final_distance < 1.5, (task_goal, constraints, episode.final_distance)
