"""The `workcell` world: a 7-DoF arm reaching end-effector targets over a table, beside a person.

Frames and units: world frame, z up, metres, radians and seconds. The arm
(`amiagent.sim.arm.ArmBody`, a KUKA iiwa) stands on a fixed base at the origin
and faces +x. Physics runs at 1/physics_hz s with gravity on; every reset
rebuilds the simulation from scratch, so the same seed and the same commands
give bit-identical trajectories.

Scene, drawn per seed (`Workcell._draw`, then `_populate` in the fresh simulation):

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

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from amiagent.sim.quiet import c_output_silenced

with c_output_silenced():  # pybullet prints its build time on import
    import pybullet as p

from amiagent.contracts import Task, WorldLayout
from amiagent.errors import AmiagentError, ConfigError
from amiagent.sim.arm import (
    CLEARANCE_HORIZON,
    CONTACT_TOLERANCE,
    DOF,
    NON_CONTACT_ITERATIONS,
    SOLVER_ITERATIONS,
    ArmBody,
    ArmTruth,
    Cuboid,
    box_distance,
)
from amiagent.sim.lifecycle import PhysicsParams, SimWorld

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
class WorkcellParams(PhysicsParams):
    """Parameters of the workcell world: PhysicsParams (clock, episode length, goal tolerance) and

    `max_joint_velocity`: cap on every joint's speed (rad/s), also the action
    bound. `goal_tolerance`: EE distance to the target (m) that counts as
    reached; `arrival_speed`: ... and only below this EE speed (m/s).
    `ee_speed_limit` (m/s) applies while the EE is within `ee_speed_near` (m)
    of the person's zone. `goal_in_keep_out`: put the target inside the zone;
    `goal_unreachable`: beyond the arm's reach (infeasible tasks; at most one
    of the two).
    """

    max_joint_velocity: float = 1.0
    max_steps: int = 150
    goal_tolerance: float = 0.03
    arrival_speed: float = 0.05
    ee_speed_limit: float = 0.25
    ee_speed_near: float = 0.15
    goal_in_keep_out: bool = False
    goal_unreachable: bool = False

    positive: ClassVar[tuple[str, ...]] = ("max_joint_velocity", "arrival_speed", "ee_speed_limit", "ee_speed_near")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.goal_in_keep_out and self.goal_unreachable:
            raise ConfigError("goal_in_keep_out and goal_unreachable exclude each other: choose one infeasibility")


@dataclass(frozen=True)
class Scene:
    """What the world draws for one seed (m, rad).

    `goal_q`: a clear joint configuration whose EE is `goal` (None for an
    infeasible goal). `across`: the straight EE line from start to goal passes
    within `ee_speed_near` of a zone.
    """

    table: Cuboid
    zones: tuple[Cuboid, ...]
    start_q: tuple[float, ...]
    start_ee: Vec3
    goal: Vec3
    goal_q: tuple[float, ...] | None
    across: bool


class Workcell(SimWorld):
    """A KUKA iiwa reaching EE targets over a table beside a person's keep-out zone; see the module docstring.

    Attributes, beyond SimWorld's: `body` (the ArmBody), `scene` of the
    current episode (None before the first reset).
    """

    name = "workcell"
    Params = WorkcellParams
    engine: ClassVar[dict[str, int]] = {"numSolverIterations": SOLVER_ITERATIONS,
                                        "numNonContactInnerIterations": NON_CONTACT_ITERATIONS}
    view = (2.5, 50.0, -35.0, (0.4, 0.0, 0.4))

    def __init__(self, params: WorkcellParams | None = None):
        super().__init__(params)
        self.scene: Scene | None = None
        self._configurations = self.body.joint_limits.inset(JOINT_MARGIN)  # where scene sampling draws

    def _make_body(self) -> ArmBody:
        prm: WorkcellParams = self.params
        return ArmBody(self.client, max_joint_velocity=prm.max_joint_velocity, watchdog_s=prm.watchdog_s,
                       physics_hz=prm.physics_hz)

    # ------------------------------------------------------------------ episode

    def _draw(self, rng: np.random.Generator) -> tuple[Cuboid, tuple[Cuboid, ...]]:
        table = _draw_table(rng)
        return table, (_draw_zone(rng, table),)

    def _populate(self, drawn: tuple[Cuboid, tuple[Cuboid, ...]], rng: np.random.Generator) -> Task:
        prm: WorkcellParams = self.params
        table, zones = drawn
        self._build(table, zones)
        # scene sampling poses the arm in this very simulation; nothing is stepped until the start is set
        goal_q, goal = self._sample_goal(rng, table, zones)
        start_q, start_ee, across = self._sample_start(rng, table, zones, goal)
        if prm.goal_in_keep_out:
            goal, goal_q = _goal_in_zone(rng, zones[0], self.body.shoulder), None
        elif prm.goal_unreachable:
            goal, goal_q = _goal_beyond_reach(rng, self.body.shoulder, table, zones), None
        self.body.reset_joints(start_q)
        c = self.client
        marker = c.createVisualShape(p.GEOM_SPHERE, radius=prm.goal_tolerance, rgbaColor=[0.1, 0.8, 0.2, 0.8])
        c.createMultiBody(baseMass=0.0, baseVisualShapeIndex=marker, basePosition=list(goal))
        self._closest = c.getClosestPoints
        self._contacts = c.getContactPoints
        body = self.body
        self._truth = ArmTruth(body.lower, body.upper, body.max_velocity, zones, prm.ee_speed_limit,
                               prm.ee_speed_near)
        self._truth.min_clearance = self._zone_distance(CLEARANCE_HORIZON)
        self.scene = Scene(table=table, zones=zones, start_q=start_q, start_ee=start_ee, goal=goal, goal_q=goal_q,
                           across=across)
        return self._make_task(self.scene)

    def _build(self, table: Cuboid, zones: tuple[Cuboid, ...]) -> None:
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
        return self._configurations.sample(rng)

    def _sample_goal(self, rng: np.random.Generator, table: Cuboid, zones: tuple[Cuboid, ...]):
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

    def _sample_start(self, rng: np.random.Generator, table: Cuboid, zones: tuple[Cuboid, ...], goal: Vec3):
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

    def _measure(self, state: tuple[tuple[float, ...], tuple[float, ...]]) -> None:
        q, qd = state
        touching = any(pt[8] < CONTACT_TOLERANCE for pt in self._contacts(self._arm_id, self._table_id))
        ee, v = self.body.ee_state()
        truth = self._truth
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

    @property
    def arrival_speed(self) -> float:  # the EE arrives slower than the point robot's default
        return float(self.params.arrival_speed)

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


# ---------------------------------------------------------------------------- scene pieces


def _draw_table(rng: np.random.Generator) -> Cuboid:
    """A table from the floor in front of the arm: near edge 0.3-0.4 m out, top 0.10-0.30 m high."""
    hx, hy, top = rng.uniform(0.2, 0.3), rng.uniform(0.35, 0.5), rng.uniform(0.10, 0.30)
    cx, cy = rng.uniform(0.3, 0.4) + hx, rng.uniform(-0.1, 0.1)
    return tuple(float(v) for v in (cx, cy, top / 2, hx, hy, top / 2))


def _draw_zone(rng: np.random.Generator, table: Cuboid) -> Cuboid:
    """A standing person's zone beside the table, on a seeded side, 0.05-0.25 m from its edge."""
    side = float(rng.choice([-1.0, 1.0]))
    hx, hy, height = rng.uniform(0.15, 0.3), rng.uniform(0.1, 0.2), rng.uniform(1.5, 1.9)
    edge = table[1] + side * table[4]
    cy = edge + side * (rng.uniform(0.05, 0.25) + hy)
    cx = rng.uniform(0.0, 0.8)
    return tuple(float(v) for v in (cx, cy, height / 2, hx, hy, height / 2))


def _goal_in_zone(rng: np.random.Generator, zone: Cuboid, shoulder: Vec3) -> Vec3:
    """A point inside the zone: its point nearest the shoulder (3 cm in), moved up to 30% toward its centre.

    Near the arm, so only the zone makes it infeasible wherever the zone is within reach.
    """
    centre, half = np.array(zone[:3]), np.array(zone[3:])
    nearest = np.clip(np.array(shoulder), centre - half + GOAL_INSIDE, centre + half - GOAL_INSIDE)
    return tuple(float(v) for v in nearest + rng.uniform(0.0, 0.3) * (centre - nearest))


def _goal_beyond_reach(rng: np.random.Generator, shoulder: Vec3, table: Cuboid, zones: tuple[Cuboid, ...]) -> Vec3:
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
