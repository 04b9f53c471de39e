"""World model `point_mass`: an analytic, batched double integrator.

State (x..., v...) with n position and n velocity components, action the
acceleration (m/s^2). One step holds the action for `dt` seconds, integrated in
`substeps` semi-implicit Euler substeps (v += a h; p += v h) exactly as the
simulator does, so predictions match pybullet to float precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from amiagent.contracts import WorldModel
from amiagent.errors import ConfigError


class PointMass(WorldModel):
    """Batched double integrator with box-bounded acceleration."""

    @dataclass(frozen=True)
    class Params:
        dims: int = 2
        """Spatial dimensions n; the state is 2n long, the action n."""
        dt: float = 0.1
        """Seconds per control step."""
        substeps: int = 24
        """Physics substeps per control step (240 Hz at dt=0.1)."""
        max_accel: float = 2.0
        """Acceleration bound per axis, m/s^2."""

        def __post_init__(self) -> None:
            if self.dims < 1 or self.dt <= 0 or self.substeps < 1 or self.max_accel <= 0:
                raise ConfigError(f"point_mass: dims, dt, substeps and max_accel must be positive, got {self}")

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        p = self.params
        self.state_dim = 2 * p.dims
        self.action_dim = p.dims
        self.dt = p.dt
        self.action_low = torch.full((p.dims,), -p.max_accel)
        self.action_high = torch.full((p.dims,), p.max_accel)
        h = p.dt / p.substeps
        # Position gain of a held acceleration over n semi-implicit substeps: h^2 n(n+1)/2.
        self._accel_gain = h * h * p.substeps * (p.substeps + 1) / 2
        self._step_index = torch.zeros(1, 0, 1)

    def rollout(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        n, dt = self.params.dims, self.dt
        batch, horizon = actions.shape[:2]
        p0, v0 = states[:, None, :n], states[:, None, n:]  # (B or 1, 1, n)
        acc_sum = torch.cumsum(actions, dim=1)  # S_k = a_1 + ... + a_k, (B, H, n)
        out = actions.new_empty(batch, horizon, 2 * n)
        torch.add(v0, acc_sum, alpha=dt, out=out[..., n:])
        # p_k = p0 + dt * sum_{j<k} v_j + g S_k, with sum_{j<k} v_j = k v0 + dt sum_{j<k} S_j
        prev_sums = torch.cumsum(acc_sum, dim=1) - acc_sum
        out[..., :n] = p0 + dt * self._steps(horizon) * v0 + (dt * dt) * prev_sums + self._accel_gain * acc_sum
        return out

    def _steps(self, horizon: int) -> torch.Tensor:
        if self._step_index.shape[1] != horizon:
            self._step_index = torch.arange(1, horizon + 1, dtype=torch.float32).view(1, horizon, 1)
        return self._step_index

    def brake_action(self, states: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, A): decelerate along the velocity, as hard as the per-axis bound allows.

        Braking in a straight line keeps the stopping path on the segment the
        position guardrails check; it never reverses past zero within a step.
        """
        vel = states[:, self.params.dims :]
        peak = vel.abs().amax(dim=1, keepdim=True).clamp_min(1e-9)
        gain = torch.clamp(self.params.max_accel / peak, max=1.0 / self.dt)
        return -vel * gain
