"""Guardrails of a serial arm (joint limits, keep-out boxes for the whole arm, EE speed near zones), and its
joint-space cost-to-go.

They read the states of the `arm` world model, (B, H, D) with D = 7 + 2n:
[ee (3) m, ee_quat (4), q (n) rad, qd (n) rad/s]; state h is the arm after
action h, which it holds for one control step. Zones and limits arrive through
the settings (`settings.guardrails[section]`, from the task's constraints; each
guardrail declares its section in `reads`, see `sections.py`); boxes
are axis-aligned, [cx, cy, cz, hx, hy, hz]: centre and half extents (m).
Before settings arrive, and while they name no zone, a guardrail reports no
violation. The arm guardrails share one forward-kinematics pass per states
tensor (`arm_geometry.link_poses`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from amiagent.contracts import CostTerm, Guardrail, Settings
from amiagent.errors import ConfigError, ContractError
from amiagent.plugins.cost.arm_geometry import (
    KUKA_SPHERES,
    Q_START,
    box_distance,
    example_settings,
    joint_planes,
    kinematics_for,
    link_poses,
    norm3,
    parse_boxes,
    parse_number,
    read_section,
)
from amiagent.plugins.world_model.arm import ArmModel, resolve_urdf

__all__ = ["KUKA_SPHERES", "ArmKeepOut", "EESpeedLimit", "JointGoal", "JointLimits", "example_settings"]


# --------------------------------------------------------------------------- joint limits


class JointLimits(Guardrail):
    """Keeps every joint angle within [lower + margin, upper - margin] (rad).

    Settings: `joint_limits: {lower: [n], upper: [n]}`. Violation: the summed
    amount (rad) by which the joints leave that range.
    """

    example_settings = staticmethod(example_settings)
    reads = ("joint_limits",)

    @dataclass(frozen=True)
    class Params:
        margin: float = 0.05
        """Radians kept inside each limit."""

        def __post_init__(self) -> None:
            if not (math.isfinite(self.margin) and self.margin >= 0):
                raise ConfigError(f"joint_limits: margin must be >= 0, got {self.margin}")

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self._low: torch.Tensor | None = None
        self._high: torch.Tensor | None = None

    def apply(self, settings: Settings) -> None:
        section, where = read_section(settings, self, {"lower", "upper"})
        if section is None:
            self._low = self._high = None
            return
        limits = []
        for key in ("lower", "upper"):
            value = section.get(key)
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
                raise ConfigError(f"{where}.{key} must be a list of joint angles (rad), got {value!r}")
            limits.append([parse_number(f"{where}.{key}", v) for v in value])
        lower, upper = limits
        m = self.params.margin
        if len(lower) != len(upper) or any(hi - lo <= 2 * m for lo, hi in zip(lower, upper)):
            raise ConfigError(f"{where}: lower and upper need one value per joint, upper - lower > 2 * margin "
                              f"({2 * m:g} rad); got {lower} and {upper}")
        self._low = torch.tensor(lower, dtype=torch.float32).view(-1, 1, 1) + m
        self._high = torch.tensor(upper, dtype=torch.float32).view(-1, 1, 1) - m

    def violation(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self._low is None:
            return states.new_zeros(states.shape[:2])
        n = self._low.shape[0]
        if states.shape[-1] < Q_START + 2 * n:
            raise ContractError(f"joint_limits: {n} joint limits need arm states of {Q_START + 2 * n} values, "
                                f"got {states.shape[-1]}")
        q = states.permute(2, 0, 1)[Q_START : Q_START + n]  # (n, B, H)
        return (q - torch.clamp(q, self._low, self._high)).abs_().sum(dim=0)


# --------------------------------------------------------------------------- keep-out


class ArmKeepOut(Guardrail):
    """Keeps the whole arm out of boxes: spheres covering every moving link, inflated by `margin`.

    Settings: `keep_out: {boxes: [[cx, cy, cz, hx, hy, hz], ...]}` (the person's
    zone and the table, say). Violation: penetration depth (m) of the inflated
    spheres into the boxes, summed over spheres and boxes. The spheres follow the
    links by forward kinematics of the state's joint angles.
    """

    example_settings = staticmethod(example_settings)
    reads = ("keep_out",)

    @dataclass(frozen=True)
    class Params:
        margin: float = 0.03
        """Clearance (m) added to every sphere's radius."""
        urdf: str = ""
        """The arm's URDF: absolute, or relative to pybullet_data; empty means the KUKA iiwa."""
        spheres: tuple[tuple[float, ...], ...] = ()
        """(link, x, y, z, radius) rows in link frames (m), link 1..n; empty: the iiwa's (KUKA_SPHERES)."""

        def __post_init__(self) -> None:
            if not (math.isfinite(self.margin) and self.margin >= 0):
                raise ConfigError(f"arm_keep_out: margin must be >= 0, got {self.margin}")
            if not self.spheres and resolve_urdf(self.urdf) != resolve_urdf(""):
                raise ConfigError("arm_keep_out: an arm other than the iiwa needs its own `spheres`")

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        p = self.params
        self.kinematics = kinematics_for(p.urdf)
        rows = p.spheres or KUKA_SPHERES
        n = self.kinematics.dof
        for row in rows:
            if len(row) != 5 or not 1 <= int(row[0]) <= n or int(row[0]) != row[0] or not row[4] > 0:
                raise ConfigError(f"arm_keep_out: each sphere is (link 1..{n}, x, y, z, radius > 0), got {row}")
        links = sorted({int(row[0]) for row in rows})
        # per link that carries spheres: its index and the (K, 3, 1, 1) offsets
        self._groups = [
            (link - 1, torch.tensor([row[1:4] for row in rows if int(row[0]) == link], dtype=torch.float32))
            for link in links
        ]
        radii = [row[4] for link in links for row in rows if int(row[0]) == link]
        self._inflated = (torch.tensor(radii, dtype=torch.float32) + p.margin).view(1, -1, 1, 1)  # (1, S, 1, 1)
        self._boxes = torch.zeros(0, 6)

    def apply(self, settings: Settings) -> None:
        section, where = read_section(settings, self, {"boxes"})
        self._boxes = parse_boxes(f"{where}.boxes", (section or {}).get("boxes"))

    def centres(self, states: torch.Tensor) -> torch.Tensor:
        """(B, H, D) states -> (S, 3, B, H) sphere centres (m) in the world."""
        poses = link_poses(states, self.kinematics, "arm_keep_out")
        parts = []
        for index, offsets in self._groups:
            position, (c0, c1, c2) = poses[index]
            ox, oy, oz = (offsets[:, k].view(-1, 1, 1, 1) for k in range(3))
            parts.append(position + c0 * ox + c1 * oy + c2 * oz)  # (K, 3, B, H)
        return torch.cat(parts)

    def violation(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if not len(self._boxes):
            return states.new_zeros(states.shape[:2])
        distance = box_distance(self.centres(states), self._boxes)  # (K, S, B, H)
        return torch.relu(self._inflated - distance).sum(dim=(0, 1))


# --------------------------------------------------------------------------- EE speed


class EESpeedLimit(Guardrail):
    """Keeps the EE's linear speed at most `limit - margin` (m/s) while the EE is within `near` of a box.

    Settings: `ee_speed_limit: {limit, near, boxes: [[cx, cy, cz, hx, hy, hz], ...]}`.
    The speed is the Jacobian's J(q) qd. Each step is checked at both ends of
    the motion it holds: the action of step h starts at the previous state's
    joint angles (for h = 0, q_1 - dt qd_1) and ends at state h. Violation: the
    excess speed (m/s), the larger of the two ends, where the EE is near a box.
    """

    example_settings = staticmethod(example_settings)
    reads = ("ee_speed_limit",)

    @dataclass(frozen=True)
    class Params:
        margin: float = 0.02
        """Speed (m/s) kept below the limit."""
        near_margin: float = 0.02
        """Metres added to `near`: the region is checked at step ends only."""
        dt: float = 0.1
        """Seconds per control step (the world model's), to find where step 0 starts."""
        urdf: str = ""
        """The arm's URDF: absolute, or relative to pybullet_data; empty means the KUKA iiwa."""

        def __post_init__(self) -> None:
            if not (self.margin >= 0 and self.near_margin >= 0 and self.dt > 0):
                raise ConfigError(f"ee_speed_limit: margin, near_margin >= 0 and dt > 0 required, got {self}")

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self.kinematics = kinematics_for(self.params.urdf)
        self._limit: float | None = None
        self._near = 0.0
        self._boxes = torch.zeros(0, 6)

    def apply(self, settings: Settings) -> None:
        section, where = read_section(settings, self, {"limit", "near", "boxes"})
        if section is None:
            self._limit = None
            return
        limit = parse_number(f"{where}.limit", section.get("limit"))
        near = parse_number(f"{where}.near", section.get("near", 0.0))
        if limit <= self.params.margin or near < 0:
            raise ConfigError(f"{where}: limit must exceed the margin ({self.params.margin} m/s) and near be >= 0, "
                              f"got limit={limit}, near={near}")
        self._boxes = parse_boxes(f"{where}.boxes", section.get("boxes"))
        self._limit, self._near = limit, near

    def violation(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self._limit is None or not len(self._boxes):
            return states.new_zeros(states.shape[:2])
        kin, n = self.kinematics, self.kinematics.dof
        poses = link_poses(states, kin, "ee_speed_limit")
        qd = states.permute(2, 0, 1)[Q_START + n : Q_START + 2 * n]  # (n, B, H)
        # where the action of step h starts: state h - 1, and for h = 0 q_0 = q_1 - dt qd_1
        q0 = joint_planes(states[:, :1], kin, "ee_speed_limit") - self.params.dt * qd[:, :, :1]
        first = kin.forward(q0)
        ee = poses[-1][0]  # (3, B, H)
        near = self._near + self.params.near_margin
        end_near = self._near_mask(ee, near)
        start_near = torch.cat([self._near_mask(first[-1][0], near), end_near[:, :-1]], dim=1)
        if not bool(end_near.any() or start_near.any()):
            return states.new_zeros(states.shape[:2])  # the usual case, far from every box: no Jacobian needed
        jacobian = kin.jacobian(poses)  # (n, 3, B, H)
        end_v = (jacobian * qd.unsqueeze(1)).sum(dim=0)
        later_v = (jacobian[..., :-1] * qd[:, None, :, 1:]).sum(dim=0)
        first_v = (kin.jacobian(first) * qd[:, None, :, :1]).sum(dim=0)
        start_v = torch.cat([first_v, later_v], dim=2)
        cap = self._limit - self.params.margin
        excess = [torch.where(mask, torch.relu(norm3(v) - cap), 0.0)
                  for v, mask in ((end_v, end_near), (start_v, start_near))]
        return torch.maximum(*excess)

    def _near_mask(self, points: torch.Tensor, near: float) -> torch.Tensor:
        """EE positions (3, B, H) -> (B, H) bool: within `near` (m) of a box."""
        return box_distance(points.unsqueeze(0), self._boxes)[:, 0].amin(dim=0) <= near


# --------------------------------------------------------------------------- joint-space cost-to-go


class JointGoal(CostTerm):
    """Joint-space distance (rad) to a configuration that puts the EE on the goal: the arm's cost-to-go.

    The EE distance alone leads a sampling planner into joint limits and folded
    configurations from which the target is out of reach: minima no short
    horizon sees past. On new settings this term solves inverse kinematics for
    `settings.goal[:3]` (the `arm` model's `goal_states`) and keeps the
    solutions clear of the settings' keep-out boxes and joint limits. At its
    first evaluation it routes the arm from its joint angles: straight to the
    nearest solution whose straight joint-space path is clear; when none is
    (a zone between arm and target), through the via configuration, among
    `vias` seeded samples, that gives the shortest clear two-leg route, aiming
    at the via until the arm is within `switch` of it. Per step: the remaining
    route length from q_t (rad, Euclidean over the joints), the last step
    weighted `terminal` times; zero when no clear solution exists.
    """

    example_settings = staticmethod(example_settings)
    reads = ArmKeepOut.reads + JointLimits.reads
    """What its own `arm_keep_out` and `joint_limits` read: they keep its solutions and routes clear."""

    @dataclass(frozen=True)
    class Params:
        terminal: float = 1.0
        tolerance: float = 0.005
        """EE distance (m) within which an inverse-kinematics solution counts."""
        keep_out_margin: float = 0.03
        """Clearance (m) the solutions and paths keep from the keep-out boxes (as `arm_keep_out`'s margin)."""
        joint_margin: float = 0.05
        """Radians the solutions keep inside the joint limits (as `joint_limits`' margin)."""
        path_points: int = 16
        """Configurations checked along each straight joint-space leg."""
        vias: int = 256
        """Seeded via configurations tried when no straight path is clear."""
        switch: float = 0.3
        """Radians from the via at which the route continues to the solution."""
        seed: int = 0
        urdf: str = ""
        """The arm's URDF: absolute, or relative to pybullet_data; empty means the KUKA iiwa."""
        spheres: tuple[tuple[float, ...], ...] = ()
        """The keep-out spheres (see `arm_keep_out`); empty: the iiwa's."""

        def __post_init__(self) -> None:
            if self.terminal < 0 or self.tolerance <= 0 or self.path_points < 2 or self.vias < 0 or self.switch <= 0:
                raise ConfigError(f"joint_goal: terminal >= 0, tolerance > 0, path_points >= 2, vias >= 0 and "
                                  f"switch > 0 required, got {self}")
            if self.keep_out_margin < 0 or self.joint_margin < 0:
                raise ConfigError(f"joint_goal: margins must be >= 0, got {self}")

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        p = self.params
        self._model = ArmModel(ArmModel.Params(urdf=p.urdf, ik_limit_margin=max(p.joint_margin, 0.01) + 0.05))
        self._keep_out = ArmKeepOut(ArmKeepOut.Params(margin=p.keep_out_margin, urdf=p.urdf, spheres=p.spheres))
        self._limits = JointLimits(JointLimits.Params(margin=p.joint_margin))
        self._solutions: torch.Tensor | None = None  # (N, n) clear IK configurations
        self._route: tuple[list[float], ...] | None = None  # joint targets still ahead, picked at the first evaluation
        self._step_weights: dict[int, torch.Tensor] = {}

    def apply(self, settings: Settings) -> None:
        self._keep_out.apply(settings)
        self._limits.apply(settings)
        states = self._model.goal_states(settings.goal_tensor(), self.params.tolerance)
        clear = self._blocked(states[:, Q_START : Q_START + self._model.dof].unsqueeze(1)) <= 0
        self._solutions = states[clear, Q_START : Q_START + self._model.dof]
        self._route = None

    def evaluate(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self._solutions is None:
            raise ConfigError("joint_goal: no goal yet; the configurator's settings were never applied")
        if not len(self._solutions):
            return states.new_zeros(states.shape[:2])
        n = self._model.dof
        now = states[0, 0, Q_START : Q_START + n].float()  # one step ahead of the arm: near enough
        route = self._route  # one read, one store: the planning thread may race a settings change
        if route is None:
            route = self._plan_route(now)
        if len(route) > 1 and sum((a - b) ** 2 for a, b in zip(now.tolist(), route[0])) < self.params.switch**2:
            route = route[1:]
        self._route = route
        planes = states.unbind(-1)[Q_START : Q_START + n]
        distance = torch.sqrt(sum((qi - t) ** 2 for qi, t in zip(planes, route[0])))
        if len(route) > 1:  # the legs still ahead, beyond the next target
            distance = distance + sum(math.dist(a, b) for a, b in zip(route, route[1:]))
        return distance * self._weights_for(distance.shape[1])

    def _blocked(self, path: torch.Tensor) -> torch.Tensor:
        """(N, P, n) joint-space paths -> (N,) their worst violation of keep-out and joint limits."""
        states = torch.zeros(*path.shape[:2], Q_START + 2 * path.shape[2])
        states[..., Q_START : Q_START + path.shape[2]] = path
        return (self._keep_out.violation(states, None) + self._limits.violation(states, None)).amax(dim=1)

    def _legs(self, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """(N, n) starts and (N, n) ends -> (N,) bool: the straight leg between them is clear.

        The start itself is not judged: where the arm stands now is not this term's to forbid."""
        fractions = torch.linspace(0.0, 1.0, self.params.path_points + 1)[1:].view(1, -1, 1)
        return self._blocked(starts.unsqueeze(1) + fractions * (ends - starts).unsqueeze(1)) <= 0

    def _plan_route(self, q: torch.Tensor) -> tuple[list[float], ...]:
        """Joint targets from joint angles `q` (n,): a solution, or a via and then a solution."""
        p, solutions = self.params, self._solutions
        direct = torch.linalg.vector_norm(solutions - q, dim=1)
        clear = self._legs(q.expand_as(solutions), solutions)
        if bool(clear.any()):
            return (solutions[int(torch.where(clear, direct, math.inf).argmin())].tolist(),)
        # no straight way: the shortest clear route through one of `vias` seeded configurations
        chain, margin = self._model.kinematics.chain, self._model.params.ik_limit_margin
        low, high = (chain.lower + margin).float(), (chain.upper - margin).float()
        generator = torch.Generator().manual_seed(p.seed)
        vias = low + (high - low) * torch.rand(p.vias, len(q), generator=generator)
        vias = vias[self._legs(q.expand_as(vias), vias) & (self._blocked(vias.unsqueeze(1)) <= 0)]
        if not len(vias):
            return (solutions[int(direct.argmin())].tolist(),)
        first = torch.linalg.vector_norm(vias - q, dim=1)  # (V,)
        second = torch.cdist(vias, solutions)  # (V, N)
        total = first.unsqueeze(1) + second
        pairs = torch.argsort(total.flatten())
        for start in range(0, len(pairs), 256):  # shortest routes first, a batch of second legs at a time
            batch = pairs[start : start + 256]
            v, s = batch // len(solutions), batch % len(solutions)
            ok = torch.nonzero(self._legs(vias[v], solutions[s]))
            if len(ok):
                i = int(ok[0, 0])
                return vias[v[i]].tolist(), solutions[s[i]].tolist()
        return (solutions[int(direct.argmin())].tolist(),)

    def _weights_for(self, horizon: int) -> torch.Tensor:
        weights = self._step_weights.get(horizon)
        if weights is None:
            weights = torch.ones(horizon)
            weights[-1] = self.params.terminal
            self._step_weights[horizon] = weights
        return weights

