"""Tests of the pybullet worlds and the point robot: real physics, no mocks."""

from __future__ import annotations

import numpy as np
import pytest

from amiagent import registry
from amiagent.contracts import Body, Observation, Task, World, WorldLayout
from amiagent.errors import AmiagentError, BodyError, ConfigError
from amiagent.sim.geometry import segment_distance, zone_gap, zone_sd
from amiagent.sim.worlds import OpenField, TwoRooms
from tests._worlds import world_maker

WORLDS = {"open_field": OpenField, "two_rooms": TwoRooms}


make = world_maker()


def reference(state: np.ndarray, accels: np.ndarray, h: float, substeps: int) -> np.ndarray:
    """The semi-implicit double integrator the agent's world model uses: (K, 4) states after each step."""
    pos, vel = state[:2].copy(), state[2:].copy()
    out = []
    for a in accels:
        for _ in range(substeps):
            vel = vel + a * h
            pos = pos + vel * h
        out.append(np.concatenate([pos, vel]))
    return np.array(out)


def drive(world, accels) -> np.ndarray:
    """Command each acceleration for one control step; (K, 4) observed states after each."""
    states = []
    for a in accels:
        world.body.command(a)
        world.advance(world.dt)
        states.append(world.body.observe().state)
    return np.array(states)


def state(world) -> np.ndarray:
    return world.body.observe().state


def divider(layout: WorldLayout) -> list:
    """The two segments of the two_rooms dividing wall, lower first."""
    return sorted((w for w in layout.walls if w[0] == 0.0 and abs(w[1]) < 3.0), key=lambda w: w[1])


# ---------------------------------------------------------------------------- physics


def test_robot_is_the_reference_double_integrator(make):
    world = make(OpenField, n_zones=0)
    world.reset(0)
    rng = np.random.default_rng(1)
    h, substeps = 1.0 / world.params.physics_hz, world.substeps
    for trial in range(5):
        world.reset(trial)
        drive(world, [rng.uniform(-2.0, 2.0, size=2)])  # a random initial velocity
        start = state(world)
        assert np.abs(start[2:]).max() > 0.01
        accels = rng.uniform(-2.0, 2.0, size=(20, 2))
        # keep the run inside the arena: the test is about free motion
        accels[10:] = -accels[:10]
        got = drive(world, accels)
        want = reference(start, accels, h, substeps)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        assert world.violations()["bounds"] == 0


def test_observation_is_time_and_state(make):
    world = make(OpenField)
    task = world.reset(4)
    obs = world.body.observe()
    assert isinstance(obs, Observation)
    assert obs.t == 0.0 and obs.state.dtype == np.float64 and obs.state.shape == (4,)
    assert np.array_equal(obs.state, np.array([*world.layout().start, 0.0, 0.0]))
    world.advance(world.dt)
    assert world.body.observe().t == pytest.approx(world.dt)
    assert task.goal == world.layout().goal


def test_same_seed_same_task_and_trajectory_in_two_live_worlds(make):
    a, b = make(TwoRooms, n_zones=2), make(TwoRooms, n_zones=2)
    assert a.reset(7) == b.reset(7)
    assert a.layout() == b.layout()
    accels = np.random.default_rng(2).uniform(-2.0, 2.0, size=(30, 2))
    # interleave the two worlds: each has its own pybullet client
    ta, tb = [], []
    for act in accels:
        ta.append(drive(a, [act])[0])
        tb.append(drive(b, [act])[0])
    assert np.array_equal(np.array(ta), np.array(tb))
    assert a.violations() == b.violations()
    # a reset reproduces the run bit for bit
    a.reset(7)
    assert np.array_equal(drive(a, accels), np.array(ta))
    assert a.reset(8) != a.reset(7)


@pytest.mark.parametrize("cls", [OpenField, TwoRooms])
def test_different_seeds_different_tasks(make, cls):
    world = make(cls, n_zones=1)
    tasks = [world.reset(seed) for seed in range(5)]
    assert len({t.goal for t in tasks}) == 5


# ---------------------------------------------------------------------------- zones


def test_open_field_zones_block_the_straight_line_and_leave_room(make):
    world = make(OpenField, n_zones=3)
    r = world.params.robot_radius
    for seed in range(20):
        world.reset(seed)
        lay = world.layout()
        zones = [*lay.circles, *lay.boxes]
        assert len(zones) == 3
        for i, z in enumerate(zones):
            assert segment_distance(z[:2], lay.start, lay.goal) <= 0.3 + 1e-9
            assert lay.start[0] < z[0] < lay.goal[0]
            assert zone_sd(*lay.start, z) >= r + 0.4 and zone_sd(*lay.goal, z) >= r + 0.4
            # the straight line crosses the zone: the agent must go around
            line = np.linspace(lay.start, lay.goal, 400)
            assert min(zone_sd(x, y, z) for x, y in line) < 0
            for other in zones[i + 1:]:
                assert zone_gap(z, other) >= 2 * r + 0.1 - 1e-9
        assert lay.circles or lay.boxes


@pytest.mark.parametrize("cls", [OpenField, TwoRooms])
def test_goal_in_keep_out_puts_the_goal_inside_a_zone(make, cls):
    world = make(cls, n_zones=2, goal_in_keep_out=True)
    for seed in range(5):
        task = world.reset(seed)
        keep_out = task.constraints["keep_out"]
        inside = [z for z in keep_out["circles"] + keep_out["boxes"] if zone_sd(*task.goal, z) < 0]
        assert inside


def test_two_rooms_has_a_door_and_reports_walls_as_keep_out(make):
    world = make(TwoRooms)
    task = world.reset(3)
    lay = world.layout()
    low, high = divider(lay)
    assert low[2] == high[2] == pytest.approx(0.1)
    door = (high[1] - high[3]) - (low[1] + low[3])
    assert door == pytest.approx(1.2)
    assert [list(w) for w in (low, high)] == task.constraints["keep_out"]["boxes"]  # no zones by default
    assert len(lay.walls) == 6
    assert lay.start[0] < 0 < lay.goal[0]


# ---------------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    "bad", [[np.nan, 0.0], [0.0, np.inf], [1.0, 2.0, 3.0], "ab", None, [[1.0, 2.0]], [1.0, "x"], 1.0, [True, False]],
    ids=["nan", "inf", "shape3", "string", "none", "shape1x2", "mixed", "scalar", "bool"],
)
def test_bad_commands_raise_and_change_nothing(make, bad):
    world = make(OpenField, n_zones=0)
    world.reset(0)
    world.body.command([1.0, -0.5])
    with pytest.raises(BodyError):
        world.body.command(bad)
    assert world.body.held_command == (1.0, -0.5)
    world.advance(world.dt)
    want = reference(np.array([*world.layout().start, 0, 0]), np.array([[1.0, -0.5]]), 1 / 240, 24)[0]
    np.testing.assert_allclose(state(world), want, atol=1e-9)


def test_commands_are_clipped_to_the_bounds(make):
    world = make(OpenField, n_zones=0)
    world.reset(0)
    body = world.body
    assert np.array_equal(body.action_low, [-2.0, -2.0]) and np.array_equal(body.action_high, [2.0, 2.0])
    body.command(np.array([10.0, -7.0]))
    assert body.held_command == (2.0, -2.0)
    world.advance(world.dt)
    np.testing.assert_allclose(state(world)[2:], [0.2, -0.2], atol=1e-12)


def test_commands_before_reset_or_after_close_raise():
    world = OpenField()
    with pytest.raises(BodyError, match="reset"):
        world.body.command([0.0, 0.0])
    with pytest.raises(AmiagentError, match="reset"):
        world.advance(0.1)
    world.reset(0)
    world.close()
    with pytest.raises(BodyError, match="closed"):
        world.body.command([0.0, 0.0])
    with pytest.raises(AmiagentError, match="closed"):
        world.reset(0)


# ---------------------------------------------------------------------------- watchdog, stop, e-stop


def test_watchdog_brakes_a_stale_command_to_rest(make):
    world = make(OpenField, n_zones=0)
    world.reset(0)
    world.body.command([1.0, 0.0])
    world.advance(0.25)  # exactly the watchdog: the command is still fresh throughout
    assert state(world)[2] == pytest.approx(0.25, abs=1e-9)
    world.advance(0.1)  # stale now: brakes at 2 m/s^2
    assert state(world)[2] == pytest.approx(0.05, abs=1e-9)
    world.advance(0.1)
    rest = state(world)
    assert np.abs(rest[2:]).max() < 1e-12
    world.advance(1.0)  # stays put
    np.testing.assert_allclose(state(world), rest, atol=1e-12)


def test_stop_brakes_along_a_straight_line_and_holds(make):
    world = make(OpenField, n_zones=0)
    world.reset(0)
    world.body.command([2.0, 1.0])
    world.advance(0.2)
    v0 = state(world)[2:]
    np.testing.assert_allclose(v0, [0.4, 0.2], atol=1e-9)
    world.body.stop()
    assert world.body.held_command is None
    world.advance(0.1)
    np.testing.assert_allclose(state(world)[2:], [0.2, 0.1], atol=1e-9)  # same direction, half speed
    world.advance(0.2)
    rest = state(world)
    assert np.abs(rest[2:]).max() < 1e-12
    world.advance(0.5)
    np.testing.assert_allclose(state(world), rest, atol=1e-12)
    world.body.command([0.0, 1.0])  # a new command moves it again
    world.advance(0.1)
    assert state(world)[3] == pytest.approx(0.1, abs=1e-9)


def test_estop_latches_until_release(make):
    world = make(OpenField, n_zones=0)
    world.reset(0)
    body = world.body
    body.command([2.0, 0.0])
    world.advance(0.1)
    body.estop()
    assert body.estopped
    for _ in range(5):
        body.command([2.0, 0.0])  # ignored
        assert body.held_command is None
        world.advance(0.1)
    rest = state(world)
    assert np.abs(rest[2:]).max() < 1e-12
    with pytest.raises(BodyError):
        body.command([np.nan, 0.0])  # still validated while latched
    body.release()
    assert not body.estopped
    world.advance(0.2)
    np.testing.assert_allclose(state(world), rest, atol=1e-12)  # holds until the next command
    body.command([1.0, 0.0])
    world.advance(0.1)
    assert state(world)[2] == pytest.approx(0.1, abs=1e-9)


# ---------------------------------------------------------------------------- ground truth


def waypoint_controller(world, waypoints, vmax=0.8, max_steps=400) -> None:
    """Drive through `waypoints` with a speed-capped velocity tracker (a scripted driver, no planning)."""
    i = 0
    for _ in range(max_steps):
        x, y, vx, vy = state(world)
        wx, wy = waypoints[i]
        err = np.array([wx - x, wy - y])
        if np.linalg.norm(err) < 0.1 and i < len(waypoints) - 1:
            i += 1
            continue
        v_des = err * 1.5
        n = np.linalg.norm(v_des)
        if n > vmax:
            v_des *= vmax / n
        world.body.command(np.clip(4.0 * (v_des - [vx, vy]), -2.0, 2.0))
        world.advance(world.dt)
        if i == len(waypoints) - 1 and world.at_goal() and np.hypot(vx, vy) < 0.05:
            return


def test_driving_straight_through_the_zones_counts_keep_out(make):
    world = make(OpenField, n_zones=2)
    task = world.reset(5)
    waypoint_controller(world, [task.goal])
    assert world.at_goal()  # zones have no collision: the robot drove through
    counts = world.violations()
    assert counts["keep_out"] > 0
    assert world.min_clearance() < 0
    assert counts["speed"] == counts["wall_contact"] == counts["bounds"] == 0


def test_driving_too_fast_counts_speed(make):
    world = make(OpenField, n_zones=0)
    world.reset(0)
    drive(world, [[2.0, 0.0]] * 10)  # 2 m/s after 1 s
    assert world.max_speed() == pytest.approx(2.0)
    # 1.5 m/s * (1 + 1e-3) is crossed after 0.7508 s: substeps 181..240 violate
    assert world.violations()["speed"] == 60


def test_leaving_the_arena_counts_bounds(make):
    world = make(OpenField, n_zones=0)
    world.reset(0)
    drive(world, [[-2.0, 0.0]] * 20)
    assert world.violations()["bounds"] > 0


def test_driving_into_the_wall_counts_contact_and_the_wall_stops_the_robot(make):
    world = make(TwoRooms)
    r = world.params.robot_radius
    for seed in range(50):  # a seed whose start faces a wall segment, not the door
        world.reset(seed)
        lay = world.layout()
        if any(abs(lay.start[1] - w[1]) < w[3] - r - 0.1 for w in divider(lay)):
            break
    else:
        pytest.fail("no seed in 0..49 starts in front of a wall segment")
    xs = drive(world, [[1.0, 0.0]] * 40)[:, 0]
    face = -0.1 - r
    assert xs.max() <= face + 1e-3  # never through the wall
    assert xs[-1] == pytest.approx(face, abs=1e-3)  # pressed against it
    counts = world.violations()
    assert counts["wall_contact"] > 0
    assert counts["keep_out"] == counts["bounds"] == 0


def test_a_run_through_the_door_counts_nothing(make):
    world = make(TwoRooms)
    task = world.reset(11)
    lay = world.layout()
    low, high = divider(lay)
    door_y = (low[1] + low[3] + high[1] - high[3]) / 2
    waypoint_controller(world, [(-1.2, door_y), (1.2, door_y), task.goal])
    assert world.at_goal()
    assert world.violations() == {"keep_out": 0, "wall_contact": 0, "speed": 0, "bounds": 0}


# ---------------------------------------------------------------------------- contract


@pytest.mark.parametrize("name", sorted(WORLDS))
def test_world_contract(name):
    world = registry.create("world", name, {"max_steps": 50})
    try:
        assert isinstance(world, World) and isinstance(world.body, Body)
        assert isinstance(world, WORLDS[name])
        task = world.reset(0)
        assert isinstance(task, Task) and task.name == name
        assert len(task.goal) == 2 and task.max_steps == 50
        cons = task.constraints
        assert set(cons) == {"keep_out", "speed_limit", "workspace_bounds"}
        assert cons["speed_limit"] == {"limit": 1.5}
        assert cons["workspace_bounds"]["robot_radius"] == cons["keep_out"]["robot_radius"] == 0.2
        for key in ("circles", "boxes"):
            assert all(isinstance(v, float) for z in cons["keep_out"][key] for v in z)
        assert isinstance(world.layout(), WorldLayout)
        assert world.dt == 0.1 and world.body.observe().state.shape == (4,)
        assert world.violations() == {"keep_out": 0, "wall_contact": 0, "speed": 0, "bounds": 0}
        assert world.distance_to_goal() > task.goal_tolerance and not world.at_goal()
    finally:
        world.close()
        world.close()
        world.body.close()


def test_params_are_validated():
    with pytest.raises(ConfigError, match="control_dt"):
        OpenField.Params(control_dt=0.1003)
    with pytest.raises(ConfigError, match="max_accel"):
        OpenField.Params(max_accel=-1.0)
    with pytest.raises(ConfigError, match="goal_in_keep_out"):
        OpenField.Params(n_zones=0, goal_in_keep_out=True)
    with pytest.raises(ConfigError, match="door_width"):
        TwoRooms.Params(door_width=0.3)
    with pytest.raises(AmiagentError, match="unknown parameter"):
        registry.create("world", "open_field", {"n_zone": 2})


def test_gui_without_display_falls_back_to_direct(monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    world = OpenField(OpenField.Params(gui=True))
    try:
        assert "no DISPLAY" in caplog.text
        world.reset(0)
    finally:
        world.close()
