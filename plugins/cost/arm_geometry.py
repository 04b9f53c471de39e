"""What the arm's guardrails and cost-to-go compute with (`amiagent.plugins.cost.arm`).

The iiwa's link-covering spheres, one forward-kinematics pass per states tensor
shared by every arm guardrail, signed distances from points to boxes, and the
parsing of their settings sections. States are the `arm` world model's,
(B, H, D) with D = 7 + 2n: [ee (3) m, ee_quat (4), q (n) rad, qd (n) rad/s];
boxes are axis-aligned, [cx, cy, cz, hx, hy, hz]: centre and half extents (m).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from amiagent.contracts import Guardrail, Settings
from amiagent.errors import ConfigError, ContractError
from amiagent.plugins.cost.sections import read
from amiagent.plugins.world_model.arm import POSE_DIM, ArmKinematics, ArmModel, load_chain, resolve_urdf

Q_START = POSE_DIM
"""Index along D of the first joint angle (after the EE position and quaternion)."""

# The KUKA iiwa's collision geometry (pybullet: the convex hulls of meshes/link_<i>.stl; the links
# are 0.068 m cylinders with joint housings bulging to 0.09-0.13 m from the joint axes), covered by
# 16 spheres fixed in the link frames: (link, x, y, z, radius) in m, link 1..7 being lbr_iiwa_link_1..7
# (pybullet links 0..6). Fitted offline to points of each hull (mesh vertices and mixtures of them):
# k-means clusters grown into minimal enclosing balls, 1-3 per link, keeping the fewest spheres whose
# overshoot past the hull (support function minus the hull's, worst direction) stays near 3-4 cm.
# Against pybullet's getClosestPoints (1500 random poses and boxes): no box touching a link is missed,
# and for boxes within 15 cm the spheres reach 1.7 cm nearer than the links at the median (3.0 cm at
# p95, 3.4 cm at most); tests/test_arm_plugins.py keeps checking the first. The fixed base (link 0)
# stands at the origin and is never checked.
KUKA_SPHERES: tuple[tuple[float, float, float, float, float], ...] = (
    (1, 0.002, -0.043, 0.195, 0.103), (1, -0.001, -0.001, 0.066, 0.109),
    (2, 0.000, 0.003, 0.050, 0.102), (2, 0.000, 0.136, 0.011, 0.104),
    (3, 0.001, 0.032, 0.136, 0.078), (3, 0.000, 0.047, 0.215, 0.083), (3, 0.000, 0.001, 0.045, 0.083),
    (4, 0.001, 0.124, 0.005, 0.096), (4, 0.001, 0.009, 0.047, 0.091),
    (5, 0.002, 0.036, 0.108, 0.068), (5, -0.004, 0.063, 0.200, 0.068), (5, 0.000, 0.000, 0.035, 0.077),
    (6, 0.000, -0.003, -0.019, 0.068), (6, -0.001, -0.022, 0.015, 0.068), (6, 0.000, 0.034, 0.000, 0.070),
    (7, 0.000, 0.000, 0.006, 0.053),
)

def example_settings() -> Settings:
    """Settings as the workcell gives them (a person zone, a table, the KUKA's limits), for the checkers."""
    chain = ArmModel().kinematics
    return Settings(goal=(0.5, 0.0, 0.5) + (0.0,) * (Q_START + 2 * chain.lower.shape[0] - 3), guardrails={
        "keep_out": {"boxes": [[0.5, 0.8, 0.9, 0.2, 0.15, 0.9], [0.7, 0.0, 0.1, 0.25, 0.4, 0.1]]},
        "joint_limits": {"lower": chain.lower.tolist(), "upper": chain.upper.tolist()},
        "ee_speed_limit": {"limit": 0.25, "near": 0.15, "boxes": [[0.5, 0.8, 0.9, 0.2, 0.15, 0.9]]},
    })


_KINEMATICS: dict[str, ArmKinematics] = {}
_POSES: tuple = (None, None, None)  # (key, states, poses) of the last states seen


def kinematics_for(urdf: str) -> ArmKinematics:
    resolved = resolve_urdf(urdf)
    kinematics = _KINEMATICS.get(resolved)
    if kinematics is None:
        kinematics = _KINEMATICS[resolved] = ArmKinematics(load_chain(urdf))
    return kinematics


def joint_planes(states: torch.Tensor, kinematics: ArmKinematics, what: str) -> torch.Tensor:
    """(B, H, D) states -> (n, B, H) joint angles; ContractError when D is too short for the arm."""
    n = kinematics.dof
    if states.shape[-1] < Q_START + 2 * n:
        raise ContractError(f"{what}: arm states hold {Q_START + 2 * n} values ([ee, quat, q, qd]), got "
                            f"{states.shape[-1]}; use the `arm` world model and perception")
    return states.permute(2, 0, 1)[Q_START : Q_START + n]


def link_poses(states: torch.Tensor, kinematics: ArmKinematics, what: str) -> list:
    """Link poses (see `ArmKinematics.links`) of the states' joint angles, (3, B, H) each.

    A planner scores one states tensor with every guardrail: the pass is kept
    for the same, unmodified tensor (`_version` counts in-place changes) so the
    arm guardrails share it. One entry, replaced whole: safe across threads.
    """
    global _POSES
    key = (id(states), states._version, id(kinematics))
    cached = _POSES
    if cached[0] == key and cached[1] is states:
        return cached[2]
    poses = kinematics.forward(joint_planes(states, kinematics, what))
    _POSES = (key, states, poses)
    return poses


def parse_boxes(where: str, value: Any) -> torch.Tensor:
    """A list of [cx, cy, cz, hx, hy, hz] as a (K, 6) tensor; ConfigError naming `where` otherwise."""
    if value is None:
        return torch.zeros(0, 6)
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list of boxes [cx, cy, cz, hx, hy, hz], got {value!r}")
    rows = []
    for i, box in enumerate(value):
        if isinstance(box, (str, bytes)) or not isinstance(box, (list, tuple)) or len(box) != 6:
            raise ConfigError(f"{where}[{i}] must be [cx, cy, cz, hx, hy, hz] (6 numbers, m), got {box!r}")
        numbers = [parse_number(f"{where}[{i}]", v) for v in box]
        if min(numbers[3:]) <= 0:
            raise ConfigError(f"{where}[{i}]: half extents must be > 0, got {box!r}")
        rows.append(numbers)
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)


def parse_number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where} must hold finite numbers, got {value!r}")
    return float(value)


def read_section(settings: Settings, owner: Guardrail, keys: set[str]) -> tuple[Mapping[str, Any] | None, str]:
    """The section `owner` declares in `reads`, checked for unknown keys, and its path for messages."""
    name = type(owner).reads[0]
    section = read(settings, owner)
    if section is None:
        return None, ""
    unknown = sorted(set(section) - keys)
    if unknown:
        raise ConfigError(f"settings.guardrails[{name!r}]: unknown key(s) {unknown} for an arm; valid: {sorted(keys)}")
    return section, f"settings.guardrails[{name!r}]"


def box_distance(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Signed distance (m) from points (P, 3, *S) to boxes (K, 6): (K, P, *S), negative inside."""
    view = (-1, 1, 3) + (1,) * (points.dim() - 2)
    # (K, P, 3, *S): per axis, how far outside the box's slab (negative: inside)
    d = (points - boxes[:, :3].reshape(view)).abs_().sub_(boxes[:, 3:].reshape(view))
    dx, dy, dz = d.unbind(2)
    ox, oy, oz = dx.clamp(min=0.0), dy.clamp(min=0.0), dz.clamp(min=0.0)
    outside = torch.addcmul(torch.addcmul(ox * ox, oy, oy), oz, oz).sqrt_()
    return outside + torch.maximum(torch.maximum(dx, dy), dz).clamp_(max=0.0)


def norm3(v: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the leading axis of three, as planes (faster on CPU than a reduction)."""
    x, y, z = v
    return torch.addcmul(torch.addcmul(x * x, y, y), z, z).sqrt_()
