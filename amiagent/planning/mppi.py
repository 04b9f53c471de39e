"""Model-predictive path integral control, feasibility-first."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from amiagent.contracts import CostReport
from amiagent.errors import ConfigError
from amiagent.planning.common import Evaluate, Result, feasibility_first, search
from amiagent.contracts.spaces import Box


@dataclass(frozen=True)
class MPPIConfig:
    """MPPI sizes; `temperature` scales cost differences in the exponential weights."""

    samples: int = 300
    iterations: int = 4
    temperature: float = 0.5
    min_std: float = 0.05

    def __post_init__(self) -> None:
        if self.samples < 2 or self.iterations < 1 or self.temperature <= 0:
            raise ConfigError(f"mppi: need samples >= 2, iterations >= 1, temperature > 0; got {self}")


def mppi(evaluate: Evaluate, mean: torch.Tensor, std: torch.Tensor, bounds: Box, cfg: MPPIConfig,
         generator: torch.Generator | None = None) -> Result:
    """Minimise cost over (H, A) action sequences by exponentially weighted averaging."""

    def refit_weighted(candidates: torch.Tensor, report: CostReport):
        # only the best feasibility class gets weight — feasible plans by
        # cost when there are any, otherwise the least-violating by violation
        violation = report.violation_total
        feasible = violation <= 0
        score = torch.where(feasible, report.total, torch.full_like(violation, float("inf")))
        if not bool(feasible.any()):
            score = violation
        weights = torch.softmax(-(score - score.min()) / cfg.temperature, dim=0)  # (B,)
        w = weights.view(-1, 1, 1)
        mean = (w * candidates).sum(dim=0)
        std = ((w * (candidates - mean).square()).sum(dim=0)).sqrt()
        return mean, std, feasibility_first(report.total, violation)

    result = search(evaluate, mean, std, bounds, cfg.samples, cfg.iterations, cfg.min_std, refit_weighted, generator)
    return dataclasses.replace(result, mean=bounds.clip(result.mean))
