"""Geodesic distance-to-goal fields on a grid, around keep-out zones.

A flat planner that scores plans by straight-line distance stalls in front of
a zone that lies across the line to the goal. A distance field that measures
the shortest way around the zones has no such local minimum, so it makes a
sound cost-to-go. Zones are not walls here: crossing them costs `penalty`
times more, so a goal inside a zone still has a gradient to the nearest edge
(the guardrails, not this field, keep the body out).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

_NEIGHBOURS = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx, dy) != (0, 0)]


@dataclass(frozen=True)
class Grid:
    """A square-celled grid over [x0, x0 + nx*cell] x [y0, y0 + ny*cell]; values at cell centres."""

    x0: float
    y0: float
    cell: float
    nx: int
    ny: int

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        xs = self.x0 + (np.arange(self.nx) + 0.5) * self.cell
        ys = self.y0 + (np.arange(self.ny) + 0.5) * self.cell
        return np.meshgrid(xs, ys, indexing="ij")  # (nx, ny) each


def zone_mask(grid: Grid, circles: Sequence[Sequence[float]], boxes: Sequence[Sequence[float]],
              inflate: float) -> np.ndarray:
    """(nx, ny) bool: cell centres inside a zone grown by `inflate` (m)."""
    x, y = grid.centres()
    mask = np.zeros_like(x, dtype=bool)
    for cx, cy, r in circles:
        mask |= np.hypot(x - cx, y - cy) < r + inflate
    for cx, cy, hx, hy in boxes:
        qx, qy = np.abs(x - cx) - hx, np.abs(y - cy) - hy
        outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
        mask |= outside + np.minimum(np.maximum(qx, qy), 0) < inflate
    return mask


def distance_field(grid: Grid, goal: tuple[float, float], blocked: np.ndarray, penalty: float,
                   seed_radius: float = 0.5) -> np.ndarray:
    """(nx, ny) shortest-path distance (m) to `goal` over the 8-connected grid.

    Cells within `seed_radius` of the goal start at their straight-line distance,
    so the field is smooth where the plan ends. Relaxation sweeps in numpy run
    until nothing changes (Bellman-Ford on a grid: a few hundred cheap sweeps).
    """
    x, y = grid.centres()
    step_cost = np.where(blocked, penalty, 1.0) * grid.cell
    field = np.full(x.shape, np.inf)
    near = np.hypot(x - goal[0], y - goal[1])
    seeds = near <= max(seed_radius, grid.cell)
    field[seeds] = near[seeds] * np.where(blocked[seeds], penalty, 1.0)
    for _ in range(4 * (grid.nx + grid.ny)):
        before = field.copy()
        for dx, dy in _NEIGHBOURS:
            length = math.hypot(dx, dy)
            src = field[max(-dx, 0) : grid.nx - max(dx, 0), max(-dy, 0) : grid.ny - max(dy, 0)]
            dst = (slice(max(dx, 0), grid.nx - max(-dx, 0)), slice(max(dy, 0), grid.ny - max(-dy, 0)))
            np.minimum(field[dst], src + length * step_cost[dst], out=field[dst])
        if np.array_equal(before, field):
            break
    return field


class FieldLookup:
    """Bilinear lookup of a grid field for batched torch positions; outside the grid adds the overshoot."""

    def __init__(self, grid: Grid, field: np.ndarray):
        self.grid = grid
        # grid_sample wants (N, C, rows=y, cols=x)
        self.image = torch.as_tensor(field.T, dtype=torch.float32).contiguous().view(1, 1, grid.ny, grid.nx)
        # cell centres span [lo, hi]; grid_sample's align_corners=True maps them to [-1, 1]
        self._lo = (grid.x0 + 0.5 * grid.cell, grid.y0 + 0.5 * grid.cell)
        self._hi = (grid.x0 + (grid.nx - 0.5) * grid.cell, grid.y0 + (grid.ny - 0.5) * grid.cell)
        self._scale = (2 / (self._hi[0] - self._lo[0]), 2 / (self._hi[1] - self._lo[1]))

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        (x0, y0), (x1, y1) = self._lo, self._hi
        cx, cy = x.clamp(x0, x1), y.clamp(y0, y1)
        where = torch.stack([(cx - x0) * self._scale[0] - 1, (cy - y0) * self._scale[1] - 1], dim=-1)
        value = F.grid_sample(self.image, where.view(1, -1, 1, 2), mode="bilinear", align_corners=True)
        # beyond the grid: add the distance back to its edge
        return value.view(x.shape) + torch.hypot(x - cx, y - cy)
