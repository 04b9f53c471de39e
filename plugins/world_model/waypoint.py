"""World model `waypoint`: an abstract, coarse-time model for the upper levels of a hierarchy.

One step of this model stands for `every` control steps of the level below:
the action is the displacement (m) the level below is asked to make in that
time, and the next abstract state is where it ends. The state also remembers
where the step began, so a guardrail can check the whole leg, not only its end:

    state  (x_1..x_n, p_1..p_n): position now, position at the start of this leg (m)
    action (d_1..d_n): displacement over the leg, |d_i| <= max_step (m)

The model is exact about geometry and silent about dynamics: the level below
owns speed, braking and the fine guardrails; this level only has to propose
legs that a body could follow clear of walls and zones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from amiagent.contracts import WorldModel
from amiagent.errors import ConfigError
from amiagent.plugins.world_model.axes import declare_axes


class WaypointModel(WorldModel):
    """Batched leg-by-leg positions; see the module docstring."""

    @dataclass(frozen=True)
    class Params:
        dims: int = 2
        """Spatial dimensions n; the state is 2n long (position, start of leg), the action n."""
        max_step: float = 1.0
        """Largest displacement per axis in one abstract step (m): what the level below covers in `dt`."""
        dt: float = 1.0
        """Seconds one abstract step stands for (every x the control period)."""

        def __post_init__(self) -> None:
            if self.dims < 1 or self.max_step <= 0 or self.dt <= 0:
                raise ConfigError(f"waypoint: dims >= 1, max_step > 0 and dt > 0 required, got {self}")

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        p = self.params
        declare_axes(self, p.dims, p.dt, p.max_step)

    def rollout(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        n = self.params.dims
        batch, horizon = actions.shape[:2]
        start = states[:, :n].unsqueeze(1)  # (B or 1, 1, n)
        ends = start + actions.cumsum(dim=1)  # (B, H, n)
        begins = torch.cat([start.expand(batch, 1, n), ends[:, :-1]], dim=1)
        return torch.cat([ends, begins], dim=-1)
