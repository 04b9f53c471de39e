"""Tests of the `maze` world: seeded floorplans (pure geometry) and real pybullet episodes."""

from __future__ import annotations

import numpy as np
import pytest

from amiagent import registry

from amiagent.contracts import checks
from amiagent.config import load_config
from amiagent.errors import AmiagentError, ConfigError
from amiagent.sim.geometry import box_sd, zone_gap, zone_sd
from amiagent.sim.maze import DOOR_MARGIN, Floorplan, Maze, draw_floorplan
from amiagent.sim.worlds import WALL_THICKNESS
from tests._worlds import world_maker
from tests.test_sim import drive, waypoint_controller

SWEEP = range(200)
SHAPES = {
    "default": {},
    "long_hall": {"rows": 2, "cols": 5, "extra_doors": 0, "min_doors": 4, "door_width": 0.8},
    "big_loopy": {"rows": 4, "cols": 4, "extra_doors": 5, "room_size": 2.5, "min_doors": 3},
}


make = world_maker(Maze)


def plan(seed: int, **params) -> Floorplan:
    return draw_floorplan(np.random.default_rng(seed), Maze.Params(**params))


def rooms(fp: Floorplan) -> set:
    return {(r, c) for r in range(fp.rows) for c in range(fp.cols)}


def room_path(fp: Floorplan) -> list:
    """Rooms from start to goal through the fewest doors."""
    to_goal = fp.door_distances(fp.goal_room)
    path = [fp.start_room]
    while path[-1] != fp.goal_room:
        here = path[-1]
        through = [a if b == here else b for a, b in (d.rooms for d in fp.doors) if here in (a, b)]
        path.append(min(through, key=to_goal.__getitem__))
    return path


# ---------------------------------------------------------------------------- floorplans (no physics)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_room_is_reachable_and_start_and_goal_are_min_doors_apart(shape):
    prm = Maze.Params(**SHAPES[shape])
    for seed in SWEEP:
        fp = draw_floorplan(np.random.default_rng(seed), prm)
        assert len(fp.doors) == prm.rows * prm.cols - 1 + prm.extra_doors
        assert len({d.rooms for d in fp.doors}) == len(fp.doors)
        for (r0, c0), (r1, c1) in (d.rooms for d in fp.doors):
            assert abs(r0 - r1) + abs(c0 - c1) == 1  # doors join grid neighbours only
        dist = fp.door_distances(fp.start_room)
        assert set(dist) == rooms(fp), f"seed {seed}: rooms unreachable from the start"
        assert dist[fp.goal_room] >= prm.min_doors


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_start_and_goal_are_in_their_rooms_and_clear_of_walls(shape):
    prm = Maze.Params(**SHAPES[shape])
    need = prm.robot_radius + 0.3
    for seed in SWEEP:
        fp = draw_floorplan(np.random.default_rng(seed), prm)
        walls = fp.interior_walls() + fp.outer_walls()
        for point, room in ((fp.start, fp.start_room), (fp.goal, fp.goal_room)):
            assert box_sd(*point, fp.room_box(room)) < 0
            assert min(box_sd(*point, w) for w in walls) >= need - 1e-9


def test_walls_are_cut_exactly_at_the_doors():
    for seed in range(20):
        fp = plan(seed, extra_doors=3)
        walls, w = fp.interior_walls(), fp.door_width
        (xmin, xmax), (ymin, ymax) = fp.bounds
        for door in fp.doors:
            cx, cy = door.centre
            # the opening is free of walls, and its edges end on a wall segment
            assert min(box_sd(cx, cy, wall) for wall in walls) == pytest.approx(w / 2)
            # DOOR_MARGIN from the faces of the walls crossing its wall's ends
            along, lo = (cy, ymin) if door.vertical else (cx, xmin)
            offset = (along - lo) % fp.room_size
            assert WALL_THICKNESS / 2 + DOOR_MARGIN + w / 2 - 1e-9 <= offset
            assert offset <= fp.room_size - WALL_THICKNESS / 2 - DOOR_MARGIN - w / 2 + 1e-9
        # each grid line is its segments plus its doors, end to end
        height, width = ymax - ymin, xmax - xmin
        vertical = sum(2 * wall[3] for wall in walls if wall[2] == WALL_THICKNESS / 2)
        horizontal = sum(2 * wall[2] for wall in walls if wall[3] == WALL_THICKNESS / 2)
        n_vertical = sum(d.vertical for d in fp.doors)
        assert vertical + n_vertical * w == pytest.approx((fp.cols - 1) * height)
        assert horizontal + (len(fp.doors) - n_vertical) * w == pytest.approx((fp.rows - 1) * width)


def test_some_episodes_need_long_detours():
    detours = []
    for seed in SWEEP:
        fp = plan(seed)
        grid = abs(fp.start_room[0] - fp.goal_room[0]) + abs(fp.start_room[1] - fp.goal_room[1])
        detours.append(fp.door_distances(fp.start_room)[fp.goal_room] - grid)
    detours = np.array(detours)
    assert (detours >= 0).all()  # doors join neighbours: never shorter than the grid distance
    assert (detours > 0).mean() > 0.15  # often the way round ...
    assert detours.max() >= 4  # ... and sometimes a long one


def test_same_seed_same_floorplan_different_seeds_different_layouts():
    assert plan(3) == plan(3)
    doors = {tuple(d.rooms for d in plan(seed).doors) for seed in range(30)}
    assert len(doors) >= 25
    assert len({plan(seed).interior_walls()[0] for seed in range(30)}) == 30


# ---------------------------------------------------------------------------- episodes (pybullet)


def test_same_seed_same_scene_and_reset_rebuilds(make):
    a, b = make(n_zones=1), make(n_zones=1)
    task = a.reset(9)
    assert b.reset(9) == task and a.layout() == b.layout() and a.floorplan == b.floorplan
    bodies = a.client.getNumBodies()
    assert a.reset(10) != task and a.layout() != b.layout()
    assert a.reset(9) == task and a.layout() == b.layout()
    assert a.client.getNumBodies() == bodies  # rebuilt from scratch, nothing left over
    accels = np.random.default_rng(0).uniform(-2.0, 2.0, size=(10, 2))
    assert np.array_equal(drive(a, accels), drive(b, accels))


def test_task_reports_every_interior_wall_as_keep_out(make):
    world = make()
    for seed in range(3):
        task = world.reset(seed)
        lay, fp = world.layout(), world.floorplan
        (xmin, xmax), (ymin, ymax) = lay.bounds
        inner = [w for w in lay.walls if xmin < w[0] < xmax and ymin < w[1] < ymax]
        assert len(inner) == len(lay.walls) - 4 and inner == fp.interior_walls()
        assert task.constraints["keep_out"]["boxes"] == [list(w) for w in inner]  # no zones by default
        assert task.constraints["keep_out"]["circles"] == []
        assert task.constraints["workspace_bounds"] == {"low": [xmin, ymin], "high": [xmax, ymax],
                                                        "robot_radius": 0.2}
        assert lay.bounds == ((-4.5, 4.5), (-4.5, 4.5))
        assert task.max_steps == 600 and task.goal == lay.goal == fp.goal and lay.start == fp.start


def test_driving_into_a_wall_counts_contact_and_the_wall_stops_the_robot(make):
    world = make()
    r = world.params.robot_radius
    for seed in range(50):  # a start whose room has a solid wall to its east at the start's height
        world.reset(seed)
        fp = world.floorplan
        (row, col), y = fp.start_room, fp.start[1]
        east = [d for d in fp.doors if d.rooms == ((row, col), (row, col + 1))]
        if col + 1 < fp.cols and all(abs(y - d.centre[1]) > fp.door_width / 2 + r + 0.1 for d in east):
            break
    else:
        pytest.fail("no seed in 0..49 starts facing a solid wall to the east")
    face = fp.room_box(fp.start_room)[0] + fp.room_size / 2 - WALL_THICKNESS / 2 - r
    xs = drive(world, [[1.0, 0.0]] * 40)[:, 0]
    assert xs.max() <= face + 1e-3  # never through the wall
    assert xs[-1] == pytest.approx(face, abs=1e-3)  # pressed against it
    counts = world.violations()
    assert counts["wall_contact"] > 0
    assert counts["keep_out"] == counts["bounds"] == 0


def test_a_run_through_the_doors_reaches_the_goal_and_counts_nothing(make):
    world = make()
    task = world.reset(4)
    fp = world.floorplan
    path = room_path(fp)
    assert len(path) - 1 == fp.door_distances(fp.start_room)[fp.goal_room] >= 2
    waypoints = []
    for a, b in zip(path, path[1:]):
        door = next(d for d in fp.doors if set(d.rooms) == {a, b})
        axis = 1 if door.vertical else 0  # grid index that changes through this door
        sign = b[axis] - a[axis]
        for side in (-0.7, 0.7):  # in front of the door, then past it
            shift = (side * sign, 0.0) if door.vertical else (0.0, side * sign)
            waypoints.append((door.centre[0] + shift[0], door.centre[1] + shift[1]))
    waypoints.append(task.goal)
    # the keep-out boxes leave the doors open: the straight legs between waypoints clear every one
    boxes, legs = task.constraints["keep_out"]["boxes"], [fp.start, *waypoints]
    along = [np.linspace(p, q, 50) for p, q in zip(legs, legs[1:])]
    assert min(box_sd(x, y, b) for leg in along for x, y in leg for b in boxes) >= world.params.robot_radius + 0.1
    waypoint_controller(world, waypoints, vmax=0.5, max_steps=1500)
    assert world.at_goal()
    assert world.violations() == {"keep_out": 0, "wall_contact": 0, "speed": 0, "bounds": 0}


# ---------------------------------------------------------------------------- zones


def test_zones_keep_clear_of_walls_doors_start_and_goal(make):
    world = make(n_zones=2)
    r = world.params.robot_radius
    for seed in range(5):
        task = world.reset(seed)
        lay, fp = world.layout(), world.floorplan
        zones = [*lay.circles, *lay.boxes]
        assert len(zones) == 2
        for zone in zones:
            assert min(zone_gap(zone, w) for w in lay.walls) >= 2 * r + 0.1 - 1e-9
            assert all(zone_sd(*d.centre, zone) >= 2 * r + 0.1 for d in fp.doors)
            assert zone_sd(*lay.start, zone) >= r + 0.4 and zone_sd(*lay.goal, zone) >= r + 0.4
        assert len(task.constraints["keep_out"]["boxes"]) == len(fp.interior_walls()) + len(lay.boxes)


def test_goal_in_keep_out_puts_the_goal_inside_a_zone(make):
    world = make(n_zones=1, goal_in_keep_out=True)
    for seed in range(3):
        task = world.reset(seed)
        keep_out = task.constraints["keep_out"]
        assert [z for z in keep_out["circles"] + keep_out["boxes"] if zone_sd(*task.goal, z) < 0]


# ---------------------------------------------------------------------------- params, registry, checker


@pytest.mark.parametrize(("params", "match"), [
    ({"door_width": 0.6}, r"door_width must be in \(2 \* robot_radius \+ 0.2"),
    ({"door_width": 2.3}, "door_width .* got 2.3; widen room_size"),
    ({"robot_radius": 0.45}, "door_width"),  # the default door is too narrow for a big robot
    ({"rows": 0}, "rows must be a whole number in"),
    ({"cols": 2.5}, "cols must be a whole number"),
    ({"rows": True}, "rows must be a whole number"),
    ({"rows": 1, "cols": 1, "min_doors": 1, "extra_doors": 0}, "at least 2 rooms"),
    ({"room_size": float("nan")}, "room_size must be a finite number"),
    ({"extra_doors": 5}, r"extra_doors must be a whole number in \[0, 4\]"),
    ({"rows": 1, "cols": 4, "extra_doors": 1}, r"extra_doors .*\[0, 0\]"),
    ({"min_doors": 5}, r"min_doors must be a whole number in \[1, 4\]"),
    ({"min_doors": 0}, "min_doors"),
    ({"n_zones": 3}, r"n_zones must be at most one per 4 rooms \(rows \* cols // 4 = 2\)"),
    ({"n_zones": 1, "room_size": 2.5}, "room_size must be at least 3 m with keep-out zones"),
    ({"goal_in_keep_out": True}, "goal_in_keep_out needs n_zones >= 1"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_params_raise_config_error_naming_the_bound(params, match):
    with pytest.raises(ConfigError, match=match):
        Maze.Params(**params)


def test_shipped_config_builds_the_registered_maze_and_passes_the_world_checker():
    cfg = load_config(["world=maze", "runtime=local"])["world"]
    world = registry.create("world", cfg["name"], cfg["params"])
    try:
        assert isinstance(world, Maze) and world.params == Maze.Params()
        checks.check_world(world)
    finally:
        world.close()
    with pytest.raises(AmiagentError, match="min_doors must be a whole number in"):
        registry.create("world", "maze", {"min_doors": 9})


# ---------------------------------------------------------------------------- agents (whole episodes)


@pytest.mark.slow
@pytest.mark.parametrize(("agent_name", "seed"), [("hierarchical", 1), ("navigator", 0)])
def test_an_agent_crosses_the_maze_room_by_room_through_doors_in_lockstep(agent_name, seed):
    """A whole lock-step episode of a shipped agent in the shipped maze with two keep-out zones. The models are
    analytic and every plan is waited for, so the episode depends on the seed alone."""
    from amiagent.build import build_agent, build_world
    from amiagent.runtime.local import run_episode

    cfg = load_config([f"agent={agent_name}", "world=maze", "runtime=local", "world.params.n_zones=2",
                       "+agent.loop.lockstep=true"])
    agent, world = build_agent(cfg["agent"]), build_world(cfg["world"])
    try:
        episode = run_episode(agent, world, seed)
        fp, zones = world.floorplan, world.layout().circles + world.layout().boxes
    finally:
        agent.close()
        world.close()
    assert len(zones) == 2
    assert episode.status == "reached", episode.summary()
    assert episode.violations == {"keep_out": 0, "wall_contact": 0, "speed": 0, "bounds": 0}
    assert episode.min_clearance > 0
    assert episode.sources["plan"] == episode.steps  # lock-step: every cycle sent a fresh plan's action
    actions = np.array([c.action for c in episode.cycles])
    assert np.isfinite(actions).all() and np.abs(actions).max() <= world.params.max_accel
    # the rooms the body passed through, in order: each move joins two rooms by one of their doors
    (xmin, _), (ymin, _) = fp.bounds
    rooms = [(int((y - ymin) // fp.room_size), int((x - xmin) // fp.room_size)) for x, y, *_ in
             (c.state for c in episode.cycles)]
    visited = [room for i, room in enumerate(rooms) if i == 0 or room != rooms[i - 1]]
    assert visited[0] == fp.start_room and visited[-1] == fp.goal_room
    doors = {frozenset(d.rooms) for d in fp.doors}
    assert all(frozenset(pair) in doors for pair in zip(visited, visited[1:]))
    assert len(visited) - 1 >= fp.door_distances(fp.start_room)[fp.goal_room] >= world.params.min_doors
