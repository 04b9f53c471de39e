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
from amiagent.plugins.world_model.axes import declare_axes


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
        declare_axes(self, p.dims, p.dt, p.max_accel)
        h = p.dt / p.substeps
        # Position gain of a held acceleration over n semi-implicit substeps: h^2 n(n+1)/2.
        self._accel_gain = h * h * p.substeps * (p.substeps + 1) / 2
        self._kernels: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._coast_cache: tuple = (None, None, None)

    def rollout(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        n = self.params.dims
        batch, horizon = actions.shape[:2]
        kernel, steps = self._kernel(horizon)
        # every predicted state is linear in the actions: one matmul of the
        # (B, H * n) actions gives (B, 2, n, H) = (position | velocity, axis, step)
        out = (actions.reshape(batch, horizon * n) @ kernel).view(batch, 2, n, horizon)
        out += self._coast(states, horizon, steps)
        # a (B, H, 2n) view whose (B, H) planes are contiguous: the layout cost terms read fastest
        return out.view(batch, 2 * n, horizon).mT

    def _coast(self, states: torch.Tensor, horizon: int, steps: torch.Tensor) -> torch.Tensor:
        """(B or 1, 2, n, H): positions and velocities if no action were applied.

        A planner rolls out many batches from one start state: the result is
        kept for the same, unmodified tensor (`_version` counts in-place changes).
        """
        key = (id(states), states._version, horizon)
        cached = self._coast_cache  # one read: another thread may replace it meanwhile
        if cached[0] == key and cached[1] is states:
            return cached[2]
        n = self.params.dims
        p0, v0 = states[:, :n, None], states[:, n:, None]  # (B or 1, n, 1)
        coast = torch.stack([p0 + self.dt * v0 * steps, v0.expand(-1, -1, horizon)], dim=1)
        self._coast_cache = (key, states, coast)
        return coast

    def _kernel(self, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (H n, 2 n H) kernel from actions (step, axis) to states (kind, axis, step), and steps 1..H."""
        cached = self._kernels.get(horizon)
        if cached is not None:
            return cached
        dt, n = self.dt, self.params.dims
        k = torch.arange(horizon, dtype=torch.float64)
        lag = k.view(1, -1) - k.view(-1, 1)  # [j, k] = k - j
        causal = lag >= 0
        # p_k = p0 + k dt v0 + sum_{j<=k} (dt^2 (k - j) + g) a_j ;  v_k = v0 + dt sum_{j<=k} a_j
        pos = torch.where(causal, dt * dt * lag + self._accel_gain, 0.0)
        vel = torch.where(causal, dt, 0.0)
        per_kind = torch.stack([pos, vel])  # (2, H_j, H_k)
        # axes do not mix: [j, a, kind, b, k] = per_kind[kind, j, k] * (a == b)
        kernel = torch.einsum("cjk,ab->jacbk", per_kind, torch.eye(n, dtype=torch.float64))
        entry = (kernel.reshape(horizon * n, 2 * n * horizon).float(), (k + 1).float())
        self._kernels[horizon] = entry  # a dict store is atomic: racing threads store equal entries
        return entry

    def brake_action(self, states: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, A): decelerate along the velocity, as hard as the per-axis bound allows.

        Braking in a straight line keeps the stopping path on the segment the
        position guardrails check; it never reverses past zero within a step.
        """
        vel = states[:, self.params.dims :]
        peak = vel.abs().amax(dim=1, keepdim=True).clamp_min(1e-9)
        gain = torch.clamp(self.params.max_accel / peak, max=1.0 / self.dt)
        return -vel * gain
