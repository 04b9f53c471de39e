"""Steps every optimiser shares: ranking, warm start, sampling, the search loop; bounds are `amiagent.contracts.spaces.Box`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from amiagent.contracts import CostReport
from amiagent.contracts.spaces import Box

# actions (B, H, A) -> predicted states (B, H, D) and their cost report
Evaluate = Callable[[torch.Tensor], tuple[torch.Tensor, CostReport]]
# candidates (N, H, A) and their report -> the new mean and std (H, A) and the candidates' order, best first
Refit = Callable[[torch.Tensor, CostReport], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Result:
    """What an optimiser returns: the best candidate found and the search distribution.

    `actions` (H, A), `states` (H, D), `report` a CostReport of one,
    `mean` / `std` (H, A) the final sampling distribution.
    """

    actions: torch.Tensor
    states: torch.Tensor
    report: CostReport
    mean: torch.Tensor
    std: torch.Tensor


def feasibility_first(total: torch.Tensor, violation: torch.Tensor) -> torch.Tensor:
    """Indices of B candidates, best first: feasible before infeasible, then by cost.

    Candidates with no violation are ordered by `total`; infeasible ones come
    after every feasible one, least violation first. A lexicographic order, not
    a weighted sum: no cost saving ever buys a violation.
    """
    order = torch.argsort(total)
    if not bool(violation.any()):
        return order  # all feasible: cost alone decides
    # infeasible candidates ranked by violation; every feasible one ties at zero
    # and the stable sort keeps them in cost order
    return order[torch.argsort(violation[order], stable=True)]


def warm_start(previous: torch.Tensor | None, horizon: int, bounds: Box) -> torch.Tensor:
    """(H, A) initial mean: the previous plan shifted by one step, else the middle of the bounds."""
    if previous is None:
        return bounds.centre.expand(horizon, -1).clone()
    shifted = torch.cat([previous[1:], previous[-1:]], dim=0)  # repeat the last action
    if shifted.shape[0] < horizon:
        shifted = torch.cat([shifted, shifted[-1:].expand(horizon - shifted.shape[0], -1)], dim=0)
    return bounds.clip(shifted[:horizon])


def best_start(evaluate: Evaluate, means: list[torch.Tensor], bounds: Box) -> torch.Tensor:
    """The best of several (H, A) initial means, ranked feasibility first like any candidate.

    E.g. the shifted previous plan and a Mode-1 policy's proposal: the search
    starts from whichever the cost prefers, so a poor proposal costs one batch
    of evaluations and never a worse start.
    """
    candidates = bounds.clip(torch.stack(means))  # (M, H, A)
    _, report = evaluate(candidates)
    return candidates[int(feasibility_first(report.total, report.violation_total)[0])].clone()


def sample(mean: torch.Tensor, std: torch.Tensor, n: int, bounds: Box,
           keep: tuple[torch.Tensor, ...], generator: torch.Generator | None) -> torch.Tensor:
    """(n, H, A) candidates around `mean`, inside the bounds; the first rows are `keep`, each (H, A).

    Kept rows must already lie inside the bounds (a mean of in-bound samples does).
    """
    noise = torch.randn((n,) + tuple(mean.shape), generator=generator)
    candidates = bounds.clip(torch.addcmul(mean, std, noise))
    for i, row in enumerate(keep):
        candidates[i] = row
    return candidates


def search(evaluate: Evaluate, mean: torch.Tensor, std: torch.Tensor, bounds: Box, samples: int, iterations: int,
           min_std: float, refit: Refit, generator: torch.Generator | None) -> Result:
    """The loop every sampling optimiser runs; `refit` is what makes it CEM or MPPI.

    `min_std` floors the refitted std, as a fraction of the bounds' half-range.
    """
    floor = min_std * bounds.half_range
    best = mean = bounds.clip(mean)
    for _ in range(iterations):
        # sample: row 0 is the current mean, row 1 the best so far, so neither is lost
        candidates = sample(mean, std, samples, bounds, (mean, best), generator)
        # score, then refit the distribution
        states, report = evaluate(candidates)
        mean, std, order = refit(candidates, report)
        std = torch.maximum(std, floor)
        best = candidates[order[0]]
    i = int(order[0])
    return Result(candidates[i], states[i], report.pick(i), mean, std)
