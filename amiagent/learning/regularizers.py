"""Anti-collapse regularisers for joint-embedding training: VICReg and SIGReg (LeJEPA).

Both take a batch of embeddings `z` (N, d) and return a scalar loss that is
small when the embeddings are spread out, so a predictor cannot win by mapping
every observation to the same point.
"""

from __future__ import annotations

import math

import torch


def vicreg(z: torch.Tensor, std_target: float = 1.0, cov_weight: float = 0.04) -> torch.Tensor:
    """Variance hinge (each dim's std >= `std_target`) plus the off-diagonal covariance, squared.

    Bardes et al., VICReg (2022): the variance term stops collapse to a point,
    the covariance term stops collapse to a line (decorrelated dims). The
    covariance weight relative to the variance is the paper's 1 : 25.
    """
    z = z - z.mean(dim=0)
    std = torch.sqrt(z.var(dim=0) + 1e-4)
    variance = torch.relu(std_target - std).mean()
    n, d = z.shape
    cov = (z.T @ z) / max(n - 1, 1)
    off = cov - torch.diag(torch.diagonal(cov))
    covariance = off.pow(2).sum() / d
    return variance + cov_weight * covariance


def sigreg(z: torch.Tensor, directions: int = 64, knots: int = 17, generator: torch.Generator | None = None
           ) -> torch.Tensor:
    """Sketched isotropic Gaussian regularisation (Balestriero & LeCun, LeJEPA, 2025).

    Projects `z` on `directions` random unit vectors and scores each 1-D
    projection against N(0, 1) with the Epps-Pulley statistic: the weighted
    squared gap between the empirical characteristic function and exp(-t^2/2),
    integrated over t in [0, 3] by the trapezoid rule. The statistic is zero
    exactly when every projection is standard normal, i.e. when `z` is an
    isotropic Gaussian; its mean over directions is the loss.
    """
    n, d = z.shape
    u = torch.randn(d, directions, generator=generator, device=z.device, dtype=z.dtype)
    u = u / u.norm(dim=0, keepdim=True)
    proj = z @ u                                              # (N, M)
    t = torch.linspace(0.0, 3.0, knots, device=z.device, dtype=z.dtype)
    tp = proj.unsqueeze(-1) * t                               # (N, M, K)
    real = torch.cos(tp).mean(dim=0)                          # (M, K)
    imag = torch.sin(tp).mean(dim=0)
    gauss = torch.exp(-0.5 * t * t)
    gap = (real - gauss).pow(2) + imag.pow(2)                 # (M, K)
    weight = gauss                                            # w(t) = exp(-t^2 / 2)
    integrand = gap * weight
    dt = t[1] - t[0]
    integral = dt * (integrand.sum(dim=-1) - 0.5 * (integrand[:, 0] + integrand[:, -1]))
    return (n * integral).mean() * 2.0 / math.sqrt(2 * math.pi)


def effective_rank(z: torch.Tensor) -> float:
    """RankMe (Garrido et al., 2023): exp of the entropy of the normalised singular values of `z` (N, d).

    d for embeddings spread evenly over d dims, 1 for a collapse to a line.
    """
    z = z - z.mean(dim=0)
    s = torch.linalg.svdvals(z.double())
    p = s / s.sum().clamp_min(1e-12) + 1e-12
    return float(torch.exp(-(p * p.log()).sum()))


REGULARIZERS = ("vicreg", "sigreg")
