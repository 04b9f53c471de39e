"""`Box`: the bounds of a vector, and the one convention every bounds check in amiagent follows.

A box is closed: `x` lies in it when `low - tol <= x <= high + tol` on every
axis. `tol` is absolute, in the bounds' own units, and defaults to TOLERANCE,
which absorbs float32 rounding of a float64 bound (a float32 copy of 2.0 m/s^2
is exact, one of 0.1 rad is 1.5e-9 off) and nothing a body or a guardrail
would notice. Checks that allow a physical slack (contact penetration, motor
tracking) pass their own `tol`, named where it is defined.

The bounds are numpy arrays (a body's, float64) or torch tensors (a world
model's, float32); every method takes values of either kind, any leading
shape, and answers in the kind it was given. A tensor is compared in its own
precision (the bounds are rounded to its dtype, as a planner's own bounds
are); anything else in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from amiagent.errors import ConfigError

TOLERANCE = 1e-6
"""Default absolute tolerance of `Box.contains` (bounds' units): float rounding, never a physical allowance."""

Array = np.ndarray | torch.Tensor


@dataclass(frozen=True, eq=False)
class Box:
    """Closed bounds `low` <= `high`, (n,) each, as numpy arrays or torch tensors.

    Lists and tuples are taken as float64 numpy arrays; a numpy `high` with a
    torch `low` (or the reverse) is converted to the kind of `low`. `name` says
    whose bounds these are, in error messages. Raises ConfigError, naming it,
    unless both are 1-D of the same length, free of NaN and `low` <= `high`.
    """

    low: Array
    high: Array
    name: str = field(default="box", compare=False)

    def __post_init__(self) -> None:
        low, high = _as_array(self.low), _as_array(self.high)
        if isinstance(low, torch.Tensor):
            high = torch.as_tensor(high, dtype=low.dtype)
        else:
            high = np.asarray(high, dtype=low.dtype if low.dtype.kind == "f" else np.float64)
            low = low.astype(high.dtype, copy=False)
        if low.ndim != 1 or tuple(low.shape) != tuple(high.shape):
            raise ConfigError(f"{self.name}: low and high must be 1-D and of one length, got shapes "
                              f"{tuple(low.shape)} and {tuple(high.shape)}")
        lo, hi = tuple(float(v) for v in low.tolist()), tuple(float(v) for v in high.tolist())
        if any(math.isnan(v) for v in lo + hi) or any(a > b for a, b in zip(lo, hi)):
            raise ConfigError(f"{self.name}: need low <= high on every axis and no NaN, got {list(lo)}...{list(hi)}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_hi", hi)
        # the same bound on every axis clamps with scalars, several times faster on CPU
        uniform = len(lo) > 0 and len(set(lo)) == 1 and len(set(hi)) == 1
        object.__setattr__(self, "_scalar", (lo[0], hi[0]) if uniform else None)
        object.__setattr__(self, "_tensors", {})

    @classmethod
    def of_actions(cls, owner: Any) -> Box:
        """The action bounds of a body or world model (its `action_low`, `action_high`)."""
        return cls(owner.action_low, owner.action_high, name=f"{type(owner).__name__} action bounds")

    # ------------------------------------------------------------------ shape and derived boxes

    @property
    def shape(self) -> tuple[int, ...]:
        """(n,)."""
        return (len(self._lo),)

    @property
    def centre(self) -> Array:
        """(low + high) / 2, (n,)."""
        return (self.low + self.high) / 2

    @property
    def half_range(self) -> Array:
        """(high - low) / 2, (n,)."""
        return (self.high - self.low) / 2

    def inset(self, margin: float | Sequence[float]) -> Box:
        """The box moved `margin` inward on every side (outward where negative); ConfigError if that empties it."""
        m = torch.as_tensor(margin, dtype=self.low.dtype) if isinstance(self.low, torch.Tensor) else np.asarray(margin)
        return Box(self.low + m, self.high - m, name=f"{self.name} inset by {margin}")

    # ------------------------------------------------------------------ checks

    def clip(self, x: Any) -> Array:
        """`x` (..., n) with every value outside moved to the nearest bound; a tensor for a tensor, else numpy."""
        if isinstance(x, torch.Tensor):
            if self._scalar is not None:
                return x.clamp(*self._scalar)
            low, high = self._as_tensors(x.dtype)
            return torch.clamp(x, min=low, max=high)
        return np.clip(np.asarray(x, dtype=np.float64), self._lo, self._hi)

    def contains(self, x: Any, tol: float = TOLERANCE) -> bool:
        """Whether every row of `x` (..., n) lies within the bounds, `tol` included; NaN never does.

        A plain sequence of n numbers is checked in Python, fast enough to run
        every physics substep.
        """
        if isinstance(x, (tuple, list)):
            if len(x) != len(self._lo):
                raise ValueError(f"{self.name}: {len(x)} values for {len(self._lo)} bounds")
            for v, lo, hi in zip(x, self._lo, self._hi):
                if not lo - tol <= v <= hi + tol:
                    return False
            return True
        if isinstance(x, torch.Tensor):
            key = (x.dtype, tol)
            widened = self._tensors.get(key)
            if widened is None:  # the bounds in x's precision, with the tolerance: once per dtype and tolerance
                low, high = self._as_tensors(x.dtype)
                low, high = low - tol, high + tol
                scalar = (float(low[0]), float(high[0])) if self._scalar is not None else None
                widened = self._tensors[key] = (low, high, scalar)
            low, high, scalar = widened
            if scalar is not None and x.numel():  # two reductions: the cheapest check, NaN included
                return scalar[0] <= float(x.min()) and float(x.max()) <= scalar[1]
            return bool(((x >= low) & (x <= high)).all())
        arr = np.asarray(x, dtype=np.float64)
        return bool(((arr >= np.subtract(self._lo, tol)) & (arr <= np.add(self._hi, tol))).all())

    def within(self, other: Box, tol: float = TOLERANCE) -> bool:
        """Whether this box lies inside `other`, `tol` included (e.g. a planner's bounds inside a body's)."""
        return len(self._lo) == len(other._lo) and other.contains(list(self._lo), tol) and other.contains(
            list(self._hi), tol)

    def same(self, other: Box) -> bool:
        """Whether both boxes have exactly the same bounds (compared as float64)."""
        return self._lo == other._lo and self._hi == other._hi

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A point drawn uniformly from the box, (n,) float64."""
        return rng.uniform(np.asarray(self._lo), np.asarray(self._hi))

    def __repr__(self) -> str:
        return f"Box({list(self._lo)}...{list(self._hi)}, name={self.name!r})"

    def _as_tensors(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        cached = self._tensors.get(dtype)
        if cached is None:
            cached = self._tensors[dtype] = (torch.as_tensor(self.low, dtype=dtype),
                                             torch.as_tensor(self.high, dtype=dtype))
        return cached


def _as_array(value: Any) -> Array:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value
    return np.asarray(value, dtype=np.float64)
