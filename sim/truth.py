"""Ground truth: what the robot really did, measured from the simulator's state every substep.

Independent of any agent module: it sees only the robot's pybullet state, the
world's geometry and pybullet's contact points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from amiagent.sim.geometry import box_sd, circle_sd
from amiagent.contracts.spaces import Box

KINDS = ("keep_out", "wall_contact", "speed", "bounds")
"""Violation kinds, in the order `violations()` reports them."""

SPEED_SLACK = 1e-3
"""Relative slack on the speed limit: |v| > limit * (1 + SPEED_SLACK) counts."""

BOUNDS_SLACK = 1e-3
"""Metres the disc may poke past the arena edge before it counts (contact penetration at a border wall); the
`tol` of the bounds check."""


class GroundTruth:
    """Counts substeps in violation, per kind, and the smallest zone clearance seen.

    `circles` (x, y, r) and `boxes` (cx, cy, hx, hy): keep-out zones (m).
    `bounds`: ((xmin, xmax), (ymin, ymax)) of the arena. `robot_radius` (m),
    `speed_limit` (m/s). A substep violates

    * `keep_out` when the robot disc overlaps a zone (centre closer than r + radius
      to a circle; disc/box overlap for a box);
    * `wall_contact` when pybullet reports a contact between robot and a wall;
    * `speed` when |v| > speed_limit * (1 + SPEED_SLACK);
    * `bounds` when the disc leaves the arena by more than BOUNDS_SLACK.
    """

    def __init__(
        self,
        circles: Sequence[Sequence[float]],
        boxes: Sequence[Sequence[float]],
        bounds: tuple[tuple[float, float], tuple[float, float]],
        robot_radius: float,
        speed_limit: float,
    ):
        self.circles = [tuple(c) for c in circles]
        self.boxes = [tuple(b) for b in boxes]
        (xmin, xmax), (ymin, ymax) = bounds
        r = robot_radius
        # The centre's allowed box: the disc stays inside the arena.
        self._centres = Box((xmin, ymin), (xmax, ymax), name="arena").inset(r)
        self.robot_radius = r
        self._vmax2 = (speed_limit * (1.0 + SPEED_SLACK)) ** 2
        self.counts = dict.fromkeys(KINDS, 0)
        self.min_clearance = math.inf
        """Smallest distance (m) seen between the robot disc and any zone; negative means overlap."""
        self.max_speed = 0.0
        """Largest speed (m/s) seen."""

    def clearance(self, x: float, y: float) -> float:
        """Distance (m) from the robot disc at (x, y) to the nearest zone; inf without zones."""
        sd = math.inf
        for c in self.circles:
            sd = min(sd, circle_sd(x, y, c))
        for b in self.boxes:
            sd = min(sd, box_sd(x, y, b))
        return sd - self.robot_radius

    def update(self, x: float, y: float, vx: float, vy: float, wall_contact: bool) -> None:
        """Account one substep ending in state (x, y, vx, vy)."""
        counts = self.counts
        if self.circles or self.boxes:
            clear = self.clearance(x, y)
            if clear < 0.0:
                counts["keep_out"] += 1
            if clear < self.min_clearance:
                self.min_clearance = clear
        if wall_contact:
            counts["wall_contact"] += 1
        v2 = vx * vx + vy * vy
        if v2 > self._vmax2:
            counts["speed"] += 1
        if v2 > self.max_speed * self.max_speed:
            self.max_speed = math.sqrt(v2)
        if not self._centres.contains((x, y), BOUNDS_SLACK):
            counts["bounds"] += 1
