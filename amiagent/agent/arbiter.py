"""The one place that decides what reaches the body: plan, else fallback, then the safety filter, else stop.

    this cycle's plan ─▶ a step of the last valid plan ─▶ Mode 1 ─▶ brake      (the first that exists)
          └────────────────────────────▶ safety filter (its own model and guardrails) ─▶ body
                                              └─ fails, or no valid action: brake, else stop (halt)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from amiagent.agent.options import Modules
from amiagent.agent.records import Counters
from amiagent.contracts import Plan, WorldModel
from amiagent.errors import ContractError
from amiagent.planning import SafetyFilter

log = logging.getLogger(__name__)


def check_actions(actions: torch.Tensor, model: WorldModel, what: str, plan: bool = False) -> None:
    """Raise ContractError unless `actions` is finite, real, within `model`'s action bounds and shaped
    (A,), or (H >= 1, A) for a plan."""
    if not isinstance(actions, torch.Tensor):
        raise ContractError(f"{what} must be a torch.Tensor, got {type(actions).__name__}")
    if not actions.is_floating_point():
        raise ContractError(f"{what} must hold real floating-point values, got {actions.dtype}")
    expected = f"(H >= 1, {model.action_dim})" if plan else f"({model.action_dim},)"
    ndim = 2 if plan else 1
    if actions.ndim != ndim or actions.shape[-1] != model.action_dim or (plan and actions.shape[0] < 1):
        raise ContractError(f"{what} must have shape {expected}, got {tuple(actions.shape)}")
    if not bool(torch.isfinite(actions).all()):
        raise ContractError(f"{what} holds non-finite values")
    if not model.action_space.contains(actions):
        raise ContractError(f"{what} leaves the world model's action bounds")


def check_state(state: torch.Tensor, dim: int) -> None:
    """Raise ContractError unless `state` is a finite (1, dim) tensor, as perception must give."""
    if not isinstance(state, torch.Tensor) or tuple(state.shape) != (1, dim) or not bool(torch.isfinite(state).all()):
        raise ContractError(f"perception must give a finite (1, {dim}) state tensor")


@dataclass(frozen=True)
class Decision:
    """The action for the body (zeros with `halt`: the body is stopped instead), where it came from, whether
    the filter replaced it and why, and whether the safety filter passed it."""

    action: torch.Tensor
    source: str
    filtered: bool
    reason: str
    checked: bool
    halt: bool


class Arbiter:
    """Plan, fallback, safety filter and stop, in that order. `safety=None` turns the filter off."""

    def __init__(self, safety: SafetyFilter | None):
        self.safety = safety

    def decide(self, modules: Modules, state: torch.Tensor, measured: torch.Tensor, plan: Plan | None,
               previous: torch.Tensor | None, use_mode1: bool, down: frozenset[str],
               counters: Counters) -> Decision:
        """The action that may reach the body. `state`: what the planners see; `measured`: what the filter
        checks (the same, unless it checks the body's measured state); `previous`: this cycle's step of the
        last valid plan, if any; `use_mode1`: whether the Mode-1 policy may stand in for a missing plan."""
        action, source = self._choose(modules, state, measured, plan, previous, use_mode1, down)
        action, filtered, reason, checked = self._filter(modules, measured, action, down, counters)
        halt = action is None
        if halt:  # not even braking gave a valid action: the body is told to stop
            action, source, checked = torch.zeros(modules.world_model.action_dim), "stop", True
        return Decision(action, source, filtered, reason, checked, halt)

    def _choose(self, modules: Modules, state: torch.Tensor, measured: torch.Tensor, plan: Plan | None,
                previous: torch.Tensor | None, use_mode1: bool, down: frozenset[str]) -> tuple[torch.Tensor, str]:
        if plan is not None:
            return plan.actions[0], "plan"
        if previous is not None:
            return previous, "previous"
        if use_mode1 and modules.mode1 is not None and "mode1" not in down:
            try:
                action = modules.mode1.act(state).actions[0]
                check_actions(action, modules.world_model, "mode1 action")
                return action, "mode1"
            except Exception:
                log.exception("the Mode-1 policy failed; braking")
        brake = self.brake(modules, measured, down)
        return (brake if brake is not None else torch.zeros(modules.world_model.action_dim)), "stop"

    def _filter(self, modules: Modules, state: torch.Tensor, action: torch.Tensor, down: frozenset[str],
                counters: Counters) -> tuple[torch.Tensor | None, bool, str, bool]:
        """The action that may reach the body (None: none valid), whether it was replaced, why, and
        whether the safety filter passed it."""
        model = modules.world_model
        try:
            check_actions(action, model, "action")
        except ContractError as exc:
            action, replaced, reason = self.brake(modules, state, down), True, f"{exc}: braking"
        else:
            replaced, reason = False, ""
        checked = False
        if self.safety is not None and action is not None:
            try:
                verdict = self.safety.filter(state, action)
                action, replaced, reason = verdict.action, replaced or verdict.filtered, verdict.reason or reason
                checked = True
            except Exception:
                counters.safety_errors += 1
                log.exception("the safety filter failed; braking")
                action, replaced, reason = self.brake(modules, state, down), True, "safety filter failed: braking"
        if action is not None:
            try:
                check_actions(action, model, "filtered action")
            except ContractError as exc:
                log.error("no valid action (%s): stopping the body", exc)
                return None, True, f"{exc}: stop", True
        return action, replaced, reason, checked

    def brake(self, modules: Modules, state: torch.Tensor, down: frozenset[str]) -> torch.Tensor | None:
        """The braking action from `state`, or None when no model can give a valid one."""
        # the safety filter's model lives in this process: it answers even when the planner's is away
        model = self.safety.world_model if self.safety is not None else None
        if model is None:
            if "world_model" in down:
                return None
            model = modules.world_model
        try:
            action = model.brake_action(state)[0]
            check_actions(action, modules.world_model, "brake action")
            return action
        except Exception:
            log.exception("the world model cannot brake from this state")
            return None
