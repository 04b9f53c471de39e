"""Ordinary intrinsic cost terms, traded off against each other by weight."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from amiagent.contracts import CostTerm, Settings
from amiagent.errors import ConfigError


class GoalDistance(CostTerm):
    """Euclidean distance (m) from the chosen state dims to the goal, per step.

    The last step is weighted `terminal` times more, so plans prefer to end at
    the goal rather than pass through it.
    """

    @dataclass(frozen=True)
    class Params:
        dims: tuple[int, ...] = (0, 1)
        terminal: float = 1.0

        def __post_init__(self) -> None:
            if not self.dims or self.terminal < 0:
                raise ConfigError(f"goal_distance: dims must be non-empty and terminal >= 0, got {self}")

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self._index = list(self.params.dims)
        self._goal: torch.Tensor | None = None
        self._step_weights: torch.Tensor | None = None

    def apply(self, settings: Settings) -> None:
        goal = settings.goal_tensor()
        if max(self._index) >= goal.shape[0]:
            raise ConfigError(f"goal_distance: dims {self.params.dims} exceed the goal's length {goal.shape[0]}")
        self._goal = goal[self._index]
        self._goal_values = self._goal.tolist()
        self._step_weights = None

    def evaluate(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self._goal is None:
            raise ConfigError("goal_distance: no goal yet; the configurator's settings were never applied")
        # per-axis planes: much faster on CPU than a norm over a short last dimension
        dist = torch.sqrt(sum((states[..., i] - g).square() for i, g in zip(self._index, self._goal_values)))
        horizon = dist.shape[1]
        if self._step_weights is None or self._step_weights.shape[0] != horizon:
            weights = torch.ones(horizon)
            weights[-1] = self.params.terminal
            self._step_weights = weights
        return dist * self._step_weights


class ActionEffort(CostTerm):
    """Squared action magnitude per step ((m/s^2)^2 for accelerations)."""

    def evaluate(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return sum(actions[..., i].square() for i in range(actions.shape[-1]))
