"""The point robot: an omnidirectional disc that moves in the plane as an exact double integrator.

Frames and units: world frame, metres, seconds. The state is (x, y, vx, vy);
the action is the acceleration (ax, ay) in m/s^2, held until the next command.

How it is built in pybullet: a fixed-base multibody whose base is an invisible
anchor at the origin, then two prismatic joints, x then y. The first link (the
"carriage") has a small mass and no shape; the second carries the cylinder with
its collision and visual shapes. Damping is off and the default velocity motors
are disabled, so the joint forces are the only forces along the joints. Each
physics substep of length h the robot applies force = (mass the joint moves) * a,
and pybullet integrates semi-implicitly,

    v += a * h;  p += v * h,

which is exactly what the agent's analytic world model uses. Walls are real
collision shapes: contacts with them add constraint forces, so near a wall the
motion is no longer the free double integrator.

Safety on the body side: actions are clipped to +-max_accel; a command older
than `watchdog_s` of sim time is stale and the robot brakes; `stop()` brakes and
holds; `estop()` latches braking until `release()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from amiagent.sim.quiet import c_output_silenced

with c_output_silenced():  # pybullet prints its build time on import
    import pybullet as p

from amiagent.contracts import Observation
from amiagent.sim.simbody import SimBody

CARRIAGE_MASS = 0.01
"""Mass (kg) of the shapeless link that carries the x joint."""


class PointRobot(SimBody):
    """An omnidirectional disc robot on two prismatic joints; see the module docstring.

    `client`: the world's `BulletClient`. `radius`, `height`: cylinder size (m).
    `mass`: cylinder mass (kg). `max_accel`: bound on each action component
    (m/s^2). `watchdog_s`: sim seconds a command stays valid. `physics_hz`: the
    world's physics rate (substeps per second).

    The robot exists in pybullet only after `spawn(x, y)`, which the world calls
    on every reset; until then `observe` and `command` raise BodyError.

    `cameras`: image name -> a callable returning the frame now, (h, w, 3)
    uint8; the world fills it when it has a camera, and `observe` puts each
    frame in `Observation.images`. Empty: observations carry no images.
    """

    JOINTS = (0, 1)
    label = "point robot"
    action_doc = "accelerations (ax, ay) in m/s^2"

    def __init__(
        self,
        client: Any,
        radius: float = 0.2,
        height: float = 0.3,
        mass: float = 1.0,
        max_accel: float = 2.0,
        watchdog_s: float = 0.25,
        physics_hz: int = 240,
    ):
        self.radius = float(radius)
        self.height = float(height)
        self.mass = float(mass)
        self.max_accel = float(max_accel)
        super().__init__(client, np.full(2, -self.max_accel, dtype=np.float64),
                         np.full(2, self.max_accel, dtype=np.float64), watchdog_s, physics_hz)
        # Force per unit acceleration: the x joint moves carriage + cylinder, the y joint the cylinder.
        self._fx = CARRIAGE_MASS + self.mass
        self._fy = self.mass
        self.cameras: dict[str, Callable[[], np.ndarray]] = {}
        self.state = (0.0, 0.0, 0.0, 0.0)
        """(x, y, vx, vy) after the last substep, as pybullet reported it."""

    # ------------------------------------------------------------------ lifecycle

    def spawn(self, x: float, y: float) -> None:
        """Create the robot at rest at (x, y) in a freshly reset simulation; clears commands, latches and clock."""
        c = self._client
        col = c.createCollisionShape(p.GEOM_CYLINDER, radius=self.radius, height=self.height)
        vis = c.createVisualShape(p.GEOM_CYLINDER, radius=self.radius, length=self.height,
                                  rgbaColor=[0.15, 0.35, 0.9, 1.0])
        ident = [0.0, 0.0, 0.0, 1.0]
        self.body_id = c.createMultiBody(
            baseMass=0.0, baseCollisionShapeIndex=-1, baseVisualShapeIndex=-1,
            basePosition=[0.0, 0.0, self.height / 2],
            linkMasses=[CARRIAGE_MASS, self.mass],
            linkCollisionShapeIndices=[-1, col], linkVisualShapeIndices=[-1, vis],
            linkPositions=[[0.0, 0.0, 0.0]] * 2, linkOrientations=[ident] * 2,
            linkInertialFramePositions=[[0.0, 0.0, 0.0]] * 2, linkInertialFrameOrientations=[ident] * 2,
            linkParentIndices=[0, 1], linkJointTypes=[p.JOINT_PRISMATIC] * 2,
            linkJointAxis=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        )
        for link in (-1, 0, 1):
            c.changeDynamics(self.body_id, link, linearDamping=0.0, angularDamping=0.0, jointDamping=0.0)
        # The default velocity motors would act as friction; force 0 disables them.
        c.setJointMotorControlArray(self.body_id, self.JOINTS, p.VELOCITY_CONTROL, forces=[0.0, 0.0])
        self.place(x, y)
        # Bound once: BulletClient builds a new partial on every attribute access.
        self._set_forces = c.setJointMotorControlArray
        self._joint_states = c.getJointStates

    def place(self, x: float, y: float) -> None:
        """Put the spawned robot at rest at (x, y); clears commands, latches and clock, as `spawn` does."""
        c = self._client
        c.resetJointState(self.body_id, 0, float(x), 0.0)
        c.resetJointState(self.body_id, 1, float(y), 0.0)
        self._clear()
        self.state = (float(x), float(y), 0.0, 0.0)

    # ------------------------------------------------------------------ Body contract

    def observe(self) -> Observation:
        """Time (s) and state (x, y, vx, vy) in m and m/s, read from pybullet's joint states.

        With `cameras`, `images` holds each camera's frame, rendered now.
        """
        self._check_live()
        sx, sy = self._client.getJointStates(self.body_id, self.JOINTS)
        state = np.array([sx[0], sy[0], sx[1], sy[1]], dtype=np.float64)
        if self.cameras:
            return Observation(t=self.t, state=state, images={k: render() for k, render in self.cameras.items()})
        return Observation(t=self.t, state=state)

    # ------------------------------------------------------------------ physics (called by the world)

    def acceleration(self) -> tuple[float, float]:
        """The acceleration (m/s^2) for the next substep: the held command, or braking.

        Braking when stopped, e-stopped or the command is stale (applied for
        `watchdog_steps` substeps already): deceleration along the velocity, as
        hard as the per-axis bound allows, landing exactly on zero without
        overshoot. The stopping path is a straight line.
        """
        cmd = self._live_command()
        if cmd is not None:
            return cmd
        _, _, vx, vy = self.state
        peak = max(abs(vx), abs(vy))
        if peak == 0.0:
            return (0.0, 0.0)
        scale = min(1.0 / self.h, self.max_accel / peak)
        return (-vx * scale, -vy * scale)

    def pre_step(self) -> None:
        """Apply this substep's joint forces; pybullet clears them after every step."""
        ax, ay = self.acceleration()
        self._set_forces(self.body_id, self.JOINTS, p.TORQUE_CONTROL, forces=[self._fx * ax, self._fy * ay])

    def post_step(self) -> tuple[float, float, float, float]:
        """Read (x, y, vx, vy) after a substep, advance the clock, and return the state."""
        sx, sy = self._joint_states(self.body_id, self.JOINTS)
        self.steps += 1
        self.state = (sx[0], sy[0], sx[1], sy[1])
        return self.state
