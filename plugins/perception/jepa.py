"""Perception `jepa`: a camera frame (and some proprioception) -> the JEPA latent, with its probe in front.

The state is `[probe(z), z]`: the probe's physical read-out (x, y, vx, vy for
the point robot; S dims) followed by the latent z (d dims), so physical
guardrails read dims 0..S-1 and the latent goal cost reads the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from amiagent.contracts import Observation, Perception
from amiagent.errors import ConfigError
from amiagent.learning.train import shared_model


class JEPAPerception(Perception):
    """Encodes `obs.images[image_key]` and the fused proprioceptive dims with a trained JEPA encoder."""

    needs_images = True

    @dataclass(frozen=True)
    class Params:
        checkpoint: str = ""
        """Path of a checkpoint written by `amiagent train world_model=jepa`."""
        image_key: str = "top"

        def __post_init__(self) -> None:
            if not self.checkpoint:
                raise ConfigError("perception.jepa: params.checkpoint is required (a file from `amiagent train`)")

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self.model, self.info = shared_model(self.params.checkpoint)
        self.physical_dim = self.model.state_dim
        self.state_dim = self.model.state_dim + self.model.latent_size
        self._size = self.model.cfg.image_size

    @torch.inference_mode()
    def encode(self, obs: Observation | Sequence[Observation]) -> torch.Tensor:
        many = obs if isinstance(obs, Sequence) else [obs]
        # one at a time: a batch must give bit-identical rows to single calls
        rows = [self._encode_one(o) for o in many]
        return torch.cat(rows).clone()

    def example_observation(self) -> Observation:
        """For the checker: a plain floor with a robot-coloured dot, at rest."""
        frame = np.full((self._size, self._size, 3), 216, dtype=np.uint8)
        frame[10:13, 20:23] = (38, 89, 229)
        return Observation(t=0.0, state=np.zeros(self.physical_dim), images={self.params.image_key: frame})

    def _encode_one(self, obs: Observation) -> torch.Tensor:
        frame = obs.images.get(self.params.image_key) if obs.images else None
        if frame is None:
            raise ConfigError(f"perception.jepa needs camera frames under images[{self.params.image_key!r}]: "
                              "run the world with world.params.camera=true")
        frame = np.asarray(frame)
        if frame.shape != (self._size, self._size, 3) or frame.dtype != np.uint8:
            raise ConfigError(f"perception.jepa: frames must be ({self._size}, {self._size}, 3) uint8 like the "
                              f"training data, got {frame.shape} {frame.dtype}")
        state = torch.as_tensor(np.asarray(obs.state, dtype=np.float32)).reshape(1, -1)
        if state.shape[1] != self.physical_dim:
            raise ConfigError(f"perception.jepa: obs.state must have {self.physical_dim} values like the training "
                              f"data, got {state.shape[1]}")
        z = self.model.encode(torch.from_numpy(frame).unsqueeze(0), state)
        return torch.cat([self.model.probe(z), z], dim=1)
