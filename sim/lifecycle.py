"""The lifecycle every pybullet world shares: its own client, a reset that rebuilds the simulation from a
seed, physics substeps under the body's command with ground truth after each, and close.

A world subclasses `SimWorld` and fills in what is its own: `_make_body`,
`_draw(rng)` (what the episode's seed decides before any simulation exists),
`_populate(drawn, rng)` (build it in the fresh simulation, set `_truth`, return
the task) and `_measure(state)` (ground truth after one substep). Every reset
rebuilds the simulation from scratch, so the same seed and the same commands
give bit-identical trajectories.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from amiagent.sim.quiet import c_output_silenced

with c_output_silenced():  # pybullet prints its build time on import
    import pybullet as p
    from pybullet_utils.bullet_client import BulletClient

from amiagent.contracts import Task, World
from amiagent.errors import AmiagentError, ConfigError
from amiagent.sim.simbody import SimBody

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhysicsParams:
    """Parameters of every sim world's clock and episode.

    `gui`: open a pybullet GUI window (only when a display exists).
    `physics_hz`: physics substeps per second. `control_dt`: seconds per control
    step; must be a whole number of substeps. `watchdog_s`: sim seconds a
    command stays valid. `max_steps`: control steps per episode.
    `goal_tolerance`: distance to the goal (m) that counts as reached.
    Subclasses name further fields that must be finite and > 0 in `positive`.
    """

    gui: bool = False
    physics_hz: int = 240
    control_dt: float = 0.1
    watchdog_s: float = 0.25
    max_steps: int = 300
    goal_tolerance: float = 0.2

    positive: ClassVar[tuple[str, ...]] = ()
    """Names of the subclass's fields that must be finite numbers > 0."""

    def __post_init__(self) -> None:
        for name in ("physics_hz", "control_dt", "watchdog_s", "max_steps", "goal_tolerance", *self.positive):
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


class SimWorld(World):
    """A pybullet world's lifecycle; see the module docstring.

    Attributes: `body` (a SimBody), `dt` (control_dt, s), `substeps` (physics
    steps per control step), `client` (this world's BulletClient), `task` (the
    current Task, None before the first reset). `engine`: further pybullet
    engine parameters; `view`: the GUI camera (distance, yaw, pitch, target).
    """

    name = "world"
    Params = PhysicsParams
    engine: ClassVar[dict[str, Any]] = {}
    view: ClassVar[tuple[float, float, float, tuple[float, float, float]]] = (9.0, 0.0, -70.0, (0.0, 0.0, 0.0))

    def __init__(self, params: PhysicsParams | None = None):
        super().__init__(params)
        prm: PhysicsParams = self.params
        self.client, self._gui = connect(prm.gui, self.name)
        self._connected = True
        self.dt = float(prm.control_dt)
        self.substeps = round(prm.control_dt * prm.physics_hz)
        self.body: SimBody = self._make_body()
        self.task: Task | None = None
        self._truth: Any = None

    # ------------------------------------------------------------------ what a world fills in

    def _make_body(self) -> SimBody:
        raise NotImplementedError

    def _draw(self, rng: np.random.Generator) -> Any:
        """What the seed decides before the simulation is rebuilt (raise ConfigError here, not halfway)."""
        raise NotImplementedError

    def _populate(self, drawn: Any, rng: np.random.Generator) -> Task:
        """Build the episode in the fresh simulation (rendering paused in the GUI), set `_truth`, return the task."""
        raise NotImplementedError

    def _measure(self, state: Any) -> None:
        """Account one physics substep that ended in the body's `state` (what its `post_step` returned)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ episode

    def reset(self, seed: int) -> Task:
        """Start a new episode from `seed`: rebuild the simulation, body at rest at the start."""
        self._check_open()
        self._truth = None  # no episode until this reset succeeds
        prm: PhysicsParams = self.params
        rng = np.random.default_rng(seed)
        drawn = self._draw(rng)
        c = self.client
        c.resetSimulation()
        c.setPhysicsEngineParameter(fixedTimeStep=1.0 / prm.physics_hz, numSubSteps=0,
                                    deterministicOverlappingPairs=1, **self.engine)
        c.setGravity(0.0, 0.0, -9.81)
        if self._gui:
            c.configureDebugVisualizer(p.COV_ENABLE_RENDERING, 0)
        self.task = self._populate(drawn, rng)
        if self._gui:
            distance, yaw, pitch, target = self.view
            c.configureDebugVisualizer(p.COV_ENABLE_RENDERING, 1)
            c.resetDebugVisualizerCamera(cameraDistance=distance, cameraYaw=yaw, cameraPitch=pitch,
                                         cameraTargetPosition=list(target))
        self._step = c.stepSimulation  # bound once: BulletClient builds a new partial on every attribute access
        log.debug("%s: reset seed=%s goal=%s", self.name, seed, self.task.goal)
        return self.task

    def advance(self, seconds: float) -> None:
        """Step round(seconds * physics_hz) substeps under the body's held command (or its stop).

        Ground truth is checked after every substep.
        """
        self._check_ready()
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be finite and >= 0, got {seconds!r}")
        body, step, measure = self.body, self._step, self._measure
        for _ in range(round(seconds * self.params.physics_hz)):
            body.pre_step()
            step()
            measure(body.post_step())

    def violations(self) -> dict[str, int]:
        """Substeps in violation since reset, per kind, in the order of the world's ground truth."""
        self._check_ready()
        return dict(self._truth.counts)

    def min_clearance(self) -> float:
        """Smallest distance (m) between the body and any keep-out zone since reset; negative is overlap,
        inf without zones."""
        self._check_ready()
        return self._truth.min_clearance

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
