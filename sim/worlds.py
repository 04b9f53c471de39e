"""pybullet worlds for one point robot: `open_field` and `two_rooms`.

Both draw their scene from the episode's seed and leave the rest to
`amiagent.sim.plane.PybulletWorld` (frames, units, zones, walls, camera and
ground truth are described there). The names other modules import from here
(`SimParams`, `IMAGE_KEY`, `WALL_THICKNESS`) are the plane worlds' own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from amiagent.errors import ConfigError
from amiagent.sim.geometry import Point, sample_zones
from amiagent.sim.plane import IMAGE_KEY, WALL_THICKNESS, Bounds, PybulletWorld, Scene, SimParams

__all__ = ["IMAGE_KEY", "WALL_THICKNESS", "OpenField", "SimParams", "TwoRooms"]


class OpenField(PybulletWorld):
    """A 10 m x 10 m open arena (x, y in [-5, 5]); keep-out zones across the straight start-goal line.

    Start x in [-4, -3], goal x in [3, 4], both y in [-3, 3]. Each zone crosses
    the straight line from start to goal (its centre within 0.3 m of the line,
    in the middle 60%), so the robot must go around. Zones keep robot
    diameter + 0.1 m from each other and from the border (a passage always
    exists) and robot_radius + 0.4 m from start and goal. No walls.
    """

    name = "open_field"

    @dataclass(frozen=True)
    class Params(SimParams):
        """SimParams; `n_zones` defaults to 2, at most 3 fit along the line."""

        max_zones: ClassVar[int] = 3

    def _draw(self, rng: np.random.Generator) -> Scene:
        bounds: Bounds = ((-5.0, 5.0), (-5.0, 5.0))
        start = (float(rng.uniform(-4.0, -3.0)), float(rng.uniform(-3.0, 3.0)))
        goal = (float(rng.uniform(3.0, 4.0)), float(rng.uniform(-3.0, 3.0)))
        sx, sy = start
        dx, dy = goal[0] - sx, goal[1] - sy
        length = math.hypot(dx, dy)
        nx, ny = -dy / length, dx / length

        def centre(g: np.random.Generator) -> Point:
            t, off = g.uniform(0.2, 0.8), g.uniform(-0.3, 0.3)
            return (sx + t * dx + off * nx, sy + t * dy + off * ny)

        n = self.params.n_zones
        placed = []
        if self.params.goal_in_keep_out:
            placed, n = [self._goal_zone(rng, goal)], n - 1
        zones = sample_zones(rng, n, centre, self._rules(bounds, (start, goal)), placed)
        return Scene(bounds=bounds, start=start, goal=goal, zones=zones)


class TwoRooms(PybulletWorld):
    """A 10 m x 6 m arena (x in [-5, 5], y in [-3, 3]) split by a wall at x = 0 with one door.

    The dividing wall is 0.2 m thick and 0.5 m high, with an opening of
    `door_width` centred at a seeded y. The arena has outer walls just outside
    its bounds. Start is in the left room (x in [-4, -2]), goal in the right
    room (x in [2, 4]), y in [-2.2, 2.2]. The task reports the two dividing
    wall segments as keep-out boxes; ground truth counts touching them as
    `wall_contact` (not `keep_out`). Optional zones keep clear of walls and the
    doorway.
    """

    name = "two_rooms"

    @dataclass(frozen=True)
    class Params(SimParams):
        """SimParams plus `door_width` (m); `n_zones` defaults to 0."""

        n_zones: int = 0
        door_width: float = 1.2

        def __post_init__(self) -> None:
            super().__post_init__()
            if not (math.isfinite(self.door_width) and 2 * self.robot_radius < self.door_width <= 4.0):
                raise ConfigError(
                    f"door_width must be in (2 * robot_radius, 4] m = ({2 * self.robot_radius}, 4], "
                    f"got {self.door_width}"
                )

    def _draw(self, rng: np.random.Generator) -> Scene:
        (xmin, xmax), (ymin, ymax) = bounds = ((-5.0, 5.0), (-3.0, 3.0))
        w, half_t = self.params.door_width, WALL_THICKNESS / 2
        door_y = float(rng.uniform(ymin + w / 2 + 0.5, ymax - w / 2 - 0.5))
        low_top, high_bottom = door_y - w / 2, door_y + w / 2
        divider = [
            (0.0, (ymin + low_top) / 2, half_t, (low_top - ymin) / 2),
            (0.0, (high_bottom + ymax) / 2, half_t, (ymax - high_bottom) / 2),
        ]
        hx, hy = (xmax - xmin) / 2, (ymax - ymin) / 2
        outer = [
            (xmin - half_t, 0.0, half_t, hy + WALL_THICKNESS), (xmax + half_t, 0.0, half_t, hy + WALL_THICKNESS),
            (0.0, ymin - half_t, hx + WALL_THICKNESS, half_t), (0.0, ymax + half_t, hx + WALL_THICKNESS, half_t),
        ]
        start = (float(rng.uniform(-4.0, -2.0)), float(rng.uniform(-2.2, 2.2)))
        goal = (float(rng.uniform(2.0, 4.0)), float(rng.uniform(-2.2, 2.2)))

        def centre(g: np.random.Generator) -> Point:
            return (float(g.choice([-1.0, 1.0]) * g.uniform(1.0, 4.5)), float(g.uniform(-2.5, 2.5)))

        doorway = (0.0, door_y, 1.0, w / 2)  # keeps zones off the door's approach
        n = self.params.n_zones
        placed = []
        if self.params.goal_in_keep_out:
            placed, n = [self._goal_zone(rng, goal)], n - 1
        rules = self._rules(bounds, (start, goal), obstacles=(*divider, doorway))
        zones = sample_zones(rng, n, centre, rules, placed)
        return Scene(bounds=bounds, start=start, goal=goal, zones=zones, walls=divider + outer, no_go_walls=divider)
