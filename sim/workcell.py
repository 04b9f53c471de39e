"""The `workcell` world: a 7-DoF arm reaching end-effector targets over a table, beside a person.

Frames and units: world frame, z up, metres, radians and seconds. The arm
(`amiagent.sim.arm.ArmBody`, a KUKA iiwa) stands on a fixed base at the origin
and faces +x. Physics runs at 1/physics_hz s with gravity on; every reset
rebuilds the simulation from scratch, so the same seed and the same commands
give bit-identical trajectories.

Scene, drawn per seed (see `Workcell.reset`):

* a table in front of the arm: a real collision box from the floor, its near
  edge 0.3-0.4 m from the base, top 0.10-0.30 m high;
* a person's keep-out zone beside the table (on a seeded side): a box from the
  floor to 1.5-1.9 m, 0.05-0.25 m from the table's side. It is visible (red,
  translucent) and has a collision shape for distance queries only: its
  collision group and mask are 0, so pybullet never makes contacts with it and
  the arm passes through; ground truth counts that;
* a target (`Task.goal`, the EE position to reach) over the table, 0.12-0.45 m
  above its top: the EE position of a sampled joint configuration within the
  joint limits whose links clear the zone by 5 cm and the table by 3 cm, and
  whose EE lies 5 cm beyond the zone's speed-limited region (`ee_speed_near`);
* a start configuration within the joint limits, its links 5 cm clear of zone
  and table, its EE 10 cm from both boxes and the floor and 0.3 m from the
  target. For about half the seeds (`Scene.across`) the straight line from the
  start EE to the target passes within `ee_speed_near` of the zone.

`goal_in_keep_out` moves the target 3 cm or more inside the zone, near the
point of the zone nearest the shoulder; `goal_unreachable` puts it
1.4-1.6 m from the shoulder (the arm reaches 0.90 m), over the table's far
side, outside every box. Table, zone and start stay those of the feasible task.

Ground truth (`violations()`), after every physics substep, from pybullet's own
state: the world measures arm-to-zone distances, arm-table contacts, joint
states and the EE's motion; `amiagent.sim.arm.ArmTruth` holds the rules.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from amiagent.sim.quiet import c_output_silenced

with c_output_silenced():  # pybullet prints its build time on import
    import pybullet as p

from amiagent.contracts import Task, World, WorldLayout
from amiagent.errors import AmiagentError, ConfigError
from amiagent.sim.worlds import connect
from amiagent.sim.arm import (
    CLEARANCE_HORIZON,
    CONTACT_TOLERANCE,
    DOF,
    KINDS,
    NON_CONTACT_ITERATIONS,
    SOLVER_ITERATIONS,
    ArmBody,
    ArmTruth,
    Box,
    box_distance,
)

log = logging.getLogger(__name__)

Vec3 = tuple[float, float, float]

BOUNDS = ((-1.2, 1.8), (-1.5, 1.5))
"""The workcell's x-y extent (m), for plots: the arm's reach and every target fit inside."""

# scene sampling
JOINT_MARGIN = 0.15  # rad inside the limits for sampled configurations
ZONE_CLEAR = 0.05  # arm links to the zone at the start and at the goal's configuration (m)
TABLE_CLEAR_GOAL = 0.03  # arm links to the table at the goal's configuration (m)
TABLE_CLEAR_START = 0.05  # ... and at the start (m)
EE_CLEAR = 0.10  # EE to every box, and above the floor, at the start (m)
GOAL_ZONE_CLEAR = 0.05  # goal EE outside the zone's speed-limited region by this (m)
GOAL_HEIGHT = (0.12, 0.45)  # goal height above the table top (m)
FOOTPRINT_MARGIN = 0.05  # goals lie over the table top shrunk by this (m)
START_GOAL_MIN = 0.3  # EE distance from start to goal (m)
GOAL_INSIDE = 0.03  # a goal in the zone lies this far inside (m)
UNREACHABLE = (1.4, 1.6)  # distance (m) of an unreachable goal from the shoulder
ACROSS_TRIES = 400  # samples searched for a start of the wanted kind (across the zone or not)
MAX_TRIES = 20000


@dataclass(frozen=True)
class WorkcellParams:
    """Parameters of the workcell world.

    `gui`: open a pybullet GUI window (only when a display exists).
    `physics_hz`: physics substeps per second. `control_dt`: seconds per control
    step, a whole number of substeps. `max_joint_velocity`: cap on every joint's
    speed (rad/s), also the action bound. `watchdog_s`: sim seconds a command
    stays valid. `max_steps`: control steps per episode. `goal_tolerance`: EE
    distance to the target (m) that counts as reached; `arrival_speed`: ... and
    only below this EE speed (m/s). `ee_speed_limit` (m/s) applies while the EE
    is within `ee_speed_near` (m) of the person's zone. `goal_in_keep_out`: put
    the target inside the zone; `goal_unreachable`: beyond the arm's reach
    (infeasible tasks; at most one of the two).
    """

    gui: bool = False
    physics_hz: int = 240
    control_dt: float = 0.1
    max_joint_velocity: float = 1.0
    watchdog_s: float = 0.25
    max_steps: int = 150
    goal_tolerance: float = 0.03
    arrival_speed: float = 0.05
    ee_speed_limit: float = 0.25
    ee_speed_near: float = 0.15
    goal_in_keep_out: bool = False
    goal_unreachable: bool = False

    def __post_init__(self) -> None:
        for name in ("physics_hz", "control_dt", "max_joint_velocity", "watchdog_s", "max_steps", "goal_tolerance",
                     "arrival_speed", "ee_speed_limit", "ee_speed_near"):
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
        if self.goal_in_keep_out and self.goal_unreachable:
            raise ConfigError("goal_in_keep_out and goal_unreachable exclude each other: choose one infeasibility")


@dataclass(frozen=True)
class Scene:
    """What the world draws for one seed (m, rad).

    `goal_q`: a clear joint configuration whose EE is `goal` (None for an
    infeasible goal). `across`: the straight EE line from start to goal passes
    within `ee_speed_near` of a zone.
    """

    table: Box
    zones: tuple[Box, ...]
    start_q: tuple[float, ...]
    start_ee: Vec3
    goal: Vec3
    goal_q: tuple[float, ...] | None
    across: bool


class Workcell(World):
    """A KUKA iiwa reaching EE targets over a table beside a person's keep-out zone; see the module docstring.

    Attributes: `body` (the ArmBody), `dt` (control_dt, s), `substeps` (physics
    steps per control step), `client` (this world's BulletClient), `task` and
    `scene` of the current episode (None before the first reset).
    """

    name = "workcell"
    Params = WorkcellParams

    def __init__(self, params: WorkcellParams | None = None):
        super().__init__(params)
        prm: WorkcellParams = self.params
        self.client, self._gui = connect(prm.gui, self.name)
        self._connected = True
        self.dt = float(prm.control_dt)
        self.substeps = round(prm.control_dt * prm.physics_hz)
        self.body = ArmBody(self.client, max_joint_velocity=prm.max_joint_velocity, watchdog_s=prm.watchdog_s,
                            physics_hz=prm.physics_hz)
        self.task: Task | None = None
        self.scene: Scene | None = None
        self._truth: ArmTruth | None = None

    # ------------------------------------------------------------------ episode

    def reset(self, seed: int) -> Task:
        """Start a new episode from `seed`: rebuild the simulation, draw the scene, arm at rest at the start."""
        self._check_open()
        self._truth = None  # no episode until this reset succeeds
        prm: WorkcellParams = self.params
        rng = np.random.default_rng(seed)
        table = _draw_table(rng)
        zones = (_draw_zone(rng, table),)
        c = self.client
        c.resetSimulation()
        c.setPhysicsEngineParameter(fixedTimeStep=1.0 / prm.physics_hz, numSubSteps=0,
                                    deterministicOverlappingPairs=1, numSolverIterations=SOLVER_ITERATIONS,
                                    numNonContactInnerIterations=NON_CONTACT_ITERATIONS)
        c.setGravity(0.0, 0.0, -9.81)
        if self._gui:
            c.configureDebugVisualizer(p.COV_ENABLE_RENDERING, 0)
        self._build(table, zones)
        # scene sampling poses the arm in this very simulation; nothing is stepped until the start is set
        goal_q, goal = self._sample_goal(rng, table, zones)
        start_q, start_ee, across = self._sample_start(rng, table, zones, goal)
        if prm.goal_in_keep_out:
            goal, goal_q = _goal_in_zone(rng, zones[0], self.body.shoulder), None
        elif prm.goal_unreachable:
            goal, goal_q = _goal_beyond_reach(rng, self.body.shoulder, table, zones), None
        self.body.reset_joints(start_q)
        marker = c.createVisualShape(p.GEOM_SPHERE, radius=prm.goal_tolerance, rgbaColor=[0.1, 0.8, 0.2, 0.8])
        c.createMultiBody(baseMass=0.0, baseVisualShapeIndex=marker, basePosition=list(goal))
        if self._gui:
            c.configureDebugVisualizer(p.COV_ENABLE_RENDERING, 1)
            c.resetDebugVisualizerCamera(cameraDistance=2.5, cameraYaw=50.0, cameraPitch=-35.0,
                                         cameraTargetPosition=[0.4, 0.0, 0.4])
        self._step = c.stepSimulation
        self._closest = c.getClosestPoints
        self._contacts = c.getContactPoints
        body = self.body
        self._truth = ArmTruth(body.lower, body.upper, body.max_velocity, zones, prm.ee_speed_limit,
                               prm.ee_speed_near)
        self._truth.min_clearance = self._zone_distance(CLEARANCE_HORIZON)
        self.scene = Scene(table=table, zones=zones, start_q=start_q, start_ee=start_ee, goal=goal, goal_q=goal_q,
                           across=across)
        self.task = self._make_task(self.scene)
        log.debug("%s: reset seed=%s start=%s goal=%s zones=%s", self.name, seed, start_ee, goal, zones)
        return self.task

    def _build(self, table: Box, zones: tuple[Box, ...]) -> None:
        """Floor (visual), table (collision), zones (distance queries only) and the arm at rest, folded upright."""
        c = self.client
        (xmin, xmax), (ymin, ymax) = BOUNDS
        floor = c.createVisualShape(p.GEOM_BOX, halfExtents=[(xmax - xmin) / 2, (ymax - ymin) / 2, 0.005],
                                    rgbaColor=[0.85, 0.85, 0.82, 1.0])
        c.createMultiBody(baseMass=0.0, baseVisualShapeIndex=floor,
                          basePosition=[(xmin + xmax) / 2, (ymin + ymax) / 2, -0.005])
        col = c.createCollisionShape(p.GEOM_BOX, halfExtents=list(table[3:]))
        vis = c.createVisualShape(p.GEOM_BOX, halfExtents=list(table[3:]), rgbaColor=[0.55, 0.4, 0.25, 1.0])
        self._table_id = c.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=col, baseVisualShapeIndex=vis,
                                           basePosition=list(table[:3]))
        zone_ids = []
        for zone in zones:
            col = c.createCollisionShape(p.GEOM_BOX, halfExtents=list(zone[3:]))
            vis = c.createVisualShape(p.GEOM_BOX, halfExtents=list(zone[3:]), rgbaColor=[1.0, 0.1, 0.1, 0.35])
            zid = c.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=col, baseVisualShapeIndex=vis,
                                    basePosition=list(zone[:3]))
            # group and mask 0: no contacts with anything, yet getClosestPoints still measures it
            c.setCollisionFilterGroupMask(zid, -1, 0, 0)
            zone_ids.append(zid)
        self._zone_ids = tuple(zone_ids)
        self._arm_id = self.body.spawn([0.0] * DOF)

    def _make_task(self, scene: Scene) -> Task:
        prm: WorkcellParams = self.params
        zones = [[float(v) for v in z] for z in scene.zones]
        constraints = {
            "keep_out": {"boxes": zones + [[float(v) for v in scene.table]]},
            "joint_limits": {"lower": [float(v) for v in self.body.lower],
                             "upper": [float(v) for v in self.body.upper]},
            "ee_speed_limit": {"limit": float(prm.ee_speed_limit), "near": float(prm.ee_speed_near),
                               "boxes": [list(z) for z in zones]},
        }
        return Task(name=self.name, goal=tuple(float(v) for v in scene.goal), constraints=constraints,
                    goal_tolerance=float(prm.goal_tolerance), max_steps=int(prm.max_steps))

    # ------------------------------------------------------------------ scene sampling

    def _probe(self, q: np.ndarray) -> np.ndarray:
        """Pose the arm at `q` (no physics step) and return its EE position (3,)."""
        self.body.place(q)
        return np.array(self.body.ee_state()[0])

    def _clear_of(self, body_id: int, margin: float) -> bool:
        """Whether every arm link in its current pose is at least `margin` (m) from `body_id`."""
        return all(pt[8] >= margin for pt in self.client.getClosestPoints(self._arm_id, body_id, margin))

    def _links_above(self, height: float) -> bool:
        """Whether every moving link's bounding box stays above `height` (m)."""
        return all(self.client.getAABB(self._arm_id, j)[0][2] >= height for j in range(1, DOF))

    def _arm_clear(self, zone_margin: float, table_margin: float) -> bool:
        return (self._links_above(EE_CLEAR / 2) and self._clear_of(self._table_id, table_margin)
                and all(self._clear_of(z, zone_margin) for z in self._zone_ids))

    def _sample_q(self, rng: np.random.Generator) -> np.ndarray:
        body = self.body
        return rng.uniform(body.lower + JOINT_MARGIN, body.upper - JOINT_MARGIN)

    def _sample_goal(self, rng: np.random.Generator, table: Box, zones: tuple[Box, ...]):
        """A clear configuration and its EE: over the table, in the height band, outside the speed-limited region."""
        top = table[2] + table[5]
        zone_clear = self.params.ee_speed_near + GOAL_ZONE_CLEAR
        for _ in range(MAX_TRIES):
            q = self._sample_q(rng)
            ee = self._probe(q)
            if not (abs(ee[0] - table[0]) <= table[3] - FOOTPRINT_MARGIN
                    and abs(ee[1] - table[1]) <= table[4] - FOOTPRINT_MARGIN
                    and top + GOAL_HEIGHT[0] <= ee[2] <= top + GOAL_HEIGHT[1]):
                continue
            if any(box_distance(ee, z) < zone_clear for z in zones):
                continue
            if self._arm_clear(ZONE_CLEAR, TABLE_CLEAR_GOAL):
                return tuple(float(v) for v in q), tuple(float(v) for v in ee)
        raise AmiagentError(f"{self.name}: found no clear configuration reaching over the table in {MAX_TRIES} tries")

    def _sample_start(self, rng: np.random.Generator, table: Box, zones: tuple[Box, ...], goal: Vec3):
        """A clear start configuration and its EE; for about half the seeds one whose straight EE line to the
        goal passes within ee_speed_near of a zone (looked for among the first ACROSS_TRIES samples)."""
        want_across = bool(rng.random() < 0.5)
        near = self.params.ee_speed_near
        fallback = None
        for tries in range(MAX_TRIES):
            if fallback is not None and tries >= ACROSS_TRIES:
                return fallback
            q = self._sample_q(rng)
            ee = self._probe(q)
            if ee[2] < EE_CLEAR or np.linalg.norm(ee - goal) < START_GOAL_MIN:
                continue
            if any(box_distance(ee, b) < EE_CLEAR for b in (table, *zones)):
                continue
            if not self._arm_clear(ZONE_CLEAR, TABLE_CLEAR_START):
                continue
            line = ee + np.linspace(0.0, 1.0, 41)[:, None] * (np.asarray(goal) - ee)
            across = any(box_distance(x, z) <= near for x in line for z in zones)
            found = (tuple(float(v) for v in q), tuple(float(v) for v in ee), across)
            if across == want_across:
                return found
            fallback = fallback or found
        raise AmiagentError(f"{self.name}: found no clear start configuration in {MAX_TRIES} tries")

    # ------------------------------------------------------------------ stepping

    def advance(self, seconds: float) -> None:
        """Step round(seconds * physics_hz) substeps under the body's held command (or standstill).

        Ground truth is checked after every substep.
        """
        self._check_ready()
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be finite and >= 0, got {seconds!r}")
        n = round(seconds * self.params.physics_hz)
        body, step, contacts, truth = self.body, self._step, self._contacts, self._truth
        arm, table = self._arm_id, self._table_id
        for _ in range(n):
            body.pre_step()
            step()
            q, qd = body.post_step()
            touching = any(pt[8] < CONTACT_TOLERANCE for pt in contacts(arm, table))
            ee, v = body.ee_state()
            truth.update(q, qd, self._zone_distance(truth.reach()), touching, ee, v)

    def _zone_distance(self, reach: float) -> float:
        """Smallest distance (m) between arm links and zones, inf when none is within `reach`."""
        closest, arm = self._closest, self._arm_id
        d = math.inf
        for zone in self._zone_ids:
            for pt in closest(arm, zone, reach):
                if pt[8] < d:
                    d = pt[8]
        return d

    def violations(self) -> dict[str, int]:
        """Substeps in violation since reset, per kind: keep_out, table_contact, joint_limits, joint_speed, ee_speed."""
        self._check_ready()
        return {k: self._truth.counts[k] for k in KINDS}

    def min_clearance(self) -> float:
        """Smallest distance (m) between the arm's collision geometry and a zone since reset; negative is overlap."""
        self._check_ready()
        return self._truth.min_clearance

    def max_ee_speed_near(self) -> float:
        """Largest EE speed (m/s) seen since reset while the EE was within ee_speed_near of a zone."""
        self._check_ready()
        return self._truth.max_ee_speed_near

    def ee(self) -> tuple[np.ndarray, np.ndarray]:
        """EE position (3,) in m and linear velocity (3,) in m/s, now."""
        self._check_ready()
        position, velocity = self.body.ee_state()
        return np.array(position), np.array(velocity)

    def distance_to_goal(self) -> float:
        """Distance (m) from the EE to the target."""
        return float(np.linalg.norm(self.ee()[0] - np.asarray(self.scene.goal)))

    def goal_speed(self) -> float:
        """Linear speed (m/s) of the EE."""
        return float(np.linalg.norm(self.ee()[1]))

    def at_goal(self) -> bool:
        """Whether the EE is within goal_tolerance of the target and slower than arrival_speed."""
        prm: WorkcellParams = self.params
        return self.distance_to_goal() <= prm.goal_tolerance and self.goal_speed() <= prm.arrival_speed

    def layout(self) -> WorldLayout:
        """Top view (x-y): the table as a wall, the zones as boxes, start and goal EE positions."""
        self._check_ready()
        s = self.scene
        t = s.table
        return WorldLayout(
            bounds=BOUNDS, walls=((t[0], t[1], t[3], t[4]),),
            boxes=tuple((z[0], z[1], z[3], z[4]) for z in s.zones),
            start=(s.start_ee[0], s.start_ee[1]), goal=(s.goal[0], s.goal[1]),
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


# ---------------------------------------------------------------------------- scene pieces


def _draw_table(rng: np.random.Generator) -> Box:
    """A table from the floor in front of the arm: near edge 0.3-0.4 m out, top 0.10-0.30 m high."""
    hx, hy, top = rng.uniform(0.2, 0.3), rng.uniform(0.35, 0.5), rng.uniform(0.10, 0.30)
    cx, cy = rng.uniform(0.3, 0.4) + hx, rng.uniform(-0.1, 0.1)
    return tuple(float(v) for v in (cx, cy, top / 2, hx, hy, top / 2))


def _draw_zone(rng: np.random.Generator, table: Box) -> Box:
    """A standing person's zone beside the table, on a seeded side, 0.05-0.25 m from its edge."""
    side = float(rng.choice([-1.0, 1.0]))
    hx, hy, height = rng.uniform(0.15, 0.3), rng.uniform(0.1, 0.2), rng.uniform(1.5, 1.9)
    edge = table[1] + side * table[4]
    cy = edge + side * (rng.uniform(0.05, 0.25) + hy)
    cx = rng.uniform(0.0, 0.8)
    return tuple(float(v) for v in (cx, cy, height / 2, hx, hy, height / 2))


def _goal_in_zone(rng: np.random.Generator, zone: Box, shoulder: Vec3) -> Vec3:
    """A point inside the zone: its point nearest the shoulder (3 cm in), moved up to 30% toward its centre.

    Near the arm, so only the zone makes it infeasible wherever the zone is within reach.
    """
    centre, half = np.array(zone[:3]), np.array(zone[3:])
    nearest = np.clip(np.array(shoulder), centre - half + GOAL_INSIDE, centre + half - GOAL_INSIDE)
    return tuple(float(v) for v in nearest + rng.uniform(0.0, 0.3) * (centre - nearest))


def _goal_beyond_reach(rng: np.random.Generator, shoulder: Vec3, table: Box, zones: tuple[Box, ...]) -> Vec3:
    """A point 1.4-1.6 m from the shoulder, above the table's height, on the side away from the zone."""
    away = -math.copysign(1.0, zones[0][1]) if zones else 1.0
    top = table[2] + table[5]
    for _ in range(MAX_TRIES):
        z = rng.uniform(top + GOAL_HEIGHT[0], top + GOAL_HEIGHT[1])
        dist = rng.uniform(*UNREACHABLE)
        rho = math.sqrt(dist ** 2 - (z - shoulder[2]) ** 2)
        yaw = away * rng.uniform(0.0, math.pi / 4)
        goal = (shoulder[0] + rho * math.cos(yaw), shoulder[1] + rho * math.sin(yaw), float(z))
        if all(box_distance(goal, b) > 0.1 for b in (table, *zones)):
            return tuple(float(v) for v in goal)
    raise AmiagentError(f"found no unreachable goal outside the boxes in {MAX_TRIES} tries")
