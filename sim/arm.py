"""A 7-DoF arm body (pybullet's KUKA iiwa on a fixed base, driven by joint velocity commands) and the
ground-truth rules arm worlds measure it by (`ArmTruth`).

Frames and units: the base sits at the world origin with identity orientation,
so the end effector (EE), the origin of the last link frame (pybullet link 6),
is `amiagent.kinematics.Chain.from_urdf(KUKA_URDF).forward(q)[:, -1, :3, 3]`
without any base offset. Angles in rad, joint velocities in rad/s.

Action: joint velocities (7,) in rad/s, bounded per joint by
min(URDF velocity limit, `max_joint_velocity`). Each joint is a pybullet
VELOCITY_CONTROL motor with a force far above what the arm needs
(MOTOR_FORCE), and the world has pybullet iterate on the motor constraints
(NON_CONTACT_ITERATIONS, SOLVER_ITERATIONS), so in free motion a held command
v moves the joints by v * dt to within about 1e-5 rad per 0.1 s: the agent's
integrator model q += v * dt is exact for planning purposes. Joint damping is
off, gravity is on (the motors hold the arm up). A zero command holds still.

Joint limits: the URDF limits are the arm's software limits. The simulated
hard stops sit HARD_STOP_MARGIN beyond them, so an arm commanded past a limit
really crosses it (and the world's ground truth counts it) before a physical
stop catches it.

Safety on the body side: actions are clipped to the bounds; non-finite or
misshaped commands raise BodyError and change nothing; a command older than
`watchdog_s` of sim time is stale and the joints stop; `stop()` stops and
holds; `estop()` latches stop until `release()`.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch

from amiagent.sim.quiet import c_output_silenced

with c_output_silenced():  # pybullet prints its build time on import
    import pybullet as p
    import pybullet_data

from amiagent.contracts import Observation
from amiagent.errors import BodyError
from amiagent.kinematics import Chain
from amiagent.sim.simbody import SimBody
from amiagent.contracts.spaces import Box

KUKA_URDF = os.path.join(pybullet_data.getDataPath(), "kuka_iiwa", "model.urdf")
"""The arm's URDF; agents build their forward kinematics from the same file."""

DOF = 7
EE_LINK = 6
"""pybullet link index of the end effector (the last link's frame)."""

MOTOR_FORCE = 3000.0
"""Motor force bound (N m) per joint: 10x the URDF effort, so tracking is exact, not force-limited."""

NON_CONTACT_ITERATIONS = 50
"""pybullet `numNonContactInnerIterations`: motors track within 5e-5 rad/s (pybullet's default 1: ~1e-3)."""

SOLVER_ITERATIONS = 10
"""pybullet `numSolverIterations` (default 50): each one repeats the motor iterations, and a contact keeps the
solver from converging early, so an arm pressed on the table steps at ~0.5 ms per substep instead of ~3.4 ms.
Free motion is unaffected; a pressed arm rests at the same height to 1 mm."""

HARD_STOP_MARGIN = 0.1
"""Radians between a URDF (software) joint limit and the simulated hard stop behind it."""


class ArmBody(SimBody):
    """The KUKA iiwa as a Body; see the module docstring.

    `client`: the world's `BulletClient`. `max_joint_velocity`: cap on every
    joint's speed (rad/s), below the URDF's own limits. `watchdog_s`: sim
    seconds a command stays valid. `physics_hz`: the world's physics rate.

    Attributes: `lower`, `upper` (7,) joint limits (rad) and `max_velocity`
    (7,) per-joint speed bound (rad/s), all float64 from the URDF;
    `action_low` = -max_velocity, `action_high` = max_velocity; `shoulder`. The arm exists
    in pybullet only after `spawn(q)`, which the world calls on every reset;
    until then `observe` and `command` raise BodyError.
    """

    JOINTS = tuple(range(DOF))
    label = "arm"
    action_doc = "joint velocities in rad/s, one per joint"

    def __init__(
        self,
        client: Any,
        max_joint_velocity: float = 1.0,
        watchdog_s: float = 0.25,
        physics_hz: int = 240,
        urdf: str = KUKA_URDF,
    ):
        self.urdf = urdf
        chain = Chain.from_urdf(urdf)
        if chain.dof != DOF:
            raise BodyError(f"{urdf}: the arm body drives {DOF} joints, the URDF chain has {chain.dof}")
        self.lower = chain.lower.numpy().copy()
        self.upper = chain.upper.numpy().copy()
        self.max_velocity = np.minimum(chain.max_velocity.numpy(), float(max_joint_velocity))
        self.joint_limits = Box(self.lower, self.upper, name="arm joint limits")
        """[lower, upper] (rad) of every joint, the URDF's software limits."""
        # joint 2's axis: the centre of the sphere the EE reaches within
        self.shoulder = tuple(float(v) for v in chain.forward(torch.zeros(1, DOF, dtype=torch.float64))[0, 1, :3, 3])
        """(x, y, z) of the shoulder (m): the second joint's frame origin at the world origin base."""
        self._zero = (0.0,) * DOF
        self._sent: tuple[float, ...] | None = None
        self.state = (self._zero, self._zero)
        """(q, qd) after the last substep, as pybullet reported them."""
        super().__init__(client, -self.max_velocity, self.max_velocity.copy(), watchdog_s, physics_hz)

    # ------------------------------------------------------------------ lifecycle

    def spawn(self, q: Any) -> int:
        """Load the arm at rest at joint angles `q` (7,) in a freshly reset simulation; returns its body id.

        Clears commands, latches and the clock.
        """
        c = self._client
        self.body_id = c.loadURDF(self.urdf, basePosition=[0.0, 0.0, 0.0], baseOrientation=[0.0, 0.0, 0.0, 1.0],
                                  useFixedBase=True)
        for link in (-1, *self.JOINTS):
            c.changeDynamics(self.body_id, link, linearDamping=0.0, angularDamping=0.0, jointDamping=0.0)
        for j in self.JOINTS:
            c.changeDynamics(self.body_id, j, jointLowerLimit=float(self.lower[j] - HARD_STOP_MARGIN),
                             jointUpperLimit=float(self.upper[j] + HARD_STOP_MARGIN))
        # Bound once: BulletClient builds a new partial on every attribute access.
        self._set_motors = c.setJointMotorControlArray
        self._joint_states = c.getJointStates
        self._link_state = c.getLinkState
        self.reset_joints(q)
        return self.body_id

    def place(self, q: Any) -> None:
        """Teleport the joints to `q` (7,) at rest, keeping commands and clock (scene sampling)."""
        self._client.resetJointStatesMultiDof(self.body_id, self.JOINTS, [[float(v)] for v in q], [[0.0]] * DOF)

    def reset_joints(self, q: Any) -> None:
        """Put the arm at rest at `q` (7,) with its motors stopped; clears commands, latches and clock."""
        self.place(q)
        self._clear()
        self._sent = None
        self.state = (tuple(float(v) for v in q), self._zero)
        self._send(self._zero)

    # ------------------------------------------------------------------ Body contract

    def observe(self) -> Observation:
        """Time (s) and state (14,) = [q (7) rad, qd (7) rad/s], read from pybullet's joint states."""
        self._check_live()
        joints = self._joint_states(self.body_id, self.JOINTS)
        state = np.array([s[0] for s in joints] + [s[1] for s in joints], dtype=np.float64)
        return Observation(t=self.t, state=state)

    # ------------------------------------------------------------------ physics (called by the world)

    def velocity_target(self) -> tuple[float, ...]:
        """Joint velocities (rad/s) for the next substep: the held command, or zero when stopped or stale."""
        cmd = self._live_command()
        return self._zero if cmd is None else cmd

    def pre_step(self) -> None:
        """Set the motors' targets for the next substep (pybullet keeps them until changed)."""
        target = self.velocity_target()
        if target != self._sent:
            self._send(target)

    def _send(self, target: tuple[float, ...]) -> None:
        self._set_motors(self.body_id, self.JOINTS, p.VELOCITY_CONTROL, targetVelocities=target,
                         forces=(MOTOR_FORCE,) * DOF)
        self._sent = target

    def post_step(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Read (q, qd) after a substep, advance the clock, and return them."""
        joints = self._joint_states(self.body_id, self.JOINTS)
        self.steps += 1
        self.state = (tuple(s[0] for s in joints), tuple(s[1] for s in joints))
        return self.state

    def ee_state(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """EE position (x, y, z) in m and linear velocity in m/s, both of the last link frame's origin.

        pybullet reports the velocity of the link's centre of mass; the frame
        origin's is v_com + w x (p_frame - p_com). Plain tuples: the world calls
        this after every physics substep.
        """
        s = self._link_state(self.body_id, EE_LINK, computeLinkVelocity=1, computeForwardKinematics=1)
        (cx, cy, cz), (fx, fy, fz), (vx, vy, vz), (wx, wy, wz) = s[0], s[4], s[6], s[7]
        rx, ry, rz = fx - cx, fy - cy, fz - cz
        return (fx, fy, fz), (vx + wy * rz - wz * ry, vy + wz * rx - wx * rz, vz + wx * ry - wy * rx)


# ---------------------------------------------------------------------------- ground truth


KINDS = ("keep_out", "table_contact", "joint_limits", "joint_speed", "ee_speed")
"""Violation kinds, in the order arm worlds report them in `violations()`."""

JOINT_LIMIT_SLACK = 1e-3
"""Radians a joint may sit past a URDF limit before it counts (the `tol` of its Box check)."""
SPEED_SLACK = 1e-3
"""Relative slack on joint and EE speed limits (motors track within 5e-5 rad/s)."""
CONTACT_TOLERANCE = 1e-3
"""A pybullet contact point counts as table contact when its distance is below this (m)."""
CLEARANCE_HORIZON = 5.0
"""Farthest arm-to-zone distance (m) ever queried; a whole workcell is within it."""

Cuboid = tuple[float, float, float, float, float, float]
"""An axis-aligned box (cx, cy, cz, hx, hy, hz): centre and half extents (m)."""


def box_distance(point: Any, box: Cuboid) -> float:
    """Distance (m) from `point` (x, y, z) to `box`; 0 inside."""
    d = [max(abs(point[i] - box[i]) - box[3 + i], 0.0) for i in range(3)]
    return math.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])


class ArmTruth:
    """Counts physics substeps in violation, per kind, from the simulator's state.

    A substep violates
    * `keep_out` when any arm link's collision geometry is within 0 m of a
      zone box (pybullet `getClosestPoints` between arm and zone);
    * `table_contact` when pybullet reports an arm-table contact point closer
      than CONTACT_TOLERANCE;
    * `joint_limits` when a joint angle is outside [lower, upper] by more than
      JOINT_LIMIT_SLACK;
    * `joint_speed` when a joint speed exceeds its bound by more than SPEED_SLACK;
    * `ee_speed` when the EE is within `near` of a zone box and its linear speed
      exceeds `limit` by more than SPEED_SLACK.
    """

    def __init__(self, lower: Any, upper: Any, max_velocity: Any, zones: tuple[Cuboid, ...], limit: float, near: float):
        self._joints = Box(lower, upper, name="joint limits")
        self._vmax = tuple(float(v) * (1.0 + SPEED_SLACK) for v in max_velocity)
        self.zones = zones
        self.near = near
        self._ee_vmax2 = (limit * (1.0 + SPEED_SLACK)) ** 2
        self.counts = dict.fromkeys(KINDS, 0)
        self.min_clearance = math.inf
        """Smallest arm-to-zone distance (m) seen; negative means overlap."""
        self.max_ee_speed_near = 0.0
        """Largest EE speed (m/s) seen while the EE was within `near` of a zone."""

    def reach(self) -> float:
        """How far (m) the next zone query must look: a pair farther than this changes neither count nor minimum."""
        return max(self.min_clearance, 0.0) if self.min_clearance < CLEARANCE_HORIZON else CLEARANCE_HORIZON

    def update(self, q: Any, qd: Any, zone_distance: float, table_contact: bool, ee: Any, ee_velocity: Any) -> None:
        """Account one substep: joint angles and speeds (7,), the arm-to-zone distance (inf when beyond
        `reach()`), whether the arm touches the table, EE position (3,) and velocity (3,)."""
        counts = self.counts
        if zone_distance < 0.0:
            counts["keep_out"] += 1
        if zone_distance < self.min_clearance:
            self.min_clearance = zone_distance
        if table_contact:
            counts["table_contact"] += 1
        if not self._joints.contains(tuple(q), JOINT_LIMIT_SLACK):
            counts["joint_limits"] += 1
        vmax = self._vmax
        if any(abs(qd[j]) > vmax[j] for j in range(DOF)):
            counts["joint_speed"] += 1
        if any(box_distance(ee, z) <= self.near for z in self.zones):
            v2 = float(ee_velocity[0] ** 2 + ee_velocity[1] ** 2 + ee_velocity[2] ** 2)
            if v2 > self._ee_vmax2:
                counts["ee_speed"] += 1
            if v2 > self.max_ee_speed_near ** 2:
                self.max_ee_speed_near = math.sqrt(v2)
