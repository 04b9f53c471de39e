"""pybullet worlds for one point robot: `open_field` and `two_rooms`.

Frames and units: world frame, z up, metres and seconds; the robot moves in the
ground plane. Each world owns its own pybullet client, so several worlds live
in one process. Physics runs at a fixed step of 1/physics_hz s with gravity on,
and is deterministic: the same seed and the same commands give bit-identical
trajectories (every reset rebuilds the simulation from scratch).

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
import logging
import math
import os
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from amiagent.sim.quiet import c_output_silenced

with c_output_silenced():  # pybullet prints its build time on import
    import pybullet as p
    from pybullet_utils.bullet_client import BulletClient

from amiagent.contracts import Observation, Task, World, WorldLayout
from amiagent.errors import AmiagentError, ConfigError
from amiagent.sim.body import PointRobot
from amiagent.sim.camera import TopCamera
from amiagent.sim.geometry import Point, ZoneRules, box_sd, random_zone, sample_zones, split_zones
from amiagent.sim.truth import KINDS, GroundTruth

log = logging.getLogger(__name__)

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
class SimParams:
    """Parameters every sim world shares.

    `gui`: open a pybullet GUI window (only when a display exists).
    `physics_hz`: physics substeps per second. `control_dt`: seconds per control
    step; must be a whole number of substeps. `robot_radius` (m), `robot_mass`
    (kg). `max_accel`: the body's action bound per axis (m/s^2). `speed_limit`:
    guardrail and ground-truth limit (m/s). `watchdog_s`: sim seconds a command
    stays valid. `max_steps`: control steps per episode. `goal_tolerance`:
    distance to goal (m) that counts as reached. `n_zones`: keep-out zones.
    `goal_in_keep_out`: put the goal inside a zone (an infeasible task).
    `camera`: observations carry a top-down frame `images["top"]` of
    `image_size` x `image_size` pixels (16 to 256), and tasks a goal observation.
    `camera_supersample`: samples per pixel along each axis (1 to 8; averaged, see
    `amiagent.sim.camera`). `camera_zones`: draw the keep-out zones in camera frames. They are virtual
    markings the agent is told about through the task's constraints, not
    obstacles, so frames leave them out by default: a learned encoder then
    spends its latent on the robot and the walls, not on each episode's zones.
    """

    gui: bool = False
    physics_hz: int = 240
    control_dt: float = 0.1
    robot_radius: float = 0.2
    robot_mass: float = 1.0
    max_accel: float = 2.0
    speed_limit: float = 1.5
    watchdog_s: float = 0.25
    max_steps: int = 300
    goal_tolerance: float = 0.2
    n_zones: int = 2
    goal_in_keep_out: bool = False
    camera: bool = False
    image_size: int = 64
    camera_supersample: int = 1
    camera_zones: bool = False

    max_zones: ClassVar[int] = 6
    """Most zones a world can place with a passage around each, for every seed."""

    def __post_init__(self) -> None:
        for name in ("physics_hz", "control_dt", "robot_radius", "robot_mass", "max_accel",
                     "speed_limit", "watchdog_s", "max_steps", "goal_tolerance"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
        substeps = self.control_dt * self.physics_hz
        if abs(substeps - round(substeps)) > 1e-9:
            raise ConfigError(
                f"control_dt * physics_hz must be a whole number of substeps, got {self.control_dt} * "
                f"{self.physics_hz} = {substeps}"
            )
        if self.watchdog_s * self.physics_hz < 1:
            raise ConfigError(f"watchdog_s must be at least one substep (1/physics_hz), got {self.watchdog_s}")
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


def connect(gui: bool, name: str) -> tuple[BulletClient, bool]:
    """A world's own pybullet client: a GUI window when asked and a display exists, else headless.

    Returns the client and whether it has a GUI.
    """
    mode = p.DIRECT
    if gui:
        if os.environ.get("DISPLAY"):
            mode = p.GUI
        else:
            log.warning("%s: gui=True but no DISPLAY is set; running headless (DIRECT)", name)
    with c_output_silenced():  # connecting prints `argv[0]=`
        return BulletClient(connection_mode=mode), mode == p.GUI


class PybulletWorld(World):
    """Shared machinery of the sim worlds; subclasses draw a `Scene` in `_scene(rng)`.

    Attributes: `body` (the PointRobot), `dt` (control_dt, s), `substeps`
    (physics steps per control step), `client` (this world's BulletClient),
    `task` (the current Task, None before the first reset), `camera` (the
    episode's TopCamera when params.camera is on, else None; set by reset).
    """

    name = "world"
    Params = SimParams

    def __init__(self, params: SimParams | None = None):
        super().__init__(params)
        prm: SimParams = self.params
        self.client, self._gui = connect(prm.gui, self.name)
        self._connected = True
        self.dt = float(prm.control_dt)
        self.substeps = round(prm.control_dt * prm.physics_hz)
        self.body = PointRobot(self.client, radius=prm.robot_radius, mass=prm.robot_mass,
                               max_accel=prm.max_accel, watchdog_s=prm.watchdog_s, physics_hz=prm.physics_hz)
        self.task: Task | None = None
        self._scene_now: Scene | None = None
        self._truth: GroundTruth | None = None
        self._wall_ids: frozenset[int] = frozenset()
        self._hidden: list[int] = []
        self.camera: TopCamera | None = None
        if prm.camera:
            self.body.cameras = {IMAGE_KEY: self._render}

    # ------------------------------------------------------------------ episode

    def _scene(self, rng: np.random.Generator) -> Scene:
        raise NotImplementedError

    def reset(self, seed: int) -> Task:
        """Start a new episode from `seed`: rebuild the simulation, robot at rest at the start."""
        self._check_open()
        prm: SimParams = self.params
        scene = self._scene(np.random.default_rng(seed))
        c = self.client
        c.resetSimulation()
        c.setPhysicsEngineParameter(fixedTimeStep=1.0 / prm.physics_hz, numSubSteps=0,
                                    deterministicOverlappingPairs=1)
        c.setGravity(0.0, 0.0, -9.81)
        if self._gui:
            c.configureDebugVisualizer(p.COV_ENABLE_RENDERING, 0)
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
        if self._gui:
            c.configureDebugVisualizer(p.COV_ENABLE_RENDERING, 1)
            c.resetDebugVisualizerCamera(cameraDistance=9.0, cameraYaw=0.0, cameraPitch=-70.0,
                                         cameraTargetPosition=[0.0, 0.0, 0.0])
        self._step = c.stepSimulation
        self._contacts = c.getContactPoints
        circles, boxes = split_zones(scene.zones)
        self._truth = GroundTruth(circles, boxes, scene.bounds, prm.robot_radius, prm.speed_limit)
        self._scene_now = scene
        self.task = self._make_task(scene, goal_observation)
        log.debug("%s: reset seed=%s start=%s goal=%s zones=%s", self.name, seed, scene.start, scene.goal, scene.zones)
        return self.task

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
        if not (xmin + r <= x <= xmax - r and ymin + r <= y <= ymax - r):
            raise AmiagentError(f"{self.name}: cannot place the robot (radius {r} m) at ({x}, {y}): outside the "
                                f"bounds {scene.bounds}")
        for wall in scene.walls:
            if box_sd(x, y, wall) < r:
                raise AmiagentError(f"{self.name}: cannot place the robot (radius {r} m) at ({x}, {y}): it overlaps "
                                    f"the wall {wall}")
        self.body.place(float(x), float(y))
        self._scene_now = dataclasses.replace(scene, start=(float(x), float(y)))

    # ------------------------------------------------------------------ stepping

    def advance(self, seconds: float) -> None:
        """Step round(seconds * physics_hz) substeps under the body's held command (or braking).

        Ground truth is checked after every substep.
        """
        self._check_ready()
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be finite and >= 0, got {seconds!r}")
        n = round(seconds * self.params.physics_hz)
        body, step, contacts, truth = self.body, self._step, self._contacts, self._truth
        robot, walls = body.body_id, self._wall_ids
        for _ in range(n):
            body.pre_step()
            step()
            x, y, vx, vy = body.post_step()
            touching = False
            if walls:
                for pt in contacts(bodyA=robot):
                    if pt[2] in walls and pt[8] < CONTACT_TOLERANCE:
                        touching = True
                        break
            truth.update(x, y, vx, vy, touching)

    def violations(self) -> dict[str, int]:
        """Substeps in violation since reset, per kind: keep_out, wall_contact, speed, bounds."""
        self._check_ready()
        return {k: self._truth.counts[k] for k in KINDS}

    def min_clearance(self) -> float:
        """Smallest distance (m) between robot disc and any keep-out zone since reset.

        Negative means overlap; inf without zones.
        """
        self._check_ready()
        return self._truth.min_clearance

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

    def close(self) -> None:
        """Disconnect this world's pybullet client. Safe to call twice."""
        super().close()
        self.body.close()
        if self._connected:
            self._connected = False
            self.client.disconnect()

    def _check_open(self) -> None:
        if not self._connected:
            raise AmiagentError(f"{self.name} world is closed")

    def _check_ready(self) -> None:
        self._check_open()
        if self._truth is None:
            raise AmiagentError(f"{self.name} world has no episode yet: call reset(seed) first")

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

    def _scene(self, rng: np.random.Generator) -> Scene:
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

    def _scene(self, rng: np.random.Generator) -> Scene:
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
