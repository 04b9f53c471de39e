"""`SimBody`: what every simulated body does on its own side of the body protocol.

A body takes a command (validated, clipped to its action bounds, held until
the next one), keeps a sim clock of physics substeps, and has the body's last
lines of defence: a watchdog (a command older than `watchdog_s` of sim time is
stale and the body stops), `stop()`, and an e-stop latch that ignores
commands until `release()`. Subclasses say what "stop" means physically
(braking to rest, holding the joints) and read their state from pybullet.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from amiagent.contracts import Body
from amiagent.errors import BodyError
from amiagent.contracts.spaces import Box

log = logging.getLogger(__name__)


class SimBody(Body):
    """The command, clock and safety latches of a pybullet body.

    `client`: the world's `BulletClient`. `low`, `high`: the action bounds
    (A,) float64, also `action_space` (a Box) and the contract's `action_low`
    / `action_high`. `watchdog_s`: sim seconds a command stays valid.
    `physics_hz`: the world's physics rate. Subclasses set `label` (their name
    in messages) and `action_doc` (what an action is, with units), spawn
    themselves in pybullet (setting `body_id`) and call `_tick()` after each
    physics substep.
    """

    label = "body"
    action_doc = "actions"

    def __init__(self, client: Any, low: np.ndarray, high: np.ndarray, watchdog_s: float, physics_hz: int):
        self._client = client
        self._action_space = Box(low, high, name=f"{self.label} action bounds")
        self.action_low, self.action_high = self._action_space.low, self._action_space.high
        self.h = 1.0 / physics_hz
        """Physics substep (s)."""
        self.watchdog_steps = max(1, round(watchdog_s * physics_hz))
        """Substeps a command is applied for before it counts as stale."""
        self.body_id: int | None = None
        """pybullet body id, None until spawned."""
        self._closed = False
        self._clear()

    def _clear(self) -> None:
        """Forget commands and the e-stop latch, and restart the clock (a new episode)."""
        self.steps = 0
        """Physics substeps since spawn; sim time is steps * h."""
        self._cmd: tuple[float, ...] | None = None
        self._cmd_step = 0
        self._estopped = False
        self._warned_estop = False

    def close(self) -> None:
        """Refuse further commands. Safe to call twice; the world owns the simulation."""
        self._closed = True
        self._cmd = None

    # ------------------------------------------------------------------ Body contract

    @property
    def action_space(self) -> Box:
        """The action bounds, `action_low` ... `action_high`, as a Box."""
        return self._action_space

    @property
    def t(self) -> float:
        """Sim time (s) since the last spawn."""
        return self.steps * self.h

    def command(self, action: Any) -> None:
        """Hold `action` (A,), clipped to the bounds, until the next command.

        Raises BodyError, changing nothing, when `action` is not a finite real
        array of shape (A,). Ignored (after validation) while e-stopped.
        """
        self._check_live()
        shape = self._action_space.shape
        try:
            arr = np.asarray(action)
        except Exception as exc:  # arbitrary objects may fail to convert in many ways
            raise BodyError(f"action must be a numeric array of shape {shape}, got {type(action).__name__}") from exc
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise BodyError(f"action must be real {self.action_doc}, got dtype {arr.dtype} from {action!r}")
        if arr.shape != shape:
            raise BodyError(f"action must have shape {shape}, {self.action_doc}, got shape {arr.shape}")
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise BodyError(f"action must be finite, got {arr.tolist()}")
        if self._estopped:
            if not self._warned_estop:
                log.warning("%s: e-stop latched, ignoring commands until release()", self.label)
                self._warned_estop = True
            return
        self._cmd = tuple(float(v) for v in self._action_space.clip(arr))
        self._cmd_step = self.steps

    def stop(self) -> None:
        """Stop (see the subclass) and hold still until the next command."""
        self._cmd = None

    def estop(self) -> None:
        """Latch stop: commands are ignored until `release()`."""
        if not self._estopped:
            log.warning("%s: e-stop", self.label)
        self._estopped = True
        self._warned_estop = False
        self._cmd = None

    def release(self) -> None:
        """Clear the e-stop latch; the body keeps holding still until the next command."""
        self._estopped = False
        self._cmd = None

    @property
    def estopped(self) -> bool:
        """Whether the e-stop latch is set."""
        return self._estopped

    @property
    def held_command(self) -> tuple[float, ...] | None:
        """The action being held, or None when stopped."""
        return self._cmd

    # ------------------------------------------------------------------ for subclasses

    def _live_command(self) -> tuple[float, ...] | None:
        """The held command while it is fresh; None when stopped, e-stopped or stale (the watchdog)."""
        cmd = self._cmd
        if cmd is not None and self.steps - self._cmd_step < self.watchdog_steps:
            return cmd
        return None

    def _check_live(self) -> None:
        if self._closed:
            raise BodyError(f"{self.label} is closed")
        if self.body_id is None:
            raise BodyError(f"{self.label} is not spawned yet: call world.reset(seed) first")
