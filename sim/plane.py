"""The point robot's worlds: what `open_field`, `two_rooms` and `maze` share (`PybulletWorld`).

Frames and units: world frame, z up, metres and seconds; the robot moves in the
ground plane. Each world owns its own pybullet client, so several worlds live
in one process. Physics runs at a fixed step of 1/physics_hz s with gravity on,
and is deterministic: the same seed and the same commands give bit-identical
trajectories (every reset rebuilds the simulation from scratch; see
`amiagent.sim.lifecycle`). A world draws a `Scene` per seed; this module builds
it in pybullet and turns it into the task.

Keep-out zones are visible volumes (red, translucent, no collision): the robot
can drive through them, and the world counts it. Walls are real collision boxes.
Ground truth (`violations()`) is measured every physics substep from pybullet's
own state, independent of any agent cost; see `amiagent.sim.truth`.

With `camera=True` every observation carries a top-down frame of the arena,
`images["top"]` (see `amiagent.sim.camera`), and the task a `goal_observation`:
the frame with the robot at rest on the goal. The goal marker is drawn only in
the GUI, never in a frame (it would give the goal away in every frame), and
the keep-out zones are flat floor markings, so the robot shows over them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from amiagent.sim.quiet import c_output_silenced

with c_output_silenced():  # pybullet prints its build time on import
    import pybullet as p

from amiagent.contracts import Observation, Task, WorldLayout
from amiagent.errors import AmiagentError, ConfigError
from amiagent.sim.body import PointRobot
from amiagent.sim.camera import TopCamera
from amiagent.sim.geometry import Point, ZoneRules, box_sd, random_zone, split_zones
from amiagent.sim.lifecycle import PhysicsParams, SimWorld
from amiagent.sim.truth import GroundTruth
from amiagent.contracts.spaces import Box

Bounds = tuple[tuple[float, float], tuple[float, float]]

WALL_THICKNESS = 0.2
WALL_HEIGHT = 0.5
ZONE_HEIGHT = 0.4
ZONE_MARK_HEIGHT = 0.01
"""Height (m) of the zones with the camera on: floor markings the robot shows over (the renderer is opaque)."""
CONTACT_TOLERANCE = 1e-3
"""A pybullet contact point counts as wall contact when its distance is below this (m)."""
IMAGE_KEY = "top"
"""Name of the top-down camera's frame in `Observation.images`."""


@dataclass(frozen=True)
class SimParams(PhysicsParams):
    """Parameters every point-robot world shares: PhysicsParams (clock, episode length, goal tolerance) and

    `robot_radius` (m), `robot_mass` (kg). `max_accel`: the body's action
    bound per axis (m/s^2). `speed_limit`: guardrail and ground-truth limit
    (m/s). `n_zones`: keep-out zones. `goal_in_keep_out`: put the goal inside
    a zone (an infeasible task). `camera`: observations carry a top-down frame
    `images["top"]` of `image_size` x `image_size` pixels (16 to 256), and
    tasks a goal observation. `camera_supersample`: samples per pixel along
    each axis (1 to 8; averaged, see `amiagent.sim.camera`). `camera_zones`:
    draw the keep-out zones in camera frames. They are virtual markings the
    agent is told about through the task's constraints, not obstacles, so
    frames leave them out by default: a learned encoder then spends its latent
    on the robot and the walls, not on each episode's zones.
    """

    robot_radius: float = 0.2
    robot_mass: float = 1.0
    max_accel: float = 2.0
    speed_limit: float = 1.5
    n_zones: int = 2
    goal_in_keep_out: bool = False
    camera: bool = False
    image_size: int = 64
    camera_supersample: int = 1
    camera_zones: bool = False

    positive: ClassVar[tuple[str, ...]] = ("robot_radius", "robot_mass", "max_accel", "speed_limit")
    max_zones: ClassVar[int] = 6
    """Most zones a world can place with a passage around each, for every seed."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.n_zones <= self.max_zones:
            raise ConfigError(f"n_zones must be in [0, {self.max_zones}] for this world, got {self.n_zones}")
        if self.goal_in_keep_out and self.n_zones < 1:
            raise ConfigError("goal_in_keep_out needs n_zones >= 1 (the goal is put inside one zone)")
        for name in ("camera", "camera_zones"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 256:
            raise ConfigError(f"image_size must be a whole number of pixels in [16, 256], got {size!r}")
        s = self.camera_supersample
        if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 8:
            raise ConfigError(f"camera_supersample must be a whole number in [1, 8], got {s!r}")


@dataclass(frozen=True)
class Scene:
    """What a world draws for one seed: start, goal, zones and walls (m)."""

    bounds: Bounds
    start: Point
    goal: Point
    zones: list[tuple[float, ...]]
    walls: list[tuple[float, float, float, float]] = field(default_factory=list)
    no_go_walls: list[tuple[float, float, float, float]] = field(default_factory=list)
    """Walls the task reports as keep-out boxes (outer walls are covered by workspace_bounds)."""


class PybulletWorld(SimWorld):
    """A point robot's world on the shared lifecycle; subclasses draw a `Scene` in `_draw(rng)`.

    Attributes, beyond SimWorld's: `body` (the PointRobot), `camera` (the
    episode's TopCamera when params.camera is on, else None; set by reset).
    """

    name = "world"
    Params = SimParams

    def __init__(self, params: SimParams | None = None):
        super().__init__(params)
        self._scene_now: Scene | None = None
        self._wall_ids: frozenset[int] = frozenset()
        self._hidden: list[int] = []
        self.camera: TopCamera | None = None
        if self.params.camera:
            self.body.cameras = {IMAGE_KEY: self._render}

    def _make_body(self) -> PointRobot:
        prm: SimParams = self.params
        return PointRobot(self.client, radius=prm.robot_radius, mass=prm.robot_mass, max_accel=prm.max_accel,
                          watchdog_s=prm.watchdog_s, physics_hz=prm.physics_hz)

    # ------------------------------------------------------------------ episode

    def _draw(self, rng: np.random.Generator) -> Scene:
        raise NotImplementedError

    def _populate(self, scene: Scene, rng: np.random.Generator) -> Task:
        prm: SimParams = self.params
        self._build(scene)
        self.body.spawn(*scene.start)
        goal_observation = None
        if prm.camera:
            # the robot visits the goal before any physics step, so the episode is the same with the camera off
            self.camera = TopCamera(scene.bounds, prm.image_size, prm.camera_supersample)
            self.body.place(*scene.goal)
            goal_observation = Observation(t=0.0, state=np.array([scene.goal[0], scene.goal[1], 0.0, 0.0]),
                                           images={IMAGE_KEY: self._render()})
            self.body.place(*scene.start)
        self._contacts = self.client.getContactPoints
        circles, boxes = split_zones(scene.zones)
        self._truth = GroundTruth(circles, boxes, scene.bounds, prm.robot_radius, prm.speed_limit)
        self._scene_now = scene
        return self._make_task(scene, goal_observation)

    def _build(self, scene: Scene) -> None:
        """Ground, walls (collision), zones (visual only) and, in the GUI, a goal marker."""
        c = self.client
        (xmin, xmax), (ymin, ymax) = scene.bounds
        ground = c.createVisualShape(p.GEOM_BOX, halfExtents=[(xmax - xmin) / 2 + 0.5, (ymax - ymin) / 2 + 0.5, 0.005],
                                     rgbaColor=[0.85, 0.85, 0.82, 1.0])
        c.createMultiBody(baseMass=0.0, baseVisualShapeIndex=ground,
                          basePosition=[(xmin + xmax) / 2, (ymin + ymax) / 2, -0.005])
        wall_ids = []
        for cx, cy, hx, hy in scene.walls:
            half = [hx, hy, WALL_HEIGHT / 2]
            col = c.createCollisionShape(p.GEOM_BOX, halfExtents=half)
            vis = c.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=[0.45, 0.45, 0.5, 1.0])
            wall_ids.append(c.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=col, baseVisualShapeIndex=vis,
                                              basePosition=[cx, cy, WALL_HEIGHT / 2]))
        self._wall_ids = frozenset(wall_ids)
        red = [1.0, 0.1, 0.1, 0.35]
        prm: SimParams = self.params
        height = ZONE_MARK_HEIGHT if prm.camera else ZONE_HEIGHT
        zones_seen = not prm.camera or prm.camera_zones
        self._hidden = []  # drawn for the GUI, kept out of camera frames
        for zone in scene.zones if zones_seen or self._gui else ():
            if len(zone) == 3:
                vis = c.createVisualShape(p.GEOM_CYLINDER, radius=zone[2], length=height, rgbaColor=red)
            else:
                vis = c.createVisualShape(p.GEOM_BOX, halfExtents=[zone[2], zone[3], height / 2], rgbaColor=red)
            body = c.createMultiBody(baseMass=0.0, baseVisualShapeIndex=vis,
                                     basePosition=[zone[0], zone[1], height / 2])
            if not zones_seen:
                self._hidden.append(body)
        if self._gui:
            goal = c.createVisualShape(p.GEOM_CYLINDER, radius=prm.goal_tolerance, length=0.01,
                                       rgbaColor=[0.1, 0.8, 0.2, 0.8])
            self._hidden.append(c.createMultiBody(baseMass=0.0, baseVisualShapeIndex=goal,
                                                  basePosition=[scene.goal[0], scene.goal[1], 0.005]))

    def _render(self) -> np.ndarray:
        """The camera's frame of the scene now; what only the GUI shows is put under the floor meanwhile."""
        if not self._hidden:
            return self.camera.render(self.client)
        c = self.client
        poses = [c.getBasePositionAndOrientation(body) for body in self._hidden]
        for body, (pos, orn) in zip(self._hidden, poses):
            c.resetBasePositionAndOrientation(body, [pos[0], pos[1], -1.0], orn)
        try:
            return self.camera.render(c)
        finally:
            for body, (pos, orn) in zip(self._hidden, poses):
                c.resetBasePositionAndOrientation(body, pos, orn)

    def _make_task(self, scene: Scene, goal_observation: Observation | None = None) -> Task:
        prm: SimParams = self.params
        circles, boxes = split_zones(scene.zones)
        (xmin, xmax), (ymin, ymax) = scene.bounds
        r = float(prm.robot_radius)
        constraints = {
            "keep_out": {
                "circles": [list(z) for z in circles],
                "boxes": [list(z) for z in boxes] + [[float(v) for v in w] for w in scene.no_go_walls],
                "robot_radius": r,
            },
            "speed_limit": {"limit": float(prm.speed_limit)},
            "workspace_bounds": {"low": [float(xmin), float(ymin)], "high": [float(xmax), float(ymax)],
                                 "robot_radius": r},
        }
        return Task(name=self.name, goal=(float(scene.goal[0]), float(scene.goal[1])), constraints=constraints,
                    goal_tolerance=float(prm.goal_tolerance), max_steps=int(prm.max_steps),
                    goal_observation=goal_observation)

    def place(self, x: float, y: float) -> None:
        """Move the robot, at rest, to (x, y) before the episode's first step (e.g. to vary starts).

        The disc must lie inside the bounds and clear of every wall; keep-out
        zones are allowed (they do not collide). `layout().start` follows.
        Raises AmiagentError after the first step or where the disc does not fit.
        """
        self._check_ready()
        if self.body.steps:
            raise AmiagentError(f"{self.name}: place() only before the episode's first step (reset first)")
        scene, r = self._scene_now, float(self.params.robot_radius)
        (xmin, xmax), (ymin, ymax) = scene.bounds
        if not Box((xmin, ymin), (xmax, ymax), name="arena").inset(r).contains((x, y), tol=0.0):
            raise AmiagentError(f"{self.name}: cannot place the robot (radius {r} m) at ({x}, {y}): outside the "
                                f"bounds {scene.bounds}")
        for wall in scene.walls:
            if box_sd(x, y, wall) < r:
                raise AmiagentError(f"{self.name}: cannot place the robot (radius {r} m) at ({x}, {y}): it overlaps "
                                    f"the wall {wall}")
        self.body.place(float(x), float(y))
        self._scene_now = dataclasses.replace(scene, start=(float(x), float(y)))

    # ------------------------------------------------------------------ stepping

    def _measure(self, state: tuple[float, float, float, float]) -> None:
        x, y, vx, vy = state
        touching = False
        if self._wall_ids:
            walls = self._wall_ids
            for pt in self._contacts(bodyA=self.body.body_id):
                if pt[2] in walls and pt[8] < CONTACT_TOLERANCE:
                    touching = True
                    break
        self._truth.update(x, y, vx, vy, touching)

    def max_speed(self) -> float:
        """Largest speed (m/s) measured since reset."""
        self._check_ready()
        return self._truth.max_speed

    def distance_to_goal(self) -> float:
        """Distance (m) from the robot centre to the goal."""
        self._check_ready()
        x, y = self.body.state[:2]
        return math.hypot(x - self._scene_now.goal[0], y - self._scene_now.goal[1])

    def goal_speed(self) -> float:
        """Speed (m/s) of the robot."""
        self._check_ready()
        vx, vy = self.body.state[2:4]
        return math.hypot(vx, vy)

    def at_goal(self) -> bool:
        """Whether the robot centre is within goal_tolerance of the goal."""
        return self.distance_to_goal() <= self.params.goal_tolerance

    def layout(self) -> WorldLayout:
        """Bounds, walls, keep-out zones, start, goal and robot radius of the current episode."""
        self._check_ready()
        s = self._scene_now
        circles, boxes = split_zones(s.zones)
        return WorldLayout(
            bounds=s.bounds, walls=tuple(tuple(float(v) for v in w) for w in s.walls),
            circles=tuple(circles), boxes=tuple(boxes),
            start=(float(s.start[0]), float(s.start[1])), goal=(float(s.goal[0]), float(s.goal[1])),
            robot_radius=float(self.params.robot_radius),
        )

    # ------------------------------------------------------------------ helpers for subclasses

    def _rules(self, scene_bounds: Bounds, clear_of: tuple[Point, ...], obstacles=()) -> ZoneRules:
        r = self.params.robot_radius
        return ZoneRules(clear_of=clear_of, point_clearance=r + 0.4, gap=2 * r + 0.1,
                         bounds=scene_bounds, obstacles=tuple(obstacles))

    def _goal_zone(self, rng: np.random.Generator, goal: Point) -> tuple[float, ...]:
        """A zone that contains `goal` well inside (shifted by at most 40% of its half-size)."""
        zone = random_zone(rng, goal)
        ex, ey = (zone[2], zone[2]) if len(zone) == 3 else (zone[2], zone[3])
        shift = rng.uniform(-0.4, 0.4, size=2) * np.array([ex, ey]) / (math.sqrt(2) if len(zone) == 3 else 1.0)
        return (float(goal[0] + shift[0]), float(goal[1] + shift[1]), *zone[2:])
