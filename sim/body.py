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

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from amiagent.sim.quiet import c_output_silenced

with c_output_silenced():  # pybullet prints its build time on import
    import pybullet as p

from amiagent.contracts import Body, Observation
from amiagent.errors import BodyError

log = logging.getLogger(__name__)

CARRIAGE_MASS = 0.01
"""Mass (kg) of the shapeless link that carries the x joint."""


class PointRobot(Body):
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
        self._client = client
        self.radius = float(radius)
        self.height = float(height)
        self.mass = float(mass)
        self.max_accel = float(max_accel)
        self.h = 1.0 / physics_hz
        """Physics substep (s)."""
        self.watchdog_steps = max(1, round(watchdog_s * physics_hz))
        """Substeps a command is applied for before it counts as stale."""
        self.action_low = np.full(2, -self.max_accel, dtype=np.float64)
        self.action_high = np.full(2, self.max_accel, dtype=np.float64)
        self.body_id: int | None = None
        """pybullet body id, None until spawned."""
        # Force per unit acceleration: the x joint moves carriage + cylinder, the y joint the cylinder.
        self._fx = CARRIAGE_MASS + self.mass
        self._fy = self.mass
        self._closed = False
        self.cameras: dict[str, Callable[[], np.ndarray]] = {}
        self._clear(0.0, 0.0)

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
        self._clear(float(x), float(y))

    def _clear(self, x: float, y: float) -> None:
        self.steps = 0
        """Physics substeps since spawn; sim time is steps * h."""
        self._cmd: tuple[float, float] | None = None
        self._cmd_step = 0
        self._estopped = False
        self._warned_estop = False
        self.state = (x, y, 0.0, 0.0)
        """(x, y, vx, vy) after the last substep, as pybullet reported it."""

    def close(self) -> None:
        """Refuse further commands. Safe to call twice; the world owns the simulation."""
        self._closed = True
        self._cmd = None

    # ------------------------------------------------------------------ Body contract

    @property
    def t(self) -> float:
        """Sim time (s) since the last spawn."""
        return self.steps * self.h

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

    def command(self, action: Any) -> None:
        """Hold acceleration `action` (2,) in m/s^2, clipped to the bounds, until the next command.

        Raises BodyError, changing nothing, when `action` is not a finite numeric
        array of shape (2,). Ignored (after validation) while e-stopped.
        """
        self._check_live()
        try:
            arr = np.asarray(action)
        except Exception as exc:  # arbitrary objects may fail to convert in many ways
            raise BodyError(f"action must be a numeric array of shape (2,), got {type(action).__name__}") from exc
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise BodyError(f"action must be real numbers (m/s^2), got dtype {arr.dtype} from {action!r}")
        if arr.shape != (2,):
            raise BodyError(f"action must have shape (2,) = (ax, ay), got shape {arr.shape}")
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise BodyError(f"action must be finite, got {arr.tolist()}")
        if self._estopped:
            if not self._warned_estop:
                log.warning("point robot: e-stop latched, ignoring commands until release()")
                self._warned_estop = True
            return
        clipped = np.clip(arr, self.action_low, self.action_high)
        self._cmd = (float(clipped[0]), float(clipped[1]))
        self._cmd_step = self.steps

    def stop(self) -> None:
        """Brake to a standstill and hold it until the next command."""
        self._cmd = None

    def estop(self) -> None:
        """Latch braking: commands are ignored until `release()`."""
        if not self._estopped:
            log.warning("point robot: e-stop")
        self._estopped = True
        self._warned_estop = False
        self._cmd = None

    def release(self) -> None:
        """Clear the e-stop latch; the robot keeps braking (holds) until the next command."""
        self._estopped = False
        self._cmd = None

    @property
    def estopped(self) -> bool:
        """Whether the e-stop latch is set."""
        return self._estopped

    @property
    def held_command(self) -> tuple[float, float] | None:
        """The acceleration (m/s^2) being held, or None when braking/holding."""
        return self._cmd

    # ------------------------------------------------------------------ physics (called by the world)

    def acceleration(self) -> tuple[float, float]:
        """The acceleration (m/s^2) for the next substep: the held command, or braking.

        Braking when stopped, e-stopped or the command is stale (applied for
        `watchdog_steps` substeps already): deceleration along the velocity, as
        hard as the per-axis bound allows, landing exactly on zero without
        overshoot. The stopping path is a straight line.
        """
        cmd = self._cmd
        if cmd is not None and self.steps - self._cmd_step < self.watchdog_steps:
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

    def _check_live(self) -> None:
        if self._closed:
            raise BodyError("point robot is closed")
        if self.body_id is None:
            raise BodyError("point robot is not spawned yet: call world.reset(seed) first")

