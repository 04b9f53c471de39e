"""Ordinary intrinsic cost terms, traded off against each other by weight."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from amiagent.contracts import CostTerm, Settings
from amiagent.errors import ConfigError
from amiagent.plugins.cost.geodesic import FieldLookup, Grid, distance_field, zone_mask
from amiagent.plugins.cost.planes import plane_norm
from amiagent.plugins.cost.sections import read


class GoalDistance(CostTerm):
    """Distance (m) from the chosen state dims to the goal, per step.

    `metric="euclidean"`: the straight-line distance. `metric="geodesic"` (2-D
    only): the shortest way around the keep-out zones of the settings, from a
    grid field rebuilt whenever settings change (see `geodesic.py`); it has no
    local minimum in front of a zone. The last step is weighted `terminal`,
    every other step `running`: `terminal` > `running` makes plans end at the
    goal rather than pass through it; `running: 0` scores only where a plan
    ends (with a path-length term, the shortest way to the goal).
    """

    @dataclass(frozen=True)
    class Params:
        dims: tuple[int, ...] = (0, 1)
        terminal: float = 1.0
        running: float = 1.0
        """Weight of every step but the last."""
        metric: str = "euclidean"
        cell: float = 0.1
        """Geodesic grid cell size (m)."""
        inflate: float = 0.35
        """Zones grow by this much (m) in the geodesic field: body radius plus room to pass."""
        penalty: float = 10.0
        """Geodesic cost factor inside zones."""

        def __post_init__(self) -> None:
            if not self.dims or self.terminal < 0 or self.running < 0:
                raise ConfigError(f"goal_distance: dims must be non-empty, terminal and running >= 0, got {self}")
            if self.metric not in ("euclidean", "geodesic"):
                raise ConfigError(f"goal_distance: metric must be 'euclidean' or 'geodesic', got {self.metric!r}")
            if self.metric == "geodesic" and (len(self.dims) != 2 or self.cell <= 0 or self.penalty < 1):
                raise ConfigError("goal_distance: geodesic needs 2 dims, cell > 0 and penalty >= 1")

    reads = ("keep_out", "workspace_bounds")
    """The geodesic metric routes around the zones, within the workspace."""

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self._index = list(self.params.dims)
        self._goal: torch.Tensor | None = None
        self._step_weights: dict[int, torch.Tensor] = {}

    def apply(self, settings: Settings) -> None:
        goal = settings.goal_tensor()
        if max(self._index) >= goal.shape[0]:
            raise ConfigError(f"goal_distance: dims {self.params.dims} exceed the goal's length {goal.shape[0]}")
        self._goal = goal[self._index]
        self._goal_values = self._goal.tolist()
        if self.params.metric == "geodesic":
            self._field = self._geodesic(settings)

    def evaluate(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self._goal is None:
            raise ConfigError("goal_distance: no goal yet; the configurator's settings were never applied")
        if self.params.metric == "geodesic":
            planes = states.unbind(-1)
            dist = self._field(planes[self._index[0]], planes[self._index[1]])
        else:
            planes = states.unbind(-1)
            dist = plane_norm([planes[i] - g for i, g in zip(self._index, self._goal_values)])
        return dist * self._weights_for(dist.shape[1])

    def _weights_for(self, horizon: int) -> torch.Tensor:
        weights = self._step_weights.get(horizon)
        if weights is None:
            weights = torch.full((horizon,), float(self.params.running))
            weights[-1] = self.params.terminal
            self._step_weights[horizon] = weights  # atomic store; safe with the planning thread
        return weights


    def _geodesic(self, settings: Settings) -> FieldLookup:
        zones = read(settings, self, "keep_out") or {}
        circles, boxes = zones.get("circles", []), zones.get("boxes", [])
        gx, gy = self._goal_values
        bounds = read(settings, self, "workspace_bounds")
        if bounds:
            (x0, y0), (x1, y1) = bounds["low"], bounds["high"]
        else:  # no workspace given: a square around the goal and zones
            extent = [abs(v) for z in list(circles) + list(boxes) for v in z[:2]] + [abs(gx), abs(gy)]
            x0 = y0 = -(max(extent) + 5.0)
            x1 = y1 = max(extent) + 5.0
        cell = self.params.cell
        grid = Grid(x0, y0, cell, max(2, math.ceil((x1 - x0) / cell)), max(2, math.ceil((y1 - y0) / cell)))
        blocked = zone_mask(grid, circles, boxes, float(zones.get("robot_radius", 0.0)) + self.params.inflate)
        return FieldLookup(grid, distance_field(grid, (gx, gy), blocked, self.params.penalty))


class ActionEffort(CostTerm):
    """Squared action magnitude per step ((m/s^2)^2 for accelerations)."""

    def evaluate(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if actions.shape[-1] == 2:  # planes: faster on CPU than a sum over a last dimension of 2
            x, y = actions.unbind(-1)
            return torch.addcmul(x * x, y, y)
        return actions.square().sum(dim=-1)


class ActionNorm(CostTerm):
    """Euclidean norm of the action per step: for a waypoint model's legs, the path length (m)."""

    def evaluate(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return plane_norm(actions.unbind(-1))
