"""Scripted arm motions for the workcell tests: resolved-rate control through the agent-side kinematics.

Motions go through `amiagent.kinematics.Chain`, so the tests that use them also
pin that the body's EE is the chain's last link frame.
"""

from __future__ import annotations

import numpy as np
import torch

from amiagent.kinematics import Chain
from amiagent.sim.arm import KUKA_URDF

CHAIN = Chain.from_urdf(KUKA_URDF)
REACH = 0.42 + 0.40 + 0.081
"""Shoulder to EE with the arm stretched (m): the URDF's link offsets."""
HOME = [0.0, 0.3, 0.0, -0.9, 0.0, 0.6, 0.0]
"""An elbow-up pose over the base, far from table and zone for every seed."""



def fk(q) -> np.ndarray:
    """EE position (3,) of joint angles `q` by the agent-side chain."""
    return CHAIN.forward(torch.as_tensor(np.asarray(q, dtype=np.float64))[None])[0, -1, :3, 3].numpy()


def jacobian(q) -> np.ndarray:
    """(3, 7) EE position Jacobian by autograd through the chain."""
    x = torch.as_tensor(np.asarray(q, dtype=np.float64))
    return torch.autograd.functional.jacobian(lambda v: CHAIN.forward(v[None])[0, -1, :3, 3], x).numpy()


def q_now(world) -> np.ndarray:
    return world.body.observe().state[:7]


def move_ee(world, velocity, steps: int, until=None) -> int:
    """Resolved-rate control: command the joint velocities that move the EE at `velocity` (m/s, or a
    function of the world giving it), scaled down uniformly to the bounds, for up to `steps` control
    steps or until `until(world)`; returns the steps run."""
    for k in range(steps):
        if until is not None and until(world):
            return k
        q = q_now(world)
        jac = jacobian(q)
        v = velocity(world) if callable(velocity) else np.asarray(velocity, dtype=np.float64)
        qd = jac.T @ np.linalg.solve(jac @ jac.T + 1e-6 * np.eye(3), v)
        qd /= max(1.0, float(np.abs(qd / world.body.action_high).max()))
        world.body.command(qd)
        world.advance(world.dt)
    return steps


def toward_zone(zone, speed: float):
    """Steering for `move_ee`: `speed` (m/s) from the EE toward the zone's point nearest the base axis
    (5 cm inside), at the EE's height, so the arm gets there without stretching out."""
    target = [min(max(0.0, zone[i] - zone[3 + i] + 0.05), zone[i] + zone[3 + i] - 0.05) for i in range(2)]

    def velocity(world) -> np.ndarray:
        ee = world.ee()[0]
        d = np.array([target[0] - ee[0], target[1] - ee[1], 0.0])
        return speed * d / np.linalg.norm(d)

    return velocity


def zone_and_table(world):
    boxes = world.task.constraints["keep_out"]["boxes"]
    return boxes[0], boxes[-1]
