"""Critic `td`: a small MLP valuing goal-relative states, fitted by TD from short-term memory.

`value(states)` is V(s - g) on the chosen dims: the discounted intrinsic cost
the agent still pays from s (see `amiagent.learning.critic`). The goal g comes
from `apply(settings)`; before any settings it is the origin. Being goal
relative, one fitted critic serves every goal of a world.

An unfitted critic (no `checkpoint`, no fit yet) values every state at exactly
0, so putting it under a cost changes no plan until it has been fitted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from amiagent.contracts import Critic, Settings
from amiagent.errors import ConfigError, ContractError
from amiagent.learning.checkpoints import load_payload, save_atomic
from amiagent.learning.critic import ValueNet

CHECKPOINT_FORMAT = "amiagent.critic.td"


class TDCritic(Critic):
    """V(s - g) from an MLP over `dims` of the state; see the module docstring."""

    @dataclass(frozen=True)
    class Params:
        state_dim: int = 4
        dims: tuple[int, ...] = ()
        """State dims the critic reads (goal-relative); empty: all of them."""
        hidden: int = 64
        """Width of the two hidden layers."""
        gamma: float = 0.95
        """Discount per control step (0.95 at 10 Hz: costs about 2 s ahead weigh most)."""
        lr: float = 3e-3
        """Adam step size when fitting."""
        checkpoint: str = ""
        """A file written by `save()`; empty: untrained, value 0 everywhere until fitted."""
        seed: int = 0
        """Initial weights."""

        def __post_init__(self) -> None:
            if self.state_dim < 1:
                raise ConfigError(f"critic.td: state_dim must be >= 1, got {self.state_dim}")
            bad = [d for d in self.dims if not 0 <= d < self.state_dim]
            if bad or len(set(self.dims)) != len(self.dims):
                raise ConfigError(f"critic.td: dims must be distinct indices in 0..{self.state_dim - 1} "
                                  f"(state_dim {self.state_dim}), got {list(self.dims)}")
            if self.hidden < 1:
                raise ConfigError(f"critic.td: hidden must be >= 1, got {self.hidden}")
            if not 0.0 <= self.gamma < 1.0:
                raise ConfigError(f"critic.td: gamma must be in [0, 1) (a discount per step), got {self.gamma}")
            if not self.lr > 0:
                raise ConfigError(f"critic.td: lr must be > 0, got {self.lr}")

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        p = self.params
        self.index = tuple(p.dims) or tuple(range(p.state_dim))
        self.gamma, self.lr = p.gamma, p.lr
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(p.seed)
            self.net = ValueNet(p.state_dim, self.index, p.hidden)
        self.net.eval()
        self._goal = torch.zeros(p.state_dim)
        if p.checkpoint:
            self.load(p.checkpoint)

    @property
    def fitted(self) -> bool:
        """Whether the weights come from a fit or a checkpoint (else every value is 0)."""
        return self.net.is_fitted

    def apply(self, settings: Settings) -> None:
        goal = settings.goal_tensor()
        if goal.shape[0] != self.params.state_dim:
            raise ConfigError(f"critic.td: settings.goal has {goal.shape[0]} values but state_dim is "
                              f"{self.params.state_dim}: set critic params.state_dim to the world model's")
        self._goal = goal

    @torch.inference_mode()
    def value(self, states: torch.Tensor) -> torch.Tensor:
        if states.ndim != 2 or states.shape[1] != self.params.state_dim:
            raise ContractError(f"critic.td: states must be (B, {self.params.state_dim}), got {tuple(states.shape)}")
        if not self.net.is_fitted:
            return torch.zeros(states.shape[0])
        return self.net(states.float() - self._goal)

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: str | os.PathLike) -> Path:
        """Write the weights and what they mean (dims, width, gamma) to `path`; returns it."""
        path = Path(path)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "state_dim": self.params.state_dim,
            "dims": list(self.index),
            "hidden": self.params.hidden,
            "gamma": self.gamma,
            "net": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
        }
        return save_atomic(payload, path)

    def load(self, path: str | os.PathLike) -> None:
        """Load weights written by `save()`; they must match these params (dims, width, gamma)."""
        saved = load_payload(path, CHECKPOINT_FORMAT,
                             f"critic.td: no checkpoint at {path}: fit one with "
                             "amiagent.learning.critic.fit_from_memory and save it with critic.save(path)",
                             f"critic.td: {path} is not a critic.td checkpoint")
        mine = {"state_dim": self.params.state_dim, "dims": list(self.index), "hidden": self.params.hidden,
                "gamma": self.gamma}
        theirs = {k: saved.get(k) for k in mine}
        if theirs != mine:
            diff = ", ".join(f"{k}: {theirs[k]!r} there, {mine[k]!r} here" for k in mine if theirs[k] != mine[k])
            raise ConfigError(f"critic.td: {path} was fitted with other params ({diff}); set the critic's params "
                              "to the checkpoint's")
        self.net.load_state_dict(saved["net"])
        self.net.eval()
