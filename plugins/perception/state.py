"""Perception `state`: the proprioceptive state vector, used as the latent state as is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from amiagent.contracts import Observation, Perception
from amiagent.errors import ContractError


class StatePerception(Perception):
    """Encodes an observation as its state vector (or the chosen `dims` of it)."""

    @dataclass(frozen=True)
    class Params:
        state_dim: int = 4
        """D: length of the observation's state vector."""
        dims: tuple[int, ...] = ()
        """Indices of the state vector to keep; empty keeps all."""

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self._index = torch.tensor(self.params.dims, dtype=torch.long) if self.params.dims else None
        self.state_dim = len(self.params.dims) if self.params.dims else self.params.state_dim

    def encode(self, obs: Observation | Sequence[Observation]) -> torch.Tensor:
        observations = [obs] if isinstance(obs, Observation) else list(obs)
        states = np.stack([np.asarray(o.state, dtype=np.float32) for o in observations])
        if states.shape[1] != self.params.state_dim:
            raise ContractError(
                f"perception.state expected a state vector of length {self.params.state_dim}, "
                f"got {states.shape[1]}: set perception params.state_dim to the body's state size"
            )
        out = torch.from_numpy(states)
        return out[:, self._index] if self._index is not None else out
