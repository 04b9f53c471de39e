"""The cost module: hard-wired intrinsic terms and guardrails, plus an optional critic."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from amiagent.contracts import Cost, CostReport, CostTerm, Critic, Guardrail, Settings
from amiagent.errors import ConfigError


class IntrinsicCost(Cost):
    """Weighted cost terms, guardrails kept apart, and a critic for the tail.

    `terms`: name -> (term, default weight); settings may override weights by
    name. `guardrails`: name -> guardrail; their violations are summed per step
    into `CostReport.violation` and never enter `total`.
    """

    def __init__(
        self,
        terms: Mapping[str, tuple[CostTerm, float]],
        guardrails: Mapping[str, Guardrail],
        critic: Critic | None = None,
        critic_weight: float = 1.0,
    ):
        super().__init__()
        if not terms and not guardrails:
            raise ConfigError("cost: needs at least one term or guardrail")
        self.terms = {name: term for name, (term, _) in terms.items()}
        self.names = tuple(self.terms)
        self._default_weights = {name: float(weight) for name, (_, weight) in terms.items()}
        self._weights = torch.tensor([self._default_weights[n] for n in self.names])
        self.guardrails = dict(guardrails)
        self.critic = critic
        self.critic_weight = critic_weight

    def modules(self) -> list:
        """Every sub-module, for lifecycle calls."""
        subs = list(self.terms.values()) + list(self.guardrails.values())
        return subs + ([self.critic] if self.critic is not None else [])

    def apply(self, settings: Settings) -> None:
        unknown = set(settings.weights) - set(self.names)
        if unknown:
            raise ConfigError(
                f"settings.weights name unknown cost term(s) {sorted(unknown)}; terms: {list(self.names)}"
            )
        weights = {**self._default_weights, **settings.weights}
        self._weights = torch.tensor([float(weights[n]) for n in self.names])
        for module in self.modules():
            module.apply(settings.only(module.reads) if isinstance(module, Guardrail) else settings)

    def activate(self) -> None:
        super().activate()
        for module in self.modules():
            module.activate()

    def deactivate(self) -> None:
        super().deactivate()
        for module in self.modules():
            module.deactivate()

    def close(self) -> None:
        super().close()
        for module in self.modules():
            module.close()

    def evaluate(self, states: torch.Tensor, actions: torch.Tensor) -> CostReport:
        batch, horizon = states.shape[:2]
        if self.terms:
            per_term = torch.stack([t.evaluate(states, actions).sum(dim=1) for t in self.terms.values()], dim=1)
            terms = per_term * self._weights  # (B, T)
        else:
            terms = states.new_zeros(batch, 0)
        total = terms.sum(dim=1)
        if self.critic is not None:
            total = total + self.critic_weight * self.critic.value(states[:, -1])
        violation = None
        for guardrail in self.guardrails.values():
            amount = guardrail.violation(states, actions)
            violation = amount if violation is None else violation + amount
        if violation is None:
            violation = states.new_zeros(batch, horizon)
        return CostReport(total=total, terms=terms, names=self.names, violation=violation)

    def guardrail_violations(self, states: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each guardrail's (B, H) violation, for diagnostics."""
        return {name: g.violation(states, actions) for name, g in self.guardrails.items()}
