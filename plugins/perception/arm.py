"""Perception `arm`: joint state plus end-effector pose, for the `arm` world model.

The body reports (2n,) = [q (n) rad, qd (n) rad/s]; the latent state adds the
EE pose by forward kinematics: (7 + 2n,) = [ee (3) m, ee_quat (4) x, y, z, w
with w >= 0, q, qd], 21 values for the 7-joint iiwa.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from amiagent.contracts import Observation, Perception
from amiagent.errors import ContractError
from amiagent.plugins.world_model.arm import POSE_DIM, ArmKinematics, ee_pose, load_chain


class ArmPerception(Perception):
    """Encodes [q, qd] observations as [ee, ee_quat, q, qd] states (float32)."""

    @dataclass(frozen=True)
    class Params:
        urdf: str = ""
        """The arm's URDF: absolute, or relative to pybullet_data; empty means the KUKA iiwa."""

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self.kinematics = ArmKinematics(load_chain(self.params.urdf))
        self.dof = self.kinematics.dof
        self.state_dim = POSE_DIM + 2 * self.dof

    def example_observation(self) -> Observation:
        """An observation of this arm (mid-range joints, slowly moving), for the contract checker."""
        middle = ((self.kinematics.lower + self.kinematics.upper) / 2).numpy()
        return Observation(t=0.0, state=np.concatenate([middle, np.full(self.dof, 0.1)]))

    def encode(self, obs: Observation | Sequence[Observation]) -> torch.Tensor:
        observations = [obs] if isinstance(obs, Observation) else list(obs)
        if not observations:
            raise ContractError("perception.arm: encode needs at least one observation")
        sizes = {np.asarray(o.state).shape for o in observations}
        if sizes != {(2 * self.dof,)}:
            raise ContractError(
                f"perception.arm expected observation states of shape ({2 * self.dof},) = [q, qd] of a "
                f"{self.dof}-joint arm, got {sorted(sizes)}: is the body an arm with this URDF?"
            )
        joints = torch.from_numpy(np.stack([np.asarray(o.state, dtype=np.float64) for o in observations]))
        pose = ee_pose(self.kinematics, joints[:, : self.dof].T).T  # FK in float64, then to float32
        return torch.cat([pose, joints], dim=1).float()
