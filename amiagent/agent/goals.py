"""Whether a goal can be reached at all without breaking a guardrail."""

from __future__ import annotations

import torch

from amiagent.contracts import Cost, WorldModel


def goal_problem(model: WorldModel, cost: Cost, goal: torch.Tensor, tolerance: float, action_dim: int) -> str:
    """Why `goal` is infeasible, or "" when it is not: some state of `model` that realises it (within
    `tolerance`), held still for two steps, must satisfy every guardrail of `cost`."""
    states = model.goal_states(goal, tolerance)
    if states.shape[0] == 0:
        return "no state of the body reaches it (outside the reachable workspace)"
    held = states.unsqueeze(1).expand(-1, 2, -1)
    actions = torch.zeros(states.shape[0], 2, action_dim)
    if not bool(cost.evaluate(held, actions).feasible.any()):
        return "it lies where a guardrail forbids the body to be"
    return ""
