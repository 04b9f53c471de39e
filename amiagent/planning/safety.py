"""The safety filter: the last check of an action before it reaches the body."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from amiagent.contracts import Cost, WorldModel
from amiagent.errors import ConfigError, GuardrailError
from amiagent.contracts.spaces import Box


@dataclass(frozen=True)
class SafetyVerdict:
    """The action to send (A,), whether it replaced the proposed one, and why."""

    action: torch.Tensor
    filtered: bool
    violation: float
    reason: str = ""


class SafetyFilter:
    """Checks an action against the guardrails once more, and replaces it when unsafe.

    A proposed action is safe when applying it for one step and then braking
    (the world model's `brake_action`) for `horizon - 1` steps predicts no
    guardrail violation. An unsafe action is replaced by the safe alternative
    closest to it (projection) among: braking, half the action, zero, and
    full-bound pushes in `directions` directions; with no safe alternative, the
    least-violating one is sent (and the reason says so).
    """

    def __init__(self, world_model: WorldModel, cost: Cost, horizon: int = 16, directions: int = 8):
        if directions < 0 or horizon < 1:
            raise ConfigError(f"safety filter: directions >= 0 and horizon >= 1 required, got {directions}, {horizon}")
        self.world_model = world_model
        self.cost = cost
        self.horizon = horizon
        self.bounds = Box.of_actions(world_model)
        self._directions = self._unit_directions(world_model.action_dim, directions)

    @staticmethod
    def _unit_directions(action_dim: int, count: int) -> torch.Tensor:
        if count == 0:
            return torch.zeros(0, action_dim)
        if action_dim == 2:
            angles = torch.arange(count) * (2 * math.pi / count)
            return torch.stack([angles.cos(), angles.sin()], dim=1)
        eye = torch.eye(action_dim)  # beyond the plane: push along each axis, both ways
        return torch.cat([eye, -eye], dim=0)

    def candidates(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(C, A) first actions to try; row 0 is the proposed action."""
        brake = self.world_model.brake_action(state)[0]
        pushes = self._directions * self.bounds.high  # full bound along each direction
        rows = [action, brake, 0.5 * action, torch.zeros_like(action)]
        return self.bounds.clip(torch.cat([torch.stack(rows), pushes], dim=0))

    def check(self, state: torch.Tensor, firsts: torch.Tensor) -> torch.Tensor:
        """`state` (1, D), `firsts` (C, A) -> (C,) predicted violation of each first-action-then-brake."""
        count = firsts.shape[0]
        current = state.expand(count, -1)
        states, actions = [], []
        for step in range(self.horizon):
            act = firsts if step == 0 else self.world_model.brake_action(current)
            current = self.world_model.rollout(current, act.unsqueeze(1))[:, 0]
            states.append(current)
            actions.append(act)
        report = self.cost.evaluate(torch.stack(states, dim=1), torch.stack(actions, dim=1))
        return report.violation_total

    def filter(self, state: torch.Tensor, action: torch.Tensor) -> SafetyVerdict:
        """The action to send for `state` (1, D) given the proposed `action` (A,)."""
        action = self.bounds.clip(action)
        firsts = self.candidates(state, action)
        # a NaN anywhere must never look safe, nor least violating
        violation = torch.nan_to_num(self.check(state, firsts), nan=math.inf)
        violation[~torch.isfinite(firsts).all(dim=1)] = math.inf
        if violation[0] <= 0:
            return SafetyVerdict(action, False, 0.0)
        safe = violation <= 0
        if bool(safe.any()):
            distance = torch.where(safe, (firsts - action).norm(dim=1), torch.full_like(violation, float("inf")))
            i = int(distance.argmin())
            return SafetyVerdict(firsts[i], True, float(violation[0]), "unsafe action projected to a safe one")
        i = int(violation.argmin())
        if not math.isfinite(float(violation[i])):
            raise GuardrailError("no candidate action could be checked (non-finite predictions)")
        return SafetyVerdict(firsts[i], True, float(violation[0]), "no safe alternative: least violation sent")
