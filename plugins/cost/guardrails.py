"""Guardrails: per-step violation amounts (m, or m/s), zero when the step is safe.

Position guardrails can look ahead to where the body would come to rest if it
braked now (`braking=True`): a state counts as unsafe when the braking path
enters a zone, so a plan can never coast into a place where stopping is no
longer possible. Zones and limits arrive through the settings (from the task);
each guardrail declares the sections it reads in `reads` (see `sections.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from amiagent.contracts import Guardrail, Settings
from amiagent.errors import ConfigError
from amiagent.plugins.cost.planes import plane_norm
from amiagent.plugins.cost.sections import read

# Fractions of the braking path checked, shaped (P, 1, 1). Three points keep a
# chord from cutting more than ~2 cm into an inflated zone at 1.5 m/s and 2 m/s^2;
# for a convex region such as the workspace box the two end points are exact.
_PATH_FRACTIONS = torch.tensor([0.0, 0.5, 1.0]).view(-1, 1, 1)
_END_FRACTIONS = torch.tensor([0.0, 1.0]).view(-1, 1, 1)


@dataclass(frozen=True)
class _PositionParams:
    margin: float = 0.05
    """Extra clearance (m) on top of the body radius."""
    braking: bool = True
    """Also check the braking path from each state."""
    max_accel: float = 2.0
    """Braking deceleration (m/s^2) assumed for the look-ahead; keep it <= the body's."""
    dims: int = 2
    """Spatial dimensions; the state is (position, velocity)."""

    def __post_init__(self) -> None:
        if self.margin < 0 or self.max_accel <= 0 or self.dims < 1:
            raise ConfigError(f"guardrail: margin >= 0, max_accel > 0, dims >= 1 required, got {self}")


def _check_points(states: torch.Tensor, params: _PositionParams, fractions: torch.Tensor) -> list[torch.Tensor]:
    """(B, H, D) -> one (P, B, H) tensor per axis: the positions to check.

    Kept as one plane per axis: torch's CPU kernels are several times slower on
    broadcasts whose innermost dimension is 2 than on (B, H) planes.
    """
    n = params.dims
    planes = states.unbind(-1)
    pos = planes[:n]
    if not params.braking:
        return [p.unsqueeze(0) for p in pos]
    vel = planes[n : 2 * n]
    speed = plane_norm(vel)
    scale = speed / (2 * params.max_accel)  # braking displacement = v * |v| / (2 a)
    return [p + fractions * (v * scale) for p, v in zip(pos, vel)]


class KeepOut(Guardrail):
    """Keeps the body's disc out of circles [x, y, r] and boxes [cx, cy, hx, hy].

    Violation: penetration depth (m) of the inflated disc, the deepest of the
    checked points, summed over zones.
    """

    Params = _PositionParams
    reads = ("keep_out",)

    def __init__(self, params: _PositionParams | None = None):
        super().__init__(params)
        if self.params.dims != 2:
            raise ConfigError(f"keep_out works in the plane: dims must be 2, got {self.params.dims}")
        self._circles = torch.zeros(0, 3)
        self._boxes = torch.zeros(0, 4)
        self._inflate = self.params.margin

    def apply(self, settings: Settings) -> None:
        zones = read(settings, self) or {}
        self._circles = torch.tensor(zones.get("circles", []), dtype=torch.float32).reshape(-1, 3)
        self._boxes = torch.tensor(zones.get("boxes", []), dtype=torch.float32).reshape(-1, 4)
        self._inflate = float(zones.get("robot_radius", 0.0)) + self.params.margin

    def violation(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x, y = _check_points(states, self.params, _PATH_FRACTIONS)  # (P, B, H) each
        return _zone_depth(x, y, self._circles, self._boxes, self._inflate, states)


def _zone_depth(x: torch.Tensor, y: torch.Tensor, circles: torch.Tensor, boxes: torch.Tensor, inflate: float,
                states: torch.Tensor) -> torch.Tensor:
    """Points (P, B, H) per axis -> (B, H): the deepest point's penetration of each inflated zone, summed
    over zones."""
    depths = []
    if len(circles):
        c = circles.view(-1, 3, 1, 1, 1)  # zones lead, (B, H) planes stay innermost
        dist = torch.hypot(x - c[:, 0], y - c[:, 1])  # (C, P, B, H)
        depths.append(torch.relu((c[:, 2] + inflate) - dist))
    if len(boxes):
        b = boxes.view(-1, 4, 1, 1, 1)
        qx = (x - b[:, 0]).abs() - b[:, 2]  # (K, P, B, H)
        qy = (y - b[:, 1]).abs() - b[:, 3]
        outside = torch.hypot(torch.relu(qx), torch.relu(qy))
        inside = torch.clamp(torch.maximum(qx, qy), max=0.0)
        depths.append(torch.relu(inflate - (outside + inside)))
    if not depths:
        return states.new_zeros(states.shape[:2])
    total = None
    for depth in depths:
        per_zone = depth[:, 0] if depth.shape[1] == 1 else depth.amax(dim=1)
        zone_sum = per_zone[0] if per_zone.shape[0] == 1 else per_zone.sum(dim=0)
        total = zone_sum if total is None else total + zone_sum
    return total


class PathKeepOut(KeepOut):
    """Keeps whole legs clear of the keep-out zones: for states (x, y, px, py) of a waypoint model.

    A leg runs from (px, py), where it began, to (x, y). Points along it, at
    most `resolution` m apart, are checked like KeepOut's (the body's disc,
    inflated by its radius and `margin`); the violation of a step is the
    deepest point's penetration, summed over zones. Reads the same `keep_out`
    settings as KeepOut, so a coarse level sees the zones and walls the task
    names.
    """

    @dataclass(frozen=True)
    class Params:
        margin: float = 0.1
        """Extra clearance (m) on top of the body radius: a coarse leg should leave room to follow it."""
        resolution: float = 0.05
        """Largest gap (m) between checked points along a leg; keep it below the thinnest wall."""
        dims: int = 2

        def __post_init__(self) -> None:
            if self.margin < 0 or self.resolution <= 0 or self.dims != 2:
                raise ConfigError(f"path_keep_out: margin >= 0, resolution > 0 and dims == 2 required, got {self}")

    def violation(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x, y, px, py = states.unbind(-1)[:4]
        longest = float(torch.hypot(x - px, y - py).max()) if x.numel() else 0.0
        count = max(2, math.ceil(longest / self.params.resolution) + 1)
        f = torch.linspace(0.0, 1.0, count).view(-1, 1, 1)
        return _zone_depth(px + f * (x - px), py + f * (y - py), self._circles, self._boxes, self._inflate, states)


class WorkspaceBounds(Guardrail):
    """Keeps the body's disc inside the box [low, high] (m); violation is the overshoot."""

    Params = _PositionParams
    reads = ("workspace_bounds",)

    def __init__(self, params: _PositionParams | None = None):
        super().__init__(params)
        self._low: list[float] | None = None
        self._high: list[float] | None = None

    def apply(self, settings: Settings) -> None:
        bounds = read(settings, self)
        if not bounds:
            self._low = self._high = None
            return
        inflate = float(bounds.get("robot_radius", 0.0)) + self.params.margin
        self._low = [float(v) + inflate for v in bounds["low"]]
        self._high = [float(v) - inflate for v in bounds["high"]]

    def violation(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self._low is None:
            return states.new_zeros(states.shape[:2])
        over = sum(
            torch.relu(low - p) + torch.relu(p - high)
            for p, low, high in zip(_check_points(states, self.params, _END_FRACTIONS), self._low, self._high)
        )
        return over.amax(dim=0)


class SpeedLimit(Guardrail):
    """Keeps speed (m/s) at most `limit - margin`; violation is the excess speed."""

    @dataclass(frozen=True)
    class Params:
        margin: float = 0.02
        dims: int = 2
        limit: float = 0.0
        """Used when the settings give none; 0 means no limit until settings arrive."""

    reads = ("speed_limit",)

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self._limit = self.params.limit

    def apply(self, settings: Settings) -> None:
        self._limit = float((read(settings, self) or {}).get("limit", self.params.limit))

    def violation(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self._limit <= 0:
            return states.new_zeros(states.shape[:2])
        n = self.params.dims
        speed = plane_norm(states.unbind(-1)[n : 2 * n])
        return torch.relu(speed - (self._limit - self.params.margin))
