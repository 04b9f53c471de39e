"""Cost term `latent_goal`: distance to the goal's embedding, for world models that plan in latent space."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from amiagent.contracts import CostTerm, Settings
from amiagent.errors import ConfigError


class LatentGoal(CostTerm):
    """Euclidean distance between the latent part of each state (dims `start`:) and the goal's.

    The goal is what perception made of the goal observation, so this is the
    distance to the goal image's embedding. The last step is weighted
    `terminal`, every other step `running`.
    """

    @dataclass(frozen=True)
    class Params:
        start: int = 4
        """First latent dim of the state (`perception.jepa` puts the probe's S physical dims first)."""
        terminal: float = 1.0
        running: float = 1.0

        def __post_init__(self) -> None:
            if self.start < 0 or self.terminal < 0 or self.running < 0:
                raise ConfigError(f"latent_goal: start, terminal and running must be >= 0, got {self}")

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self._goal: torch.Tensor | None = None
        self._weights: dict[int, torch.Tensor] = {}  # horizon -> per-step weights

    def apply(self, settings: Settings) -> None:
        goal = settings.goal_tensor()
        if goal.shape[0] <= self.params.start:
            raise ConfigError(f"latent_goal: the goal has {goal.shape[0]} dims, none from start={self.params.start}")
        self._goal = goal[self.params.start:]

    def evaluate(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self._goal is None:
            raise ConfigError("latent_goal: no goal yet; the configurator's settings were never applied")
        latent = states[..., self.params.start:]
        if latent.shape[-1] != self._goal.shape[0]:
            raise ConfigError(f"latent_goal: states have {latent.shape[-1]} latent dims, the goal "
                              f"{self._goal.shape[0]}")
        dist = (latent - self._goal).norm(dim=-1)
        weights = self._weights.get(dist.shape[1])
        if weights is None:
            weights = torch.full((dist.shape[1],), float(self.params.running))
            weights[-1] = self.params.terminal
            self._weights[dist.shape[1]] = weights  # one store of a finished tensor: safe across threads
        return dist * weights

    def example_settings(self) -> Settings:
        """Settings the checker can use: a goal with 4 physical and 8 latent dims."""
        return Settings(goal=tuple([0.5, -0.5, 0.0, 0.0] + [0.1 * i for i in range(8)]))
