"""Cross-entropy method over action sequences, feasibility-first."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from amiagent.contracts import CostReport
from amiagent.errors import ConfigError
from amiagent.planning.common import Evaluate, Result, feasibility_first, search
from amiagent.contracts.spaces import Box


@dataclass(frozen=True)
class CEMConfig:
    """Sizes of a CEM search: `samples` per iteration, `elites` refit the distribution."""

    samples: int = 300
    iterations: int = 10
    elites: int = 30
    min_std: float = 0.05
    """Floor of the sampling std, as a fraction of the action half-range."""

    def __post_init__(self) -> None:
        # two elites at least: the spread of one sample is undefined
        if self.samples < 2 or self.iterations < 1 or not 2 <= self.elites <= self.samples:
            raise ConfigError(f"cem: need samples >= 2, iterations >= 1, 2 <= elites <= samples; got {self}")


def cem(evaluate: Evaluate, mean: torch.Tensor, std: torch.Tensor, bounds: Box, cfg: CEMConfig,
        generator: torch.Generator | None = None) -> Result:
    """Minimise cost over (H, A) action sequences starting from `mean`, `std`."""

    def refit_elites(candidates: torch.Tensor, report: CostReport):
        order = feasibility_first(report.total, report.violation_total)
        elites = candidates[order[: cfg.elites]]
        return elites.mean(dim=0), elites.std(dim=0), order

    return search(evaluate, mean, std, bounds, cfg.samples, cfg.iterations, cfg.min_std, refit_elites, generator)
