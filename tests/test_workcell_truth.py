"""The workcell's ground truth: keep-out, table contact, EE speed near the zone, joint limits and speeds,
each counted per physics substep from pybullet's own state (real pybullet, no mocks)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from amiagent.sim.arm import HARD_STOP_MARGIN, JOINT_LIMIT_SLACK, ArmTruth, box_distance
from amiagent.sim.workcell import Workcell
from tests._arm import move_ee, q_now, toward_zone, zone_and_table
from tests._worlds import world_maker

make = world_maker(Workcell)


def test_sweeping_the_arm_into_the_person_zone_counts_keep_out(make):
    world = make()
    world.reset(4)
    zone, _ = zone_and_table(world)
    world.body.reset_joints(world.scene.goal_q)  # over the table, clear of everything
    move_ee(world, toward_zone(zone, 0.2), 40, until=lambda w: box_distance(w.ee()[0], zone) == 0.0)
    assert box_distance(world.ee()[0], zone) == 0.0
    counts = world.violations()
    assert counts["keep_out"] > 0 and world.min_clearance() < 0
    world.body.stop()
    before = counts["keep_out"]
    world.advance(world.dt)  # holding inside the zone violates every substep
    assert world.violations()["keep_out"] == before + world.substeps


def test_pressing_on_the_table_counts_table_contact(make):
    world = make()
    world.reset(6)
    _, table = zone_and_table(world)
    world.body.reset_joints(world.scene.goal_q)  # EE 0.12-0.45 m over the table
    down = [0.0, 0.0, -0.15]
    move_ee(world, down, 40, until=lambda w: w.violations()["table_contact"] > 0)
    touched = world.violations()["table_contact"]
    assert touched > 0
    move_ee(world, down, 5)  # pressing on: every substep is in contact
    counts = world.violations()
    assert counts["table_contact"] == touched + 5 * world.substeps
    assert world.ee()[0][2] > table[2] + table[5] - 0.05  # the table is solid: the arm rests on it
    assert counts["keep_out"] == counts["joint_limits"] == 0


@pytest.mark.parametrize("speed, fast", [(0.1, False), (0.6, True)])
def test_a_fast_ee_near_the_zone_counts_ee_speed(make, speed, fast):
    world = make()
    world.reset(4)
    zone, _ = zone_and_table(world)
    world.body.reset_joints(world.scene.goal_q)
    move_ee(world, toward_zone(zone, speed), 60, until=lambda w: box_distance(w.ee()[0], zone) < 0.07)
    world.body.stop()
    world.advance(world.dt)
    assert box_distance(world.ee()[0], zone) < 0.1  # it did get near
    counts = world.violations()
    if fast:
        assert counts["ee_speed"] > 0 and world.max_ee_speed_near() > 0.25
    else:
        assert counts["ee_speed"] == 0 and 0.05 < world.max_ee_speed_near() < 0.25


def test_driving_past_a_joint_limit_counts_joint_limits_until_the_hard_stop(make):
    world = make()
    world.reset(0)
    body = world.body
    q0 = q_now(world)
    upper, h = body.upper[6], 1.0 / world.params.physics_hz
    cmd = np.zeros(7)
    cmd[6] = 1.0  # the last joint only turns the flange: nothing else moves
    steps = math.ceil((upper + HARD_STOP_MARGIN - q0[6]) / world.dt) + 3
    for _ in range(steps):
        body.command(cmd)
        world.advance(world.dt)
    # exact tracking: substep k ends at q0 + k h until the hard stop catches the joint
    first = math.floor((upper + JOINT_LIMIT_SLACK - q0[6]) / h) + 1
    assert world.violations()["joint_limits"] == pytest.approx(steps * world.substeps - first + 1, abs=1)
    assert q_now(world)[6] == pytest.approx(upper + HARD_STOP_MARGIN, abs=2e-3)
    assert world.violations()["joint_speed"] == 0


def test_truth_counts_joint_speed_and_ee_speed_per_substep():
    zone = (1.0, 0.0, 0.5, 0.1, 0.1, 0.5)
    truth = ArmTruth([-1.0] * 7, [1.0] * 7, [1.0] * 7, (zone,), limit=0.25, near=0.15)
    q, still = [0.0] * 7, [0.0] * 7
    far, near = (0.0, 0.0, 0.5), (0.8, 0.0, 0.5)
    truth.update(q, [0.0] * 6 + [1.0005], 0.5, False, far, (0.0, 0.0, 0.0))  # within the slack
    truth.update(q, [0.0] * 6 + [1.01], 0.5, False, far, (0.0, 0.0, 0.0))
    truth.update(q, still, 0.5, False, far, (1.0, 0.0, 0.0))  # fast, but far from the zone
    truth.update(q, still, 0.5, False, near, (0.2, 0.0, 0.1))  # near, 0.22 m/s
    truth.update(q, still, 0.5, False, near, (0.3, 0.0, 0.0))
    truth.update([0.0] * 6 + [1.0 + 2 * JOINT_LIMIT_SLACK], still, -0.01, True, far, (0.0, 0.0, 0.0))
    assert truth.counts == {"keep_out": 1, "table_contact": 1, "joint_limits": 1, "joint_speed": 1, "ee_speed": 1}
    assert truth.min_clearance == -0.01 and truth.max_ee_speed_near == pytest.approx(0.3)
