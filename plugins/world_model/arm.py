"""World model `arm`: a serial arm under joint velocity control (pybullet's KUKA iiwa by default).

State (21,) = [ee (3) m, ee_quat (4) x, y, z, w with w >= 0, q (7) rad, qd (7) rad/s],
the end effector (EE) being the origin of the last link frame. Action: joint
velocities (7,) rad/s. The body's motors track a velocity command within one
physics substep, so a step is an exact joint integration, q += a dt, qd = a,
and the EE pose is forward kinematics of the new q.

`ArmKinematics` is the plane-wise forward kinematics every arm plugin shares
(perception, this model, the arm guardrails); `resolve_urdf` finds the URDF.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from amiagent.contracts import WorldModel
from amiagent.errors import ConfigError
from amiagent.kinematics import Chain

DEFAULT_URDF = "kuka_iiwa/model.urdf"
"""The arm the `workcell` world simulates, relative to pybullet_data."""

POSE_DIM = 7
"""State values before the joint angles: EE position (3) and quaternion (4)."""


def resolve_urdf(path: str) -> str:
    """`path` as is when absolute; relative or empty, a file of pybullet_data (empty: the KUKA iiwa)."""
    if path and os.path.isabs(path):
        return path
    import pybullet_data  # a tiny pure-Python package: it only knows where pybullet's data lies

    return os.path.join(pybullet_data.getDataPath(), path or DEFAULT_URDF)


_CHAINS: dict[str, Chain] = {}


def load_chain(path: str) -> Chain:
    """The kinematic chain of a URDF (see `resolve_urdf`), parsed once per process."""
    resolved = resolve_urdf(path)
    chain = _CHAINS.get(resolved)
    if chain is None:
        chain = _CHAINS[resolved] = Chain.from_urdf(resolved)
    return chain


# --------------------------------------------------------------------------- kinematics

Columns = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""A rotation as its three columns, each (3, *S): column j is the frame's j-th axis in the world."""


def _snap(value: float) -> float:
    # URDF angles like 1.57079632679 leave 1e-12 residues: exact zeros and ones skip tensor operations
    for exact in (0.0, 1.0, -1.0):
        if abs(value - exact) < 1e-9:
            return exact
    return value


def _combine(columns: Columns, matrix: list[list[float]]) -> Columns:
    """`columns` @ `matrix` for a constant 3x3 `matrix`: new column j = sum_k columns[k] * matrix[k][j]."""
    out = []
    for j in range(3):
        acc = None
        for k in range(3):
            w = matrix[k][j]
            if w == 0.0:
                continue
            if acc is None:
                acc = columns[k] if w == 1.0 else (-columns[k] if w == -1.0 else columns[k] * w)
            else:
                acc = torch.add(acc, columns[k], alpha=w)
        out.append(acc if acc is not None else torch.zeros_like(columns[0]))
    return out[0], out[1], out[2]


def _translate(position: torch.Tensor, columns: Columns, offset: list[float]) -> torch.Tensor:
    """`position` + R @ `offset` for a constant offset (3,)."""
    for k in range(3):
        if offset[k] != 0.0:
            position = torch.add(position, columns[k], alpha=offset[k])
    return position


def _aligning(axis: tuple[float, float, float]) -> list[list[float]]:
    """A rotation A (3x3) with A e_z = `axis` (unit), so a turn about `axis` is A Rz A^T."""
    z = [a / math.sqrt(sum(v * v for v in axis)) for a in axis]
    helper = [1.0, 0.0, 0.0] if abs(z[0]) < 0.9 else [0.0, 1.0, 0.0]
    x = [helper[1] * z[2] - helper[2] * z[1], helper[2] * z[0] - helper[0] * z[2], helper[0] * z[1] - helper[1] * z[0]]
    n = math.sqrt(sum(v * v for v in x))
    x = [v / n for v in x]
    y = [z[1] * x[2] - z[2] * x[1], z[2] * x[0] - z[0] * x[2], z[0] * x[1] - z[1] * x[0]]
    return [[_snap(x[i]), _snap(y[i]), _snap(z[i])] for i in range(3)]


class ArmKinematics:
    """Forward kinematics of a `Chain`, plane-wise, for large CPU batches and autograd.

    `Chain.forward` multiplies (N, 4, 4) matrices; at N in the thousands torch
    spends its time on many tiny kernels. Here a link pose is its position
    (3, *S) and rotation columns (3, *S) for any batch shape S, and every
    constant transform (joint origins, fixed joints, axis alignment) is folded
    into the columns at build time: a signed permutation for the iiwa's origins,
    so a joint costs about seven tensor operations. Matches `Chain.forward`.
    """

    def __init__(self, chain: Chain):
        self.chain = chain
        self.dof = chain.dof
        self.lower, self.upper = chain.lower, chain.upper
        # per movable joint i, with link frames F: F_i = F_{i-1} T_i A_i Rz(q_i) A_i^T, where T_i is the
        # constant transform from the previous link (fixed joints folded in) and A_i turns z onto the axis
        self._before: list[tuple[list[list[float]], list[float]]] = []  # rotation of T_i A_i, offset of T_i
        self._after: list[list[list[float]] | None] = []  # A_i^T, None when the axis is z already
        self._bases: dict[tuple, tuple[torch.Tensor, Columns]] = {}
        self.axes: list[tuple[float, float, float]] = []
        """Each moving joint's unit axis in its own link frame."""
        pending = torch.eye(4, dtype=torch.float64)
        for joint in chain.joints:
            pending = pending @ joint.origin
            if joint.kind != "revolute":
                continue
            align = _aligning(joint.axis)
            rotation = pending[:3, :3] @ torch.tensor(align, dtype=torch.float64)
            self._before.append(([[_snap(float(v)) for v in row] for row in rotation],
                                 [_snap(float(v)) for v in pending[:3, 3]]))
            identity = all(align[i][j] == (1.0 if i == j else 0.0) for i in range(3) for j in range(3))
            self._after.append(None if identity else [[align[j][i] for j in range(3)] for i in range(3)])
            self.axes.append(tuple(align[i][2] for i in range(3)))
            pending = torch.eye(4, dtype=torch.float64)

    def links(self, cos: torch.Tensor, sin: torch.Tensor) -> list[tuple[torch.Tensor, Columns]]:
        """Cosines and sines of the joint angles, (dof, *S) -> per moving link its (position, columns), each (3, *S).

        The poses are the URDF link frames (pybullet's `getLinkState(...)[4:6]`)
        with the chain's base at the world origin.
        """
        position, columns = self._base(cos.dtype, cos.dim() - 1)
        out = []
        for i, ((rotation, offset), after) in enumerate(zip(self._before, self._after)):
            position = _translate(position, columns, offset)
            c0, c1, c2 = _combine(columns, rotation)
            c, s = cos[i], sin[i]
            # turn about the (aligned) z axis: R @ Rz(q)
            columns = (torch.addcmul(c0 * c, c1, s), torch.addcmul(c1 * c, c0, s, value=-1.0), c2)
            if after is not None:
                columns = _combine(columns, after)
            out.append((position, columns))
        return out

    def _base(self, dtype: torch.dtype, dims: int) -> tuple[torch.Tensor, Columns]:
        """The base pose (identity at the origin), shaped to broadcast over `dims` batch axes."""
        key = (dtype, dims)
        base = self._bases.get(key)
        if base is None:
            eye = torch.eye(3, dtype=dtype).view(3, 3, *(1,) * dims)
            base = self._bases[key] = (torch.zeros(3, *(1,) * dims, dtype=dtype), (eye[:, 0], eye[:, 1], eye[:, 2]))
        return base

    def forward(self, q: torch.Tensor) -> list[tuple[torch.Tensor, Columns]]:
        """Joint angles (dof, *S) -> per moving link its (position, columns), see `links`."""
        return self.links(torch.cos(q), torch.sin(q))

    def jacobian(self, links: list[tuple[torch.Tensor, Columns]]) -> torch.Tensor:
        """Link poses from `links` -> (dof, 3, *S): d(EE position)/d(q_i) = axis_i x (ee - p_i), m/rad."""
        ee = links[-1][0]
        axes, positions = [], []
        for (position, columns), axis in zip(links, self.axes):
            terms = [(columns[k], a) for k, a in enumerate(axis) if a != 0.0]
            world = terms[0][0] if len(terms) == 1 and terms[0][1] == 1.0 else sum(c * a for c, a in terms)
            axes.append(world.expand_as(ee))
            positions.append(position.expand_as(ee))
        a0, a1, a2 = torch.stack(axes, dim=1)  # (3, dof, *S)
        d0, d1, d2 = ee.unsqueeze(1) - torch.stack(positions, dim=1)
        # the cross product as planes: torch.linalg.cross is several times slower on CPU here
        return torch.stack([a1 * d2 - a2 * d1, a2 * d0 - a0 * d2, a0 * d1 - a1 * d0], dim=1)


def quaternion(columns: Columns) -> torch.Tensor:
    """Rotation columns (3, *S) each -> (4, *S) unit quaternions (x, y, z, w), sign chosen so that w >= 0.

    Shepperd's method: each sample is computed from its largest component, so
    no division is ever by a small number. Selections are `torch.where` over
    planes: reductions over a leading axis of four are slow on CPU.
    """
    (r00, r10, r20), (r01, r11, r21), (r02, r12, r22) = columns
    tx, ty = 1 + r00 - r11 - r22, 1 - r00 + r11 - r22  # 4 x^2, 4 y^2
    tz, tw = 1 - r00 - r11 + r22, 1 + r00 + r11 + r22  # 4 z^2, 4 w^2
    xy, xz, yz = r01 + r10, r02 + r20, r12 + r21  # 4 x y, 4 x z, 4 y z
    wx, wy, wz = r21 - r12, r02 - r20, r10 - r01  # 4 w x, 4 w y, 4 w z
    # the quaternion scaled by 4 * (its largest component), from each candidate: (xyzw, *S)
    from_x = torch.stack([tx, xy, xz, wx])
    from_y = torch.stack([xy, ty, yz, wy])
    from_z = torch.stack([xz, yz, tz, wz])
    from_w = torch.stack([wx, wy, wz, tw])
    quat = torch.where(torch.maximum(tz, tw) >= torch.maximum(tx, ty),
                       torch.where(tw >= tz, from_w, from_z), torch.where(ty > tx, from_y, from_x))
    x, y, z, w = quat
    norm = torch.addcmul(torch.addcmul(x * x, y, y), z, z).addcmul_(w, w).sqrt_()
    return quat / torch.where(w < 0, -norm, norm)


def ee_pose(kinematics: ArmKinematics, q: torch.Tensor) -> torch.Tensor:
    """Joint angles (dof, *S) -> (7, *S): EE position (3) and quaternion (4)."""
    position, columns = kinematics.forward(q)[-1]
    return torch.cat([position.expand(3, *q.shape[1:]), quaternion(columns)])


# --------------------------------------------------------------------------- the model


class ArmModel(WorldModel):
    """Joint integration plus forward kinematics; see the module docstring.

    Joint angles are not clamped to the limits: the `joint_limits` guardrail
    must see a plan that leaves them. `goal_states` answers with inverse
    kinematics: the rest states whose EE lies within a tolerance of the target.
    """

    @dataclass(frozen=True)
    class Params:
        dt: float = 0.1
        """Seconds per control step."""
        max_joint_velocity: float = 1.0
        """Cap on every joint's speed (rad/s), below the URDF's own limits: the action bound."""
        urdf: str = ""
        """The arm's URDF: absolute, or relative to pybullet_data; empty means the KUKA iiwa."""
        ik_starts: int = 64
        """Seeded starting configurations of the inverse kinematics."""
        ik_iterations: int = 60
        """Damped least-squares steps from each start."""
        ik_limit_margin: float = 0.1
        """Inverse-kinematics solutions stay this far (rad) inside the joint limits, so that the
        `joint_limits` guardrail (margin 0.05 by default) accepts them."""
        seed: int = 0
        """Seed of the inverse-kinematics starts: the same goal always gives the same solutions."""

        def __post_init__(self) -> None:
            if not (self.dt > 0 and self.max_joint_velocity > 0):
                raise ConfigError(f"world_model.arm: dt and max_joint_velocity must be > 0, got {self}")
            if self.ik_starts < 1 or self.ik_iterations < 1 or self.ik_limit_margin < 0:
                raise ConfigError(f"world_model.arm: ik_starts, ik_iterations >= 1 and ik_limit_margin >= 0 "
                                  f"required, got {self}")

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        p = self.params
        self.kinematics = ArmKinematics(load_chain(p.urdf))
        chain = self.kinematics.chain
        n = chain.dof
        if torch.isinf(chain.lower).any() or torch.isinf(chain.upper).any():
            raise ConfigError(f"world_model.arm: every joint of {resolve_urdf(p.urdf)} needs finite limits")
        if 2 * p.ik_limit_margin >= float((chain.upper - chain.lower).min()):
            raise ConfigError(f"world_model.arm: ik_limit_margin {p.ik_limit_margin} leaves no room inside the limits")
        self.dof = n
        self.state_dim = POSE_DIM + 2 * n
        self.action_dim = n
        self.dt = p.dt
        speed = torch.clamp(chain.max_velocity, max=p.max_joint_velocity).float()
        self.action_low, self.action_high = -speed, speed

    def rollout(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        n, batch, horizon = self.dof, actions.shape[0], actions.shape[1]
        # built as (D, B, H): every state dimension a contiguous (B, H) plane, as cost terms read them
        out = torch.empty(self.state_dim, batch, horizon)
        velocity = actions.float().permute(2, 0, 1)  # (n, B, H)
        q = out[POSE_DIM : POSE_DIM + n]
        torch.cumsum(velocity, dim=2, out=q)
        q.mul_(self.dt).add_(states[:, POSE_DIM : POSE_DIM + n].float().T.unsqueeze(-1))  # + q0, (n, B or 1, 1)
        out[POSE_DIM + n :] = velocity
        position, columns = self.kinematics.forward(q)[-1]
        out[:3] = position
        out[3:POSE_DIM] = quaternion(columns)
        return out.permute(1, 2, 0)

    def brake_action(self, states: torch.Tensor) -> torch.Tensor:
        """Zero joint velocity: the motors stop at once."""
        return torch.zeros(states.shape[0], self.action_dim)

    def goal_states(self, goal: torch.Tensor, tolerance: float) -> torch.Tensor:
        """Rest states (N, D) whose EE lies within `tolerance` (m) of `goal[:3]`; (0, D) when out of reach.

        Inverse kinematics by damped least squares from `ik_starts` seeded
        configurations at once, projected into the joint limits (less
        `ik_limit_margin`) after every step. Distinct solutions are kept (the
        same configuration reached from two starts counts once).
        """
        p, chain = self.params, self.kinematics.chain
        target = goal.reshape(-1)[:3].to(torch.float64).view(3, 1)
        low = (chain.lower + p.ik_limit_margin).view(-1, 1)
        high = (chain.upper - p.ik_limit_margin).view(-1, 1)
        generator = torch.Generator().manual_seed(p.seed)
        q = low + (high - low) * torch.rand(self.dof, p.ik_starts, generator=generator, dtype=torch.float64)
        damping = 1e-2  # m: keeps steps short near singular configurations and out of reach
        for _ in range(p.ik_iterations):
            links = self.kinematics.forward(q)
            error = target - links[-1][0]  # (3, S)
            j = self.kinematics.jacobian(links).permute(2, 1, 0)  # (S, 3, dof)
            system = j @ j.mT + damping**2 * torch.eye(3, dtype=q.dtype)
            step = j.mT @ torch.linalg.solve(system, error.T.unsqueeze(-1))  # (S, dof, 1)
            q = torch.clamp(q + step[..., 0].T, low, high)
        pose = ee_pose(self.kinematics, q)  # (7, S)
        reached = torch.linalg.vector_norm(pose[:3] - target, dim=0) <= tolerance
        q, pose = q[:, reached], pose[:, reached]
        if q.shape[1] > 1:  # drop duplicates: starts that converged to one configuration
            keep = [0]
            for i in range(1, q.shape[1]):
                if all(float((q[:, i] - q[:, k]).abs().max()) > 1e-3 for k in keep):
                    keep.append(i)
            q, pose = q[:, keep], pose[:, keep]
        states = torch.cat([pose, q, torch.zeros_like(q)]).T
        return states.float().contiguous()


