"""What the n-axis world models (`point_mass`, `waypoint`) declare alike: their sizes and action bounds."""

from __future__ import annotations

import torch

from amiagent.contracts import WorldModel


def declare_axes(model: WorldModel, dims: int, dt: float, bound: float) -> None:
    """Set `model`'s contract sizes for n = `dims` axes: states of 2n values, actions of n within
    +-`bound` on every axis (float32), `dt` seconds a step."""
    model.state_dim, model.action_dim, model.dt = 2 * dims, dims, dt
    model.action_low = torch.full((dims,), -bound)
    model.action_high = torch.full((dims,), bound)
