"""The `maze` world: a seeded grid of rooms joined by doors, with long detours.

Layout: `rows` x `cols` square rooms of side `room_size`, the whole grid
centred on the origin, so x in [-cols * room_size / 2, cols * room_size / 2]
and y likewise with `rows`. Room (row, col) counts rows up from the lowest y
and columns right from the lowest x. Neighbouring rooms share a wall 0.2 m
thick and 0.5 m high, centred on the grid line; outer walls stand just outside
the bounds, as in `two_rooms`.

Doors: a randomized depth-first search over the grid of rooms opens one door
per tree edge (a spanning tree: every room is reachable, corridors wind), then
`extra_doors` more openings between rooms not yet joined make loops. Each door
is a gap of `door_width` at a seeded place along its shared wall, at least
DOOR_MARGIN from the faces of the walls crossing at its ends.

Start and goal: a start room and a goal room drawn uniformly among the pairs
at least `min_doors` doors apart (breadth-first search over the doors), then a
uniform point in each, robot_radius + 0.3 m clear of every wall face. Some
pairs are neighbours on the grid but many doors apart: the long detours.

Frames and units: world frame, z up, metres and seconds, as in
`amiagent.sim.worlds`. The task reports every interior wall segment as a
keep-out box (outer walls are covered by workspace_bounds); ground truth counts
touching a wall as `wall_contact`. Optional keep-out zones (`n_zones`, none by
default) sit inside rooms, clear of the walls and of the space in front of each
door; with nearly every link a door they may not fit, and reset raises
ConfigError (lower n_zones). Everything is drawn from the episode's seed
in a fixed order (floorplan, start and goal, zones): the same seed gives the
same scene, and every reset rebuilds the simulation from scratch.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from amiagent.errors import ConfigError
from amiagent.sim.geometry import Point, Rect, sample_zones
from amiagent.sim.plane import WALL_THICKNESS, Bounds, PybulletWorld, Scene, SimParams

Room = tuple[int, int]
"""(row, col) of a room: row 0 at the lowest y, col 0 at the lowest x."""

DOOR_MARGIN = 0.3
"""Least distance (m) from a door's edge to the face of a wall crossing its wall's end."""

WALL_CLEARANCE = 0.3
"""Least distance (m) from the robot disc at start or goal to any wall face."""

MAX_ROOMS = 20
"""Most rooms along either axis (every reset builds each wall segment in pybullet)."""

DOORWAY_DEPTH = 0.6
"""Half-depth (m) across the wall of the box in front of a door that keep-out zones stay clear of."""


@dataclass(frozen=True)
class Door:
    """An opening between two neighbouring rooms: `rooms` (lower first) and its `centre` (x, y) in m."""

    rooms: tuple[Room, Room]
    centre: Point

    @property
    def vertical(self) -> bool:
        """Whether the door is in a wall along y (between columns) rather than along x (between rows)."""
        return self.rooms[0][0] == self.rooms[1][0]


@dataclass(frozen=True)
class Floorplan:
    """One seed's rooms, doors, start and goal; pure geometry, no simulator.

    `room_size`, `door_width` in m; `doors` sorted by their rooms; `start`,
    `goal`: points (m) in `start_room` and `goal_room`.
    """

    rows: int
    cols: int
    room_size: float
    door_width: float
    doors: tuple[Door, ...]
    start_room: Room
    goal_room: Room
    start: Point
    goal: Point

    @property
    def bounds(self) -> Bounds:
        """((xmin, xmax), (ymin, ymax)) of the grid, centred on the origin."""
        hx, hy = self.cols * self.room_size / 2, self.rows * self.room_size / 2
        return ((-hx, hx), (-hy, hy))

    def room_box(self, room: Room) -> Rect:
        """(cx, cy, hx, hy) of a room between its wall centre lines."""
        (xmin, _), (ymin, _) = self.bounds
        s = self.room_size
        return (xmin + (room[1] + 0.5) * s, ymin + (room[0] + 0.5) * s, s / 2, s / 2)

    def door_distances(self, room: Room) -> dict[Room, int]:
        """Fewest doors from `room` to every room it reaches."""
        return door_distances(self.doors, room)

    def interior_walls(self) -> list[Rect]:
        """Wall segments between rooms as boxes (cx, cy, hx, hy): each grid line minus its doors."""
        (xmin, xmax), (ymin, ymax) = self.bounds
        s, half_w, half_t = self.room_size, self.door_width / 2, WALL_THICKNESS / 2
        walls: list[Rect] = []
        for k in range(1, self.cols):  # lines x = const, between columns k - 1 and k
            x = xmin + k * s
            gaps = [d.centre[1] for d in self.doors if d.vertical and d.rooms[1][1] == k]
            for lo, hi in _solid(ymin, ymax, gaps, half_w):
                walls.append((x, (lo + hi) / 2, half_t, (hi - lo) / 2))
        for k in range(1, self.rows):  # lines y = const, between rows k - 1 and k
            y = ymin + k * s
            gaps = [d.centre[0] for d in self.doors if not d.vertical and d.rooms[1][0] == k]
            for lo, hi in _solid(xmin, xmax, gaps, half_w):
                walls.append(((lo + hi) / 2, y, (hi - lo) / 2, half_t))
        return walls

    def outer_walls(self) -> list[Rect]:
        """The four walls just outside the bounds."""
        (xmin, xmax), (ymin, ymax) = self.bounds
        t, half_t = WALL_THICKNESS, WALL_THICKNESS / 2
        hx, hy = (xmax - xmin) / 2, (ymax - ymin) / 2
        return [
            (xmin - half_t, 0.0, half_t, hy + t), (xmax + half_t, 0.0, half_t, hy + t),
            (0.0, ymin - half_t, hx + t, half_t), (0.0, ymax + half_t, hx + t, half_t),
        ]


def door_distances(doors: tuple[Door, ...], room: Room) -> dict[Room, int]:
    """Fewest doors from `room` to every room (breadth-first search); unreachable rooms are absent."""
    links: dict[Room, list[Room]] = {}
    for door in doors:
        a, b = door.rooms
        links.setdefault(a, []).append(b)
        links.setdefault(b, []).append(a)
    dist, queue = {room: 0}, deque([room])
    while queue:
        here = queue.popleft()
        for there in links.get(here, ()):
            if there not in dist:
                dist[there] = dist[here] + 1
                queue.append(there)
    return dist


def _solid(lo: float, hi: float, gap_centres: list[float], half_w: float) -> list[tuple[float, float]]:
    """The stretches of [lo, hi] left once gaps of half-width `half_w` are cut at `gap_centres`."""
    stretches, at = [], lo
    for c in sorted(gap_centres):
        stretches.append((at, c - half_w))
        at = c + half_w
    stretches.append((at, hi))
    return [(a, b) for a, b in stretches if b - a > 1e-9]


def grid_links(rows: int, cols: int) -> list[tuple[Room, Room]]:
    """Every pair of neighbouring rooms, lower room first, in row-major order."""
    links = []
    for r in range(rows):
        for c in range(cols):
            if c + 1 < cols:
                links.append(((r, c), (r, c + 1)))
            if r + 1 < rows:
                links.append(((r, c), (r + 1, c)))
    return links


def spanning_tree(rng: np.random.Generator, rows: int, cols: int) -> list[tuple[Room, Room]]:
    """A random spanning tree of the room grid by depth-first search (long winding corridors)."""
    first = (int(rng.integers(rows)), int(rng.integers(cols)))
    seen, stack, tree = {first}, [first], []
    while stack:
        r, c = stack[-1]
        fresh = [n for n in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
                 if 0 <= n[0] < rows and 0 <= n[1] < cols and n not in seen]
        if not fresh:
            stack.pop()
            continue
        nxt = fresh[int(rng.integers(len(fresh)))]
        tree.append((min(stack[-1], nxt), max(stack[-1], nxt)))
        seen.add(nxt)
        stack.append(nxt)
    return tree


def draw_floorplan(rng: np.random.Generator, prm: Maze.Params) -> Floorplan:
    """Doors, start and goal for one episode, drawn from `rng` (see the module docstring)."""
    rows, cols, s, w = prm.rows, prm.cols, prm.room_size, prm.door_width
    xmin, ymin = -cols * s / 2, -rows * s / 2
    # doors: a spanning tree, then extra links that make loops
    tree = spanning_tree(rng, rows, cols)
    joined = set(tree)
    others = [link for link in grid_links(rows, cols) if link not in joined]
    extra = [others[int(i)] for i in rng.choice(len(others), size=prm.extra_doors, replace=False)]
    # each door's centre slides along its wall, DOOR_MARGIN + w / 2 clear of the crossing walls' faces
    reach = s / 2 - WALL_THICKNESS / 2 - DOOR_MARGIN - w / 2
    opened = []
    for a, b in sorted(tree + extra):
        along = float(rng.uniform(-reach, reach))
        if a[0] == b[0]:  # side by side: the wall runs along y on the line between their columns
            centre = (xmin + b[1] * s, ymin + (a[0] + 0.5) * s + along)
        else:
            centre = (xmin + (a[1] + 0.5) * s + along, ymin + b[0] * s)
        opened.append(Door(rooms=(a, b), centre=centre))
    doors = tuple(opened)
    # start and goal rooms: uniform among the ordered pairs at least min_doors apart
    rooms = [(r, c) for r in range(rows) for c in range(cols)]
    pairs = [(a, b) for a in rooms for b, n in sorted(door_distances(doors, a).items()) if n >= prm.min_doors]
    start_room, goal_room = pairs[int(rng.integers(len(pairs)))]
    # a uniform point in each, clear of every wall face
    clear = WALL_THICKNESS / 2 + prm.robot_radius + WALL_CLEARANCE

    def point_in(room: Room) -> Point:
        cx, cy = xmin + (room[1] + 0.5) * s, ymin + (room[0] + 0.5) * s
        return (float(rng.uniform(cx - s / 2 + clear, cx + s / 2 - clear)),
                float(rng.uniform(cy - s / 2 + clear, cy + s / 2 - clear)))

    start, goal = point_in(start_room), point_in(goal_room)
    return Floorplan(rows=rows, cols=cols, room_size=s, door_width=w, doors=doors,
                     start_room=start_room, goal_room=goal_room, start=start, goal=goal)


def _int_in(name: str, value, low: int, high: float, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be a whole number in [{low}, {high}]{why}, got {value!r}")


class Maze(PybulletWorld):
    """A seeded grid of rooms joined by doors; start and goal rooms at least `min_doors` doors apart.

    See the module docstring for the layout. After `reset`, `floorplan` holds
    the episode's rooms and doors (None before).
    """

    name = "maze"

    @dataclass(frozen=True)
    class Params(SimParams):
        """SimParams plus the maze's shape; `n_zones` defaults to 0, `max_steps` to 600.

        `rows`, `cols`: rooms along y and x. `room_size`: side of a room (m),
        wall centre line to wall centre line. `door_width`: opening (m), more
        than 2 * robot_radius + 0.2 and at most room_size - 0.2 - 2 * 0.3 (the
        wall thickness and DOOR_MARGIN at both ends). `extra_doors`: openings
        beyond the spanning tree, each makes a loop. `min_doors`: fewest doors
        between the start and goal rooms, at most rows + cols - 2 (the far
        corners are always that many apart). `n_zones`: at most one per 4
        rooms, and only in rooms wide enough for the largest zone with a
        passage all round it (3 m for robot_radius 0.2).
        """

        max_steps: int = 600
        n_zones: int = 0
        rows: int = 3
        cols: int = 3
        room_size: float = 3.0
        door_width: float = 1.0
        extra_doors: int = 1
        min_doors: int = 2

        def __post_init__(self) -> None:
            super().__post_init__()
            _int_in("rows", self.rows, 1, MAX_ROOMS)
            _int_in("cols", self.cols, 1, MAX_ROOMS)
            if self.rows * self.cols < 2:
                raise ConfigError(f"a maze needs at least 2 rooms, got rows * cols = {self.rows} * {self.cols}")
            if not (isinstance(self.room_size, (int, float)) and math.isfinite(self.room_size)
                    and self.room_size > 0):
                raise ConfigError(f"room_size must be a finite number > 0, got {self.room_size!r}")
            low, high = 2 * self.robot_radius + 0.2, self.room_size - WALL_THICKNESS - 2 * DOOR_MARGIN
            if not (isinstance(self.door_width, (int, float)) and math.isfinite(self.door_width)
                    and low < self.door_width <= high):
                raise ConfigError(
                    f"door_width must be in (2 * robot_radius + 0.2, room_size - {WALL_THICKNESS + 2 * DOOR_MARGIN:g}]"
                    f" m = ({low:g}, {high:g}], got {self.door_width!r}; widen room_size or narrow the door"
                )
            loops = len(grid_links(self.rows, self.cols)) - (self.rows * self.cols - 1)
            _int_in("extra_doors", self.extra_doors, 0, loops, f" (the links a {self.rows} x {self.cols} tree leaves)")
            _int_in("min_doors", self.min_doors, 1, self.rows + self.cols - 2, " (rows + cols - 2 at most)")
            if self.n_zones > self.rows * self.cols // 4:
                raise ConfigError(f"n_zones must be at most one per 4 rooms (rows * cols // 4 = "
                                  f"{self.rows * self.cols // 4}), got {self.n_zones}")
            # the largest zone (0.9 m half-size) must fit in a room with a robot's passage all round it
            fits = WALL_THICKNESS + 2 * (2 * self.robot_radius + 0.1) + 2 * 0.9
            if self.n_zones > 0 and self.room_size < fits - 1e-9:
                raise ConfigError(f"room_size must be at least {fits:g} m with keep-out zones (robot_radius "
                                  f"{self.robot_radius}), got {self.room_size}; enlarge the rooms or set n_zones: 0")

    def __init__(self, params: Maze.Params | None = None):
        super().__init__(params)
        self.floorplan: Floorplan | None = None

    def _draw(self, rng: np.random.Generator) -> Scene:
        prm: Maze.Params = self.params
        plan = draw_floorplan(rng, prm)
        inner = plan.interior_walls()
        # zones keep off walls and off the space in front of each door
        doorways = [(*d.centre, DOORWAY_DEPTH, prm.door_width / 2) if d.vertical
                    else (*d.centre, prm.door_width / 2, DOORWAY_DEPTH) for d in plan.doors]
        rules = self._rules(plan.bounds, (plan.start, plan.goal), obstacles=(*inner, *doorways))
        rooms = [(r, c) for r in range(prm.rows) for c in range(prm.cols)]
        # centres only where random_zone's smallest shape (0.3 m half-size) could keep `gap` from the walls
        reach = prm.room_size / 2 - WALL_THICKNESS / 2 - rules.gap - 0.3

        def centre(g: np.random.Generator) -> Point:
            cx, cy, _, _ = plan.room_box(rooms[int(g.integers(len(rooms)))])
            return (float(cx + g.uniform(-reach, reach)), float(cy + g.uniform(-reach, reach)))

        n, placed = prm.n_zones, []
        if prm.goal_in_keep_out:
            placed, n = [self._goal_zone(rng, plan.goal)], n - 1
        zones = sample_zones(rng, n, centre, rules, placed)
        self.floorplan = plan
        return Scene(bounds=plan.bounds, start=plan.start, goal=plan.goal, zones=zones,
                     walls=inner + plan.outer_walls(), no_go_walls=inner)
