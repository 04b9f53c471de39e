"""Forward kinematics in torch from the URDF chain, against pybullet's own (real pybullet, KUKA iiwa)."""

from __future__ import annotations

import os

import pybullet as pb
import pybullet_data
import pytest
import torch

from amiagent.errors import ConfigError
from amiagent.kinematics import Chain

KUKA = os.path.join(pybullet_data.getDataPath(), "kuka_iiwa", "model.urdf")


@pytest.fixture(scope="module")
def kuka():
    client = pb.connect(pb.DIRECT)
    robot = pb.loadURDF(KUKA, useFixedBase=True, physicsClientId=client)
    yield client, robot
    pb.disconnect(client)


def test_link_poses_match_pybullet_below_a_micrometre(kuka):
    client, robot = kuka
    chain = Chain.from_urdf(KUKA)
    assert chain.dof == pb.getNumJoints(robot, physicsClientId=client) == 7
    generator = torch.Generator().manual_seed(0)
    q = chain.lower + (chain.upper - chain.lower) * torch.rand(64, chain.dof, generator=generator,
                                                                dtype=torch.float64)
    poses = chain.forward(q)
    worst = worst_rotation = 0.0
    for b in range(q.shape[0]):
        for j in range(chain.dof):
            pb.resetJointState(robot, j, float(q[b, j]), physicsClientId=client)
        for j in range(chain.dof):
            state = pb.getLinkState(robot, j, computeForwardKinematics=True, physicsClientId=client)
            position = torch.tensor(state[4], dtype=torch.float64)
            rotation = torch.tensor(pb.getMatrixFromQuaternion(state[5]), dtype=torch.float64).view(3, 3)
            worst = max(worst, float((poses[b, j, :3, 3] - position).norm()))
            worst_rotation = max(worst_rotation, float((poses[b, j, :3, :3] - rotation).abs().max()))
    # measured on these 64 poses: 9.6e-8 m and 3.1e-7 (rotation entries); over seeds 0-4, at most 1.2e-7 m and
    # 4.6e-7. The README claims 1e-7 m; the bounds leave ~5x margin over the measurement, 200x tighter than 1e-4
    assert worst < 5e-7, worst
    assert worst_rotation < 2e-6, worst_rotation


def test_forward_is_batched_in_the_dtype_it_is_given_and_differentiable():
    chain = Chain.from_urdf(KUKA)
    q = torch.zeros(5, chain.dof, requires_grad=True)
    poses = chain.forward(q)
    assert poses.shape == (5, 7, 4, 4) and poses.dtype == torch.float32
    poses[:, -1, :3, 3].sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
    with pytest.raises(ConfigError, match=r"joint angles \(B, 7\)"):
        chain.forward(torch.zeros(5, 6))


def test_bad_urdfs_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the URDF"):
        Chain.from_urdf(str(tmp_path / "missing.urdf"))
    bad = tmp_path / "slider.urdf"
    bad.write_text('<robot name="r"><link name="a"/><link name="b"/><joint name="j" type="prismatic">'
                   '<parent link="a"/><child link="b"/></joint></robot>')
    with pytest.raises(ConfigError, match="only revolute, continuous and fixed"):
        Chain.from_urdf(str(bad))
