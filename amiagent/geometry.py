"""Plane geometry every layer may use: signed distances to the zones and walls a task names.

World-frame metres in the ground plane (x, y). Zones are plain tuples, as they
cross the wire and sit in a task's constraints:

    circle  (x, y, r)        centre and radius
    box     (cx, cy, hx, hy) centre and half-sizes, axis-aligned

Pure maths on floats: the simulator's zone sampling and ground truth
(`amiagent.sim.geometry`, `amiagent.sim.truth`) build on it, and so do core
modules such as the scripted policies, which must not import the simulator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def circle_sd(x: float, y: float, c: Sequence[float]) -> float:
    """Signed distance (m) from point (x, y) to circle `c`; negative inside."""
    return math.hypot(x - c[0], y - c[1]) - c[2]


def box_sd(x: float, y: float, b: Sequence[float]) -> float:
    """Signed distance (m) from point (x, y) to axis-aligned box `b`; negative inside."""
    dx = abs(x - b[0]) - b[2]
    dy = abs(y - b[1]) - b[3]
    if dx <= 0.0 and dy <= 0.0:
        return max(dx, dy)
    return math.hypot(max(dx, 0.0), max(dy, 0.0))


def zone_sd(x: float, y: float, zone: Sequence[float]) -> float:
    """Signed distance from (x, y) to a circle (3 values) or a box (4 values)."""
    return circle_sd(x, y, zone) if len(zone) == 3 else box_sd(x, y, zone)
