"""Forward kinematics of a serial URDF chain, batched in torch.

`Chain.from_urdf(path)` reads the joints from the base link to a tip link (fixed
and revolute joints; each with its origin xyz/rpy and axis) and their limits.
`Chain.forward(q)` maps joint angles (B, n) to the world poses (B, n, 4, 4) of
the link each joint moves (the URDF link frames, as pybullet reports them in
`getLinkState(...)[4:6]`), all in one batch, differentiable, in the dtype of `q`.
Used by arm world models and end-effector guardrails; no simulator involved.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import torch

from amiagent.errors import ConfigError


def _floats(text: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split()) if text else default


def _rpy_matrix(roll: float, pitch: float, yaw: float) -> torch.Tensor:
    """URDF fixed-axis roll, pitch, yaw: R = Rz(yaw) Ry(pitch) Rx(roll), float64."""
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch),
                              math.cos(yaw), math.sin(yaw))
    return torch.tensor([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ], dtype=torch.float64)


@dataclass(frozen=True)
class Joint:
    """One joint of the chain: its fixed transform from the parent link, axis, type and limits."""

    name: str
    child: str
    kind: str  # "revolute" or "fixed"
    origin: torch.Tensor  # (4, 4) float64, parent link frame -> joint frame
    axis: tuple[float, float, float]
    lower: float = -math.inf
    upper: float = math.inf
    velocity: float = math.inf


class Chain:
    """A serial chain of joints; `movable` are the revolute ones, in order (B, n) for `forward`."""

    def __init__(self, joints: list[Joint]):
        if not joints:
            raise ConfigError("a kinematic chain needs at least one joint")
        self.joints = joints
        self.movable = [j for j in joints if j.kind == "revolute"]
        self.lower = torch.tensor([j.lower for j in self.movable], dtype=torch.float64)
        self.upper = torch.tensor([j.upper for j in self.movable], dtype=torch.float64)
        self.max_velocity = torch.tensor([j.velocity for j in self.movable], dtype=torch.float64)

    @property
    def dof(self) -> int:
        return len(self.movable)

    @classmethod
    def from_urdf(cls, path: str, base: str | None = None, tip: str | None = None) -> Chain:
        """The chain from `base` (default: the root link) to `tip` (default: the last link of the chain)."""
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as exc:
            raise ConfigError(f"cannot read the URDF {path}: {exc}") from exc
        by_parent: dict[str, list[Joint]] = {}
        children = set()
        for el in root.findall("joint"):
            kind = el.get("type", "")
            if kind not in ("revolute", "fixed", "continuous"):
                raise ConfigError(f"{path}: joint {el.get('name')!r} is {kind!r}; only revolute, continuous and "
                                  "fixed joints are supported")
            origin = el.find("origin")
            xyz = _floats(origin.get("xyz") if origin is not None else None, (0.0, 0.0, 0.0))
            rpy = _floats(origin.get("rpy") if origin is not None else None, (0.0, 0.0, 0.0))
            transform = torch.eye(4, dtype=torch.float64)
            transform[:3, :3] = _rpy_matrix(*rpy)
            transform[:3, 3] = torch.tensor(xyz, dtype=torch.float64)
            axis_el = el.find("axis")
            axis = _floats(axis_el.get("xyz") if axis_el is not None else None, (1.0, 0.0, 0.0))
            limit = el.find("limit")
            lower = float(limit.get("lower", -math.inf)) if limit is not None and kind == "revolute" else -math.inf
            upper = float(limit.get("upper", math.inf)) if limit is not None and kind == "revolute" else math.inf
            velocity = float(limit.get("velocity", math.inf)) if limit is not None else math.inf
            parent, child = el.find("parent").get("link"), el.find("child").get("link")
            joint = Joint(el.get("name"), child, "fixed" if kind == "fixed" else "revolute", transform,
                          axis, lower, upper, velocity)
            by_parent.setdefault(parent, []).append(joint)
            children.add(child)
        roots = [p for p in by_parent if p not in children]
        start = base or (roots[0] if len(roots) == 1 else None)
        if start is None:
            raise ConfigError(f"{path}: name the base link; roots are {roots}")
        joints, link = [], start
        while link in by_parent and link != tip:
            nxt = by_parent[link]
            if len(nxt) != 1:
                raise ConfigError(f"{path}: link {link!r} branches into {len(nxt)} joints; name the tip link")
            joints.append(nxt[0])
            link = nxt[0].child
        if tip is not None and link != tip:
            raise ConfigError(f"{path}: no chain from {start!r} to {tip!r}")
        return cls(joints)

    def forward(self, q: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """Joint angles (B, dof) -> (B, dof, 4, 4) world poses of the moving links (fixed joints folded in).

        `base`: (4, 4) pose of the chain's base link in the world (default: identity).
        """
        if q.ndim != 2 or q.shape[1] != self.dof:
            raise ConfigError(f"forward kinematics takes joint angles (B, {self.dof}), got {tuple(q.shape)}")
        dtype, batch = q.dtype, q.shape[0]
        pose = (base if base is not None else torch.eye(4, dtype=torch.float64)).to(dtype).expand(batch, 4, 4)
        out, i = [], 0
        for joint in self.joints:
            pose = pose @ joint.origin.to(dtype)
            if joint.kind == "revolute":
                pose = pose @ self._rotation(joint.axis, q[:, i])
                out.append(pose)
                i += 1
        return torch.stack(out, dim=1)

    @staticmethod
    def _rotation(axis: tuple[float, float, float], angle: torch.Tensor) -> torch.Tensor:
        """(B,) angles about a unit `axis` -> (B, 4, 4) homogeneous rotations (Rodrigues)."""
        x, y, z = (a / math.sqrt(sum(v * v for v in axis)) for a in axis)
        c, s = torch.cos(angle), torch.sin(angle)
        t = 1 - c
        zero, one = torch.zeros_like(angle), torch.ones_like(angle)
        rows = [
            [t * x * x + c, t * x * y - s * z, t * x * z + s * y, zero],
            [t * x * y + s * z, t * y * y + c, t * y * z - s * x, zero],
            [t * x * z - s * y, t * y * z + s * x, t * z * z + c, zero],
            [zero, zero, zero, one],
        ]
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)
