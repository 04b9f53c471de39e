"""Cross-entropy method over action sequences, feasibility-first."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from amiagent.errors import ConfigError
from amiagent.planning.common import Evaluate, Result, feasibility_first, sample
from amiagent.spaces import Box


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
    min_std = cfg.min_std * bounds.half_range
    best = mean = bounds.clip(mean)
    for _ in range(cfg.iterations):
        # sample: row 0 is the current mean, row 1 the best so far, so neither is lost
        candidates = sample(mean, std, cfg.samples, bounds, (mean, best), generator)
        # score
        states, report = evaluate(candidates)
        order = feasibility_first(report.total, report.violation_total)
        # refit elites
        elites = candidates[order[: cfg.elites]]
        mean = elites.mean(dim=0)
        std = torch.maximum(elites.std(dim=0), min_std)
        best = candidates[order[0]]
    i = int(order[0])
    return Result(candidates[i], states[i], report.pick(i), mean, std)
