"""Plane geometry for the sim worlds: gaps between zones and keep-out zone sampling.

Coordinates and zone tuples as in `amiagent.geometry`, whose signed distances
(`circle_sd`, `box_sd`, `zone_sd`) are used from here. No simulator is
imported here: ground truth and zone placement are pure maths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from amiagent.errors import ConfigError
from amiagent.geometry import box_sd, circle_sd, zone_sd

# the core's signed distances are part of the sim's geometry too (ground truth and tests use them from here)
__all__ = [
    "Circle", "Point", "Rect", "ZoneRules", "allowed", "box_sd", "circle_sd", "random_zone", "sample_zones",
    "segment_distance", "split_zones", "zone_extent", "zone_gap", "zone_sd",
]

Circle = tuple[float, float, float]
Rect = tuple[float, float, float, float]
Point = tuple[float, float]


def zone_gap(a: Sequence[float], b: Sequence[float]) -> float:
    """Distance (m) between two zones' boundaries; <= 0 when they touch or overlap.

    Exact for circle/circle, circle/box and box/box.
    """
    if len(a) == 4 and len(b) == 4:
        dx = abs(a[0] - b[0]) - a[2] - b[2]
        dy = abs(a[1] - b[1]) - a[3] - b[3]
        if dx <= 0.0 and dy <= 0.0:
            return max(dx, dy)
        return math.hypot(max(dx, 0.0), max(dy, 0.0))
    if len(a) == 3 and len(b) == 3:
        return math.hypot(a[0] - b[0], a[1] - b[1]) - a[2] - b[2]
    circle, other = (a, b) if len(a) == 3 else (b, a)
    return zone_sd(circle[0], circle[1], other) - circle[2]


def segment_distance(p: Point, a: Point, b: Point) -> float:
    """Distance (m) from point `p` to the segment a-b."""
    ax, ay = b[0] - a[0], b[1] - a[1]
    t = ((p[0] - a[0]) * ax + (p[1] - a[1]) * ay) / max(ax * ax + ay * ay, 1e-12)
    t = min(max(t, 0.0), 1.0)
    return math.hypot(p[0] - a[0] - t * ax, p[1] - a[1] - t * ay)


@dataclass(frozen=True)
class ZoneRules:
    """How zones may be placed.

    `clear_of`: points (start, goal) every zone keeps `point_clearance` (m) from.
    `obstacles`: zones or walls every new zone keeps `gap` (m) from, as do zones
    from each other; `gap` >= the robot's diameter leaves a passage between them.
    `bounds`: ((xmin, xmax), (ymin, ymax)); zones keep `gap` from the border too.
    """

    clear_of: tuple[Point, ...]
    point_clearance: float
    gap: float
    bounds: tuple[tuple[float, float], tuple[float, float]]
    obstacles: tuple[tuple[float, ...], ...] = ()


def random_zone(rng: np.random.Generator, centre: Point) -> tuple[float, ...]:
    """A circle (r in [0.4, 0.9] m) or a box (half-sizes in [0.3, 0.8] m), equally likely, at `centre`."""
    if rng.random() < 0.5:
        return (float(centre[0]), float(centre[1]), float(rng.uniform(0.4, 0.9)))
    hx, hy = rng.uniform(0.3, 0.8, size=2)
    return (float(centre[0]), float(centre[1]), float(hx), float(hy))


def zone_extent(zone: Sequence[float]) -> tuple[float, float]:
    """Half-extents (m) of a zone's bounding box."""
    return (zone[2], zone[2]) if len(zone) == 3 else (zone[2], zone[3])


def allowed(zone: Sequence[float], placed: Sequence[Sequence[float]], rules: ZoneRules) -> bool:
    """Whether `zone` obeys `rules` next to the zones already `placed`."""
    (xmin, xmax), (ymin, ymax) = rules.bounds
    ex, ey = zone_extent(zone)
    if (zone[0] - ex - xmin < rules.gap or xmax - zone[0] - ex < rules.gap
            or zone[1] - ey - ymin < rules.gap or ymax - zone[1] - ey < rules.gap):
        return False
    if any(zone_sd(px, py, zone) < rules.point_clearance for px, py in rules.clear_of):
        return False
    return all(zone_gap(zone, other) >= rules.gap for other in (*rules.obstacles, *placed))


def sample_zones(
    rng: np.random.Generator,
    n: int,
    centre: Callable[[np.random.Generator], Point],
    rules: ZoneRules,
    placed: Sequence[tuple[float, ...]] = (),
    restarts: int = 50,
    draws: int = 200,
) -> list[tuple[float, ...]]:
    """Draw `n` zones by rejection: centres from `centre(rng)`, shapes from `random_zone`.

    Returns `placed` plus the new zones. Greedy placement can paint itself into
    a corner, so after `draws` rejected draws in a row it starts over, up to
    `restarts` times; then it raises ConfigError (too many zones for the space).
    """
    for _ in range(restarts):
        zones, misses = list(placed), 0
        while len(zones) < len(placed) + n and misses < draws:
            zone = random_zone(rng, centre(rng))
            if allowed(zone, zones, rules):
                zones.append(zone)
                misses = 0
            else:
                misses += 1
        if len(zones) == len(placed) + n:
            return zones
    raise ConfigError(f"could not place {n} keep-out zones after {restarts} restarts; lower n_zones")


def split_zones(zones: Sequence[Sequence[float]]) -> tuple[list[Circle], list[Rect]]:
    """Circles and boxes of a mixed zone list, as tuples of plain floats."""
    circles = [tuple(float(v) for v in z) for z in zones if len(z) == 3]
    boxes = [tuple(float(v) for v in z) for z in zones if len(z) == 4]
    return circles, boxes  # type: ignore[return-value]
