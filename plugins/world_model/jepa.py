"""World model `jepa`: rolls a trained JEPA predictor forward in latent space.

States are `[probe(z), z]` (see `perception.jepa`): each predicted latent is
read out by the probe, so guardrails written for physical states (keep-out,
speed) score imagined latent trajectories unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from amiagent.contracts import WorldModel
from amiagent.errors import ConfigError
from amiagent.learning.train import shared_model
from amiagent.contracts.spaces import Box


class JEPAModel(WorldModel):
    """The predictor of a JEPA checkpoint; the action bounds and time step come from its training data."""

    @dataclass(frozen=True)
    class Params:
        checkpoint: str = ""
        """Path of a checkpoint written by `amiagent train world_model=jepa`."""

        def __post_init__(self) -> None:
            if not self.checkpoint:
                raise ConfigError("world_model.jepa: params.checkpoint is required (a file from `amiagent train`)")

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self.model, info = shared_model(self.params.checkpoint)
        self.physical_dim = self.model.state_dim
        self.state_dim = self.physical_dim + self.model.latent_size
        self.action_dim = self.model.action_dim
        self.dt = float(info["dt"]) * self.model.cfg.stride
        if len(info["action_low"]) != self.action_dim:
            raise ConfigError(f"world_model.jepa: {self.params.checkpoint} has no action bounds for "
                              f"{self.action_dim} actions")
        self.action_low = torch.tensor(info["action_low"], dtype=torch.float32)
        self.action_high = torch.tensor(info["action_high"], dtype=torch.float32)
        self._bounds = Box.of_actions(self)

    @torch.inference_mode()
    def rollout(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        z = states[:, self.physical_dim:].expand(actions.shape[0], -1)
        out = []
        for step in range(actions.shape[1]):
            z = self.model.step(z, actions[:, step])
            out.append(z)
        latents = torch.stack(out, dim=1)                                   # (B, H, d)
        physical = self.model.probe(latents.reshape(-1, latents.shape[-1])).reshape(*latents.shape[:2], -1)
        return torch.cat([physical, latents], dim=-1).clone()

    def brake_action(self, states: torch.Tensor) -> torch.Tensor:
        """Oppose the probe's velocity (dims 2, 3 of the physical read-out) as hard as the bounds allow."""
        if self.physical_dim < 4:
            return super().brake_action(states)
        velocity = states[:, 2:4]
        return self._bounds.clip(-velocity / self.dt)
