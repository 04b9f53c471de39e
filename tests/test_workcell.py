"""Tests of the workcell world and the arm body: real pybullet, no mocks.

Motions are scripted with resolved-rate control through the agent-side forward
kinematics (`amiagent.kinematics.Chain`), so the tests also pin that the body's
EE is the chain's last link frame.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from amiagent import registry

from amiagent.contracts import checks
from amiagent.contracts import Body, Observation, Task, World, WorldLayout
from amiagent.errors import AmiagentError, BodyError, ConfigError
from amiagent.sim.arm import KINDS, box_distance
from amiagent.sim.workcell import GOAL_HEIGHT, Workcell
from tests._arm import CHAIN, HOME, REACH, fk, jacobian, q_now, zone_and_table
from tests._worlds import world_maker

TRACK_Q, TRACK_V = 5e-5, 5e-4
"""Velocity tracking tolerances: rad per control step of a held command, and rad/s. Measured over 60 random
poses with commands of up to 1 rad/s (reversals included): at most 5.5e-6 rad and 4.9e-5 rad/s, the residual
of pybullet's iterative motor solve; 10x that keeps the tests off solver noise, and 5e-5 rad moves the EE by
about 50 um, below anything a planner notices."""

make = world_maker(Workcell)


# ---------------------------------------------------------------------------- task and scene


def test_task_observation_and_layout_have_the_agreed_format(make):
    world = make()
    task = world.reset(0)
    assert isinstance(task, Task) and task.name == "workcell"
    assert len(task.goal) == 3 and all(isinstance(g, float) for g in task.goal)
    assert task.goal_tolerance == 0.03 and task.max_steps == 150
    cons = task.constraints
    assert set(cons) == {"keep_out", "joint_limits", "ee_speed_limit"}
    assert set(cons["keep_out"]) == {"boxes"} and len(cons["keep_out"]["boxes"]) == 2  # the person, then the table
    assert all(len(b) == 6 and all(isinstance(v, float) for v in b) for b in cons["keep_out"]["boxes"])
    assert cons["joint_limits"] == {"lower": CHAIN.lower.tolist(), "upper": CHAIN.upper.tolist()}
    speed = cons["ee_speed_limit"]
    assert set(speed) == {"limit", "near", "boxes"} and (speed["limit"], speed["near"]) == (0.25, 0.15)
    assert speed["boxes"] == cons["keep_out"]["boxes"][:1]
    zone, table = zone_and_table(world)
    assert table[2] == table[5] and zone[2] == zone[5]  # both stand on the floor
    assert table[2] + table[5] < task.goal[2]
    obs = world.body.observe()
    assert isinstance(obs, Observation) and obs.t == 0.0
    assert obs.state.dtype == np.float64 and obs.state.shape == (14,)
    np.testing.assert_array_equal(obs.state, [*world.scene.start_q, *[0.0] * 7])
    assert np.array_equal(world.body.action_high, np.ones(7)) and np.array_equal(world.body.action_low, -np.ones(7))
    lay = world.layout()
    assert isinstance(lay, WorldLayout)
    assert lay.goal == task.goal[:2] and lay.start == world.scene.start_ee[:2]
    assert lay.walls == ((table[0], table[1], table[3], table[4]),) and lay.boxes == ((zone[0], zone[1], zone[3], zone[4]),)
    assert world.violations() == dict.fromkeys(KINDS, 0)


def test_scenes_start_clear_with_a_reachable_goal_over_the_table(make):
    world = make()
    kinds, goals = set(), set()
    near = world.params.ee_speed_near
    for seed in range(40):
        task = world.reset(seed)
        scene, body = world.scene, world.body
        zone, table = zone_and_table(world)
        top = table[2] + table[5]
        # start: within limits, links clear of zone (the world measured it at reset), EE 10 cm from everything
        start = np.array(scene.start_q)
        assert np.all(start >= body.lower) and np.all(start <= body.upper)
        assert world.min_clearance() >= 0.05
        np.testing.assert_allclose(fk(start), scene.start_ee, atol=1e-6)
        assert min(box_distance(scene.start_ee, zone), box_distance(scene.start_ee, table), scene.start_ee[2]) >= 0.1
        assert world.distance_to_goal() >= 0.3
        # goal: the EE of a configuration within limits, over the table, outside the speed-limited region
        goal_q = np.array(scene.goal_q)
        assert np.all(goal_q >= body.lower) and np.all(goal_q <= body.upper)
        np.testing.assert_allclose(fk(goal_q), task.goal, atol=1e-6)
        assert abs(task.goal[0] - table[0]) < table[3] and abs(task.goal[1] - table[1]) < table[4]
        assert top + GOAL_HEIGHT[0] <= task.goal[2] <= top + GOAL_HEIGHT[1]
        assert box_distance(task.goal, zone) >= near
        assert math.dist(task.goal, body.shoulder) < REACH
        # that configuration is clear of the zone and the table (pybullet's own distances)
        body.reset_joints(goal_q)
        for box_id, margin in ((world._zone_ids[0], 0.05), (world._table_id, 0.03)):
            assert all(pt[8] >= margin for pt in world.client.getClosestPoints(world._arm_id, box_id, 1.0))
        # the zone stands beside the table, not on it
        assert abs(zone[1] - table[1]) - zone[4] - table[4] >= 0.05 - 1e-9
        kinds.add(scene.across)
        goals.add(task.goal)
    assert kinds == {True, False} and len(goals) == 40


def test_goal_in_keep_out_moves_only_the_goal_into_the_zone(make):
    plain, inside = make(), make(goal_in_keep_out=True)
    for seed in range(8):
        a, b = plain.reset(seed), inside.reset(seed)
        zone = b.constraints["keep_out"]["boxes"][0]
        assert all(abs(b.goal[i] - zone[i]) <= zone[3 + i] - 0.03 + 1e-9 for i in range(3))  # well inside
        assert a.constraints == b.constraints and plain.scene.start_q == inside.scene.start_q
        assert inside.scene.goal_q is None


def test_goal_unreachable_lies_beyond_reach_outside_every_box(make):
    world = make(goal_unreachable=True)
    # the arm's reach, sampled: no configuration gets the EE further than REACH from the shoulder
    q = CHAIN.lower + (CHAIN.upper - CHAIN.lower) * torch.rand(4000, 7, generator=torch.Generator().manual_seed(0),
                                                                dtype=torch.float64)
    ee = CHAIN.forward(q)[:, -1, :3, 3]
    shoulder = torch.tensor(world.body.shoulder, dtype=torch.float64)
    assert float((ee - shoulder).norm(dim=1).max()) < REACH + 1e-6
    for seed in range(8):
        task = world.reset(seed)
        assert math.dist(task.goal, world.body.shoulder) >= 1.4
        assert all(box_distance(task.goal, b) > 0 for b in task.constraints["keep_out"]["boxes"])
        table = task.constraints["keep_out"]["boxes"][1]
        assert task.goal[2] > table[2] + table[5]
    with pytest.raises(ConfigError, match="exclude each other"):
        Workcell.Params(goal_in_keep_out=True, goal_unreachable=True)


# ---------------------------------------------------------------------------- body


def test_same_seed_and_commands_give_the_same_trajectory(make):
    a, b = make(), make()
    assert a.reset(3) == b.reset(3)
    commands = np.random.default_rng(0).uniform(-0.4, 0.4, size=(15, 7))
    ta, tb = [], []
    for cmd in commands:  # interleaved: each world has its own client
        for world, out in ((a, ta), (b, tb)):
            world.body.command(cmd)
            world.advance(world.dt)
            out.append(world.body.observe().state)
    assert np.array_equal(np.array(ta), np.array(tb))
    assert a.violations() == b.violations() and a.min_clearance() == b.min_clearance()
    a.reset(5)  # another episode in between changes nothing
    a.reset(3)
    again = []
    for cmd in commands:
        a.body.command(cmd)
        a.advance(a.dt)
        again.append(a.body.observe().state)
    assert np.array_equal(np.array(again), np.array(ta))


def test_velocity_tracking_is_the_commanded_integration(make):
    world = make()
    world.reset(0)
    world.body.reset_joints(HOME)
    rng = np.random.default_rng(1)
    for _ in range(8):
        q0 = q_now(world)
        cmd = rng.uniform(-1.0, 1.0, size=7)
        world.body.command(cmd)
        world.advance(world.dt)
        state = world.body.observe().state
        np.testing.assert_allclose(state[:7], q0 + cmd * world.dt, rtol=0, atol=TRACK_Q)
        np.testing.assert_allclose(state[7:], cmd, rtol=0, atol=TRACK_V)
    counts = world.violations()
    assert counts["keep_out"] == counts["table_contact"] == counts["joint_limits"] == counts["joint_speed"] == 0


def test_ee_is_the_chains_last_link_and_goal_speed_its_velocity(make):
    world = make()
    task = world.reset(1)
    world.body.command(np.full(7, 0.3))
    world.advance(0.2)  # still moving: within the watchdog
    state = world.body.observe().state
    position, velocity = world.ee()
    np.testing.assert_allclose(position, fk(state[:7]), atol=1e-6)
    np.testing.assert_allclose(velocity, jacobian(state[:7]) @ state[7:], atol=1e-6)
    assert world.distance_to_goal() == pytest.approx(math.dist(fk(state[:7]), task.goal), abs=1e-6)
    assert world.goal_speed() == pytest.approx(np.linalg.norm(velocity)) and world.goal_speed() > 0.05
    assert not world.at_goal()
    world.body.reset_joints(world.scene.goal_q)  # parked on the goal, at rest
    assert world.distance_to_goal() < 1e-6 and world.goal_speed() == 0.0 and world.at_goal()


@pytest.mark.parametrize(
    "bad",
    [[np.nan] + [0.0] * 6, [0.0] * 6 + [np.inf], [0.0] * 6, [0.0] * 8, "abcdefg", None, [[0.0] * 7], 1.0,
     [0.0] * 6 + ["x"], [True] * 7, [1j] * 7],
    ids=["nan", "inf", "shape6", "shape8", "string", "none", "shape1x7", "scalar", "mixed", "bool", "complex"],
)
def test_bad_commands_raise_and_nothing_reaches_pybullet(make, bad):
    world = make()
    world.reset(0)
    body = world.body
    sent = []
    real = body._set_motors

    def spy(*args, **kwargs):
        sent.append(kwargs["targetVelocities"])
        return real(*args, **kwargs)

    body._set_motors = spy
    good = [0.1, -0.1, 0.05, 0.0, 0.0, 0.1, -0.2]
    body.command(good)
    with pytest.raises(BodyError):
        body.command(bad)
    assert body.held_command == tuple(good)
    q0 = q_now(world)
    world.advance(world.dt)
    np.testing.assert_allclose(q_now(world), q0 + np.array(good) * world.dt, atol=TRACK_Q)
    assert sent == [tuple(good)]


def test_commands_are_clipped_to_the_velocity_bounds(make):
    world = make(max_joint_velocity=0.5)
    world.reset(0)
    body = world.body
    assert np.array_equal(body.action_high, np.full(7, 0.5))  # below the URDF's 10 rad/s
    body.reset_joints(HOME)
    body.command([5.0, -5.0, 0.2, 9.0, -0.1, 1e9, -1e9])
    assert body.held_command == (0.5, -0.5, 0.2, 0.5, -0.1, 0.5, -0.5)
    world.advance(world.dt)
    np.testing.assert_allclose(world.body.observe().state[7:], body.held_command, atol=TRACK_V)


def test_watchdog_stop_and_estop(make):
    world = make()
    world.reset(2)
    body = world.body
    body.reset_joints(HOME)
    cmd = np.array([0.4, -0.3, 0.2, 0.3, -0.2, 0.1, 0.5])
    body.command(cmd)
    world.advance(0.5)  # the command goes stale after watchdog_s = 0.25 s, and the joints stop
    state = body.observe().state
    np.testing.assert_allclose(state[:7], np.array(HOME) + cmd * 0.25, atol=TRACK_Q)
    assert np.abs(state[7:]).max() < TRACK_V
    body.command(cmd)
    body.stop()
    assert body.held_command is None
    world.advance(0.2)
    np.testing.assert_allclose(body.observe().state[:7], state[:7], atol=TRACK_Q)  # holds against gravity
    body.estop()
    body.command(cmd)  # ignored while latched, still validated
    assert body.held_command is None
    with pytest.raises(BodyError):
        body.command([np.nan] * 7)
    world.advance(0.2)
    np.testing.assert_allclose(body.observe().state[:7], state[:7], atol=TRACK_Q)
    body.release()
    body.command(cmd)
    world.advance(0.1)
    np.testing.assert_allclose(body.observe().state[:7], state[:7] + cmd * 0.1, atol=TRACK_Q)


# ---------------------------------------------------------------------------- contract


def test_world_contract_and_checker():
    world = registry.create("world", "workcell", {"max_steps": 50})
    try:
        assert isinstance(world, World) and isinstance(world, Workcell) and isinstance(world.body, Body)
        assert world.reset(0).max_steps == 50 and world.dt == 0.1 and world.substeps == 24
        checks.check_world(world)  # closes the world, twice
        with pytest.raises(BodyError, match="closed"):
            world.body.command(np.zeros(7))
        with pytest.raises(AmiagentError, match="closed"):
            world.reset(0)
    finally:
        world.close()
        world.close()


def test_params_are_validated_and_commands_before_reset_raise():
    with pytest.raises(ConfigError, match="control_dt"):
        Workcell.Params(control_dt=0.1003)
    with pytest.raises(ConfigError, match="ee_speed_limit"):
        Workcell.Params(ee_speed_limit=0.0)
    with pytest.raises(AmiagentError, match="unknown parameter"):
        registry.create("world", "workcell", {"ee_speed": 0.3})
    world = Workcell()
    try:
        with pytest.raises(BodyError, match="reset"):
            world.body.command(np.zeros(7))
        with pytest.raises(AmiagentError, match="reset"):
            world.advance(0.1)
    finally:
        world.close()


def test_gui_without_display_falls_back_to_direct(monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    world = Workcell(Workcell.Params(gui=True))
    try:
        assert "no DISPLAY" in caplog.text
    finally:
        world.close()
