"""The Mode-1 policy: a small network from goal-relative, obstacle-aware features to an action sequence.

Features of a point-robot state `(x, y, vx, vy)` (m, m/s) are all relative to
the robot and limited to what lies within `sense` metres of it, so a policy
fitted on a few dozen fields applies to others: nothing in them tells one
episode from another (the network cannot memorise per-episode behaviour),
and a field looks the same wherever the robot is in it.

    goal - state                          D values (position offset, minus the velocity)
    clearance to the workspace bounds     4 values: x - low_x, high_x - x, y - low_y, high_y - y, less the
                                          robot radius (m), each at most `sense`
    the `zones` nearest keep-out zones    7 values each, nearest (least clearance) first: centre - position
                                          (2, m), clearance (m, < 0 inside, at most `sense`), half extents
                                          (2, m; a circle's radius twice), 1 for a box (0 a circle), presence

Presence is 1 for a zone with clearance below `sense - FADE`, falling to 0 at
`sense`; a zone's offset, extents and kind are scaled by it, so a zone enters
the features smoothly as the robot approaches, and padding (no zone) is a zone
of presence 0 at clearance `sense`.

The zones and bounds come from the settings' guardrails (`keep_out`,
`workspace_bounds`), as the configurator hands them to every module. The
network maps normalised features to `steps` actions, squashed by tanh into the
action bounds. Checkpoints hold plain tensors and values: they load with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from amiagent.errors import ConfigError
from amiagent.learning.checkpoints import load_payload, save_atomic

CHECKPOINT_FORMAT = "amiagent.policy"
ZONE_FEATURES = 7
FADE = 0.5
"""Width (m) of the band at the edge of the sensing range in which a zone's presence falls from 1 to 0."""


@dataclass(frozen=True)
class PolicyConfig:
    """Shape of a policy network.

    `state_dim` D and `action_dim` A of the world it acts in (the point robot:
    4 and 2). `steps`: actions output per call (H_p). `zones`: nearest keep-out
    zones in the features; `sense`: range (m) beyond which zones and bounds are
    not seen. `hidden`, `layers`: width and depth of the MLP.
    """

    state_dim: int = 4
    action_dim: int = 2
    steps: int = 8
    zones: int = 3
    sense: float = 2.0
    hidden: int = 128
    layers: int = 2

    def __post_init__(self) -> None:
        for name in ("state_dim", "action_dim", "steps", "hidden", "layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"policy.{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.zones, bool) or not isinstance(self.zones, int) or self.zones < 0:
            raise ConfigError(f"policy.zones must be an integer >= 0, got {self.zones!r}")
        if isinstance(self.sense, bool) or not isinstance(self.sense, (int, float)) or not self.sense > FADE:
            raise ConfigError(f"policy.sense must be a number > {FADE} (m), got {self.sense!r}")
        if self.state_dim < 4:
            raise ConfigError(f"policy: states must hold a 2-D position and velocity (state_dim >= 4), "
                              f"got {self.state_dim}")

    @property
    def feature_dim(self) -> int:
        """F, the length of one feature vector."""
        return self.state_dim + 4 + ZONE_FEATURES * self.zones


@dataclass(frozen=True)
class Obstacles:
    """What the features must keep the robot away from, read from the settings' guardrails.

    `circles` (C, 3) [x, y, r] and `boxes` (K, 4) [cx, cy, hx, hy] keep-out
    zones (m); `radius` the robot's (m); `low`, `high` (2,) the workspace bounds,
    or None when the task has none.
    """

    circles: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3))
    boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4))
    radius: float = 0.0
    low: torch.Tensor | None = None
    high: torch.Tensor | None = None

    def __post_init__(self) -> None:
        # every zone as one row, computed once per settings rather than once per act:
        # centre (Z, 2), half extents (Z, 2; a circle's radius twice), circle radius (Z; 0 for a box), is-box (Z)
        c, k = self.circles, self.boxes
        object.__setattr__(self, "_centres", torch.cat([c[:, :2], k[:, :2]]))
        object.__setattr__(self, "_half", torch.cat([c[:, 2:3].expand(-1, 2), k[:, 2:]]))
        object.__setattr__(self, "_round", torch.cat([c[:, 2], torch.zeros(len(k))]))
        object.__setattr__(self, "_box", torch.cat([torch.zeros(len(c), dtype=torch.bool),
                                                    torch.ones(len(k), dtype=torch.bool)]))
        object.__setattr__(self, "_static", torch.cat([self._half, self._box.float()[:, None]], dim=1))

    @classmethod
    def from_guardrails(cls, guardrails: Mapping[str, Mapping[str, Any]]) -> Obstacles:
        """From `settings.guardrails`: `keep_out` {circles, boxes, robot_radius}, `workspace_bounds` {low, high}."""
        zones = guardrails.get("keep_out") or {}
        bounds = guardrails.get("workspace_bounds") or {}
        low, high = bounds.get("low"), bounds.get("high")
        return cls(
            circles=torch.tensor(zones.get("circles") or [], dtype=torch.float32).reshape(-1, 3),
            boxes=torch.tensor(zones.get("boxes") or [], dtype=torch.float32).reshape(-1, 4),
            radius=float(zones.get("robot_radius", bounds.get("robot_radius", 0.0))),
            low=None if low is None else torch.tensor(low, dtype=torch.float32)[:2],
            high=None if high is None else torch.tensor(high, dtype=torch.float32)[:2],
        )


def features(states: torch.Tensor, goal: torch.Tensor, obstacles: Obstacles, zones: int,
             sense: float) -> torch.Tensor:
    """`states` (B, D), `goal` (D,) or (B, D) -> (B, D + 4 + 7 * zones) features (see the module docstring)."""
    pos = states[:, :2]
    parts = [goal - states]
    if obstacles.low is not None:
        walls = torch.cat([pos - obstacles.low, obstacles.high - pos], dim=1) - obstacles.radius
        parts.append(walls.clamp_max(sense))
    else:
        parts.append(states.new_full((states.shape[0], 4), float(sense)))
    if zones:
        parts.append(_zone_features(pos, obstacles, zones, float(sense)))
    return torch.cat(parts, dim=1)


def _zone_features(pos: torch.Tensor, obstacles: Obstacles, zones: int, sense: float) -> torch.Tensor:
    """(B, 2) positions -> (B, 7 * zones): the nearest zones first, faded out towards `sense`, padded."""
    b, count = pos.shape[0], len(obstacles._centres)
    if count:
        offset = obstacles._centres - pos[:, None]  # (B, Z, 2)
        q = offset.abs() - obstacles._half
        box = q.clamp_min(0).norm(dim=-1) + q.amax(dim=-1).clamp_max(0)  # signed distance to a box
        clearance = torch.where(obstacles._box, box, offset.norm(dim=-1) - obstacles._round) - obstacles.radius
        order = clearance.argsort(dim=1)[:, :zones]  # (B, k) nearest first
        clearance = clearance.gather(1, order)
        offset = offset.gather(1, order[..., None].expand(-1, -1, 2))
        static = obstacles._static[order]  # (B, k, 3): half extents, is-box
        # fade: presence 1 inside sense - FADE, 0 beyond sense
        presence = ((sense - clearance) / FADE).clamp(0.0, 1.0)[..., None]
        table = torch.cat([offset * presence, clearance.clamp_max(sense)[..., None], static * presence, presence],
                          dim=-1)
    else:
        table = pos.new_zeros(b, 0, ZONE_FEATURES)
    if table.shape[1] < zones:  # padding: no zone, presence 0 at clearance `sense`
        pad = pos.new_zeros(b, zones - table.shape[1], ZONE_FEATURES)
        pad[..., 2] = sense
        table = torch.cat([table, pad], dim=1)
    return table.reshape(b, zones * ZONE_FEATURES)


class PolicyNet(nn.Module):
    """Normalised features (B, F) -> actions (B, steps, A) inside [action_low, action_high].

    The normalisation (feature mean and std) and the action bounds are buffers,
    saved with the weights.
    """

    def __init__(self, cfg: PolicyConfig, action_low: torch.Tensor | None = None,
                 action_high: torch.Tensor | None = None):
        super().__init__()
        self.cfg = cfg
        f, a = cfg.feature_dim, cfg.action_dim
        layers: list[nn.Module] = []
        width = f
        for _ in range(cfg.layers):
            layers += [nn.Linear(width, cfg.hidden), nn.SiLU()]
            width = cfg.hidden
        layers.append(nn.Linear(width, cfg.steps * a))
        self.body = nn.Sequential(*layers)
        self.register_buffer("feature_mean", torch.zeros(f))
        self.register_buffer("feature_std", torch.ones(f))
        self.register_buffer("action_low", torch.full((a,), -1.0) if action_low is None else action_low.float().clone())
        self.register_buffer("action_high", torch.ones(a) if action_high is None else action_high.float().clone())

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        squashed = torch.tanh(self.body((feats - self.feature_mean) / self.feature_std))
        squashed = squashed.view(feats.shape[0], self.cfg.steps, self.cfg.action_dim)
        return self.action_low + (squashed + 1) * (self.action_high - self.action_low) / 2

    def act(self, states: torch.Tensor, goal: torch.Tensor, obstacles: Obstacles) -> torch.Tensor:
        """`states` (B, D), `goal` (D,) -> (B, steps, A) actions."""
        return self(features(states, goal, obstacles, self.cfg.zones, self.cfg.sense))


def save_policy(path: str | Path, net: PolicyNet, history: list[dict], info: dict) -> Path:
    """Write a policy checkpoint atomically: config, weights (with normalisation and bounds), history, info."""
    payload = {"format": CHECKPOINT_FORMAT, "version": 1, "config": asdict(net.cfg), "model": net.state_dict(),
               "history": history, "info": info}
    return save_atomic(payload, path)


def load_policy(path: str | Path) -> tuple[PolicyNet, dict]:
    """The policy of a checkpoint (eval mode, no gradients) and its info (with `history`)."""
    path = Path(path).expanduser()
    saved = load_payload(path, CHECKPOINT_FORMAT,
                         f"no policy checkpoint at {path}: distil one with "
                         "`amiagent distill agent=navigator world=open_field out=...`",
                         f"{path} is not an amiagent policy checkpoint (from `amiagent distill`)")
    net = PolicyNet(PolicyConfig(**saved["config"]))
    net.load_state_dict(saved["model"])
    net.eval().requires_grad_(False)
    return net, {**saved["info"], "history": saved["history"]}
