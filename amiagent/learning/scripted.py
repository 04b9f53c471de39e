"""Scripted behaviour policies for reward-free data: they explore, they optimise nothing.

A policy sees the episode's `Arena` (bounds, walls, robot radius, action
bounds) at `reset(arena, rng)` and returns an acceleration (A,) in m/s^2 from
`act(obs, rng)`; `rng` is the episode's generator, so the same seed gives the
same actions. Each has a frozen `Params` dataclass checked when built
(`policy.params.x=...` on the `amiagent collect` command line).

* `random`: smooth random accelerations, braking away from the arena's edges.
* `noisy_expert`: a PD law to random waypoints, routed through doors, plus
  Gaussian action noise.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from amiagent.errors import AmiagentError, ConfigError
from amiagent.geometry import box_sd


@dataclass(frozen=True)
class Arena:
    """What a policy knows of an episode: `bounds` ((xmin, xmax), (ymin, ymax)) and `walls` (cx, cy, hx, hy)
    in m, `radius` of the robot (m), action bounds `low`, `high` (A,) in m/s^2."""

    bounds: tuple[tuple[float, float], tuple[float, float]]
    walls: tuple[tuple[float, float, float, float], ...]
    radius: float
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, world: Any) -> Arena:
        """The arena of `world`'s current episode."""
        layout = world.layout()
        return cls(bounds=layout.bounds, walls=tuple(layout.walls), radius=layout.robot_radius,
                   low=np.asarray(world.body.action_low, dtype=np.float64),
                   high=np.asarray(world.body.action_high, dtype=np.float64))

    def clear(self, x: float, y: float, clearance: float) -> bool:
        """Whether the robot disc at (x, y) keeps `clearance` (m) from every wall and the arena's edges."""
        (xmin, xmax), (ymin, ymax) = self.bounds
        c = self.radius + clearance
        return (xmin + c <= x <= xmax - c and ymin + c <= y <= ymax - c
                and all(box_sd(x, y, w) >= c for w in self.walls))

    def free_point(self, rng: np.random.Generator, clearance: float = 0.1) -> tuple[float, float]:
        """A point drawn uniformly where the robot disc keeps `clearance` (m) from walls and edges."""
        (xmin, xmax), (ymin, ymax) = self.bounds
        for _ in range(10_000):
            x, y = float(rng.uniform(xmin, xmax)), float(rng.uniform(ymin, ymax))
            if self.clear(x, y, clearance):
                return x, y
        raise AmiagentError(f"no free point with clearance {clearance} m found in {self.bounds}")


def keep_inside(action: np.ndarray, state: np.ndarray, arena: Arena, margin: float) -> np.ndarray:
    """`action` blended, per axis, into full braking away from an arena edge the robot is heading for.

    The blend starts when the robot's stopping point (braking at half the
    bound) comes within `margin` (m) of the edge the disc can reach, and is
    all braking from there on; braking at the full bound then stops it well
    inside.
    """
    a = np.array(action, dtype=np.float64)
    for i, (lo, hi) in enumerate(arena.bounds):
        p, v, a_max = state[i], state[2 + i], arena.high[i]
        stop = p + v * abs(v) / a_max
        over_hi = (stop - (hi - arena.radius - margin)) / margin
        over_lo = ((lo + arena.radius + margin) - stop) / margin
        if over_hi > 0:
            w = min(1.0, over_hi)
            a[i] = (1 - w) * a[i] - w * a_max
        elif over_lo > 0:
            w = min(1.0, over_lo)
            a[i] = (1 - w) * a[i] + w * a_max
    return a


class Policy:
    """A scripted, reward-free behaviour policy; subclasses set `name`, a frozen `Params` and `act`.

    `reset(arena, rng)` starts an episode; `act(obs, rng)` returns the (A,)
    action (m/s^2) for observation `obs`. `rng` is the episode's generator:
    the same seed gives the same actions.
    """

    name: ClassVar[str] = "policy"
    Params: ClassVar[type]

    def __init__(self, params: Any = None):
        self.params = params if params is not None else self.Params()
        self.arena: Arena | None = None

    def reset(self, arena: Arena, rng: np.random.Generator) -> None:
        """Start an episode in `arena`."""
        self.arena = arena

    def act(self, obs: Any, rng: np.random.Generator) -> np.ndarray:
        """The action for `obs`."""
        raise NotImplementedError


def _positive(params: Any, *names: str) -> None:
    for name in names:
        value = getattr(params, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"policy.params.{name} must be a finite number > 0, got {value!r}")


class RandomPolicy(Policy):
    """Smooth random accelerations: a uniform action held for a random number of steps, minus a drag.

    Near the arena's edges the action blends into braking (`keep_inside`), so
    the robot stays in the camera's view; walls inside the arena it may bump.
    """

    name = "random"

    @dataclass(frozen=True)
    class Params:
        """`hold_min`, `hold_max`: steps an action is held (drawn uniformly, both included).
        `drag`: 1/s, subtracted times the velocity (keeps speeds moderate). `margin`: m, see keep_inside."""

        hold_min: int = 1
        hold_max: int = 5
        drag: float = 0.5
        margin: float = 1.0

        def __post_init__(self) -> None:
            for name in ("hold_min", "hold_max"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ConfigError(f"policy.params.{name} must be an integer >= 1, got {value!r}")
            if self.hold_max < self.hold_min:
                raise ConfigError(f"policy.params.hold_max ({self.hold_max}) must be >= hold_min ({self.hold_min})")
            _positive(self, "drag", "margin")

    def reset(self, arena: Arena, rng: np.random.Generator) -> None:
        super().reset(arena, rng)
        self._held = np.zeros_like(arena.high)
        self._left = 0

    def act(self, obs: Any, rng: np.random.Generator) -> np.ndarray:
        prm, arena = self.params, self.arena
        if self._left == 0:
            self._held = rng.uniform(arena.low, arena.high)
            self._left = int(rng.integers(prm.hold_min, prm.hold_max + 1))
        self._left -= 1
        a = self._held - prm.drag * obs.state[2:4]
        return np.clip(keep_inside(a, obs.state, arena, prm.margin), arena.low, arena.high)


class NoisyExpert(Policy):
    """Drives to random waypoints with a PD law plus Gaussian action noise; routes through doors.

    Waypoints are drawn uniformly over the free arena; a new one comes when the
    robot is within `reach` of it or after `timeout` steps. With walls, the
    route is a shortest path on a grid of `cell`-metre cells whose free cells
    keep `clearance` beyond the robot's radius from every wall, followed by
    steering at the path point `lookahead` metres ahead: to reach the other
    room it goes through the door. The PD law is cascaded: desired velocity
    kp * (target - position), capped at `speed`, then acceleration
    kv * (desired - velocity) + N(0, (noise * bound)^2), blended with
    `keep_inside` and clipped to the bounds.
    """

    name = "noisy_expert"

    @dataclass(frozen=True)
    class Params:
        """Gains `kp`, `kv` (1/s), `speed` (m/s), `noise` (fraction of the action bound, may be 0), `reach`,
        `lookahead`, `cell`, `clearance`, `margin` (m), `timeout` (steps)."""

        kp: float = 1.5
        kv: float = 3.0
        speed: float = 1.0
        noise: float = 0.3
        reach: float = 0.3
        timeout: int = 80
        lookahead: float = 0.6
        cell: float = 0.1
        clearance: float = 0.15
        margin: float = 0.5

        def __post_init__(self) -> None:
            _positive(self, "kp", "kv", "speed", "reach", "lookahead", "cell", "clearance", "margin")
            if isinstance(self.noise, bool) or not isinstance(self.noise, (int, float)) or not 0 <= self.noise <= 1:
                raise ConfigError(f"policy.params.noise must be in [0, 1], got {self.noise!r}")
            if isinstance(self.timeout, bool) or not isinstance(self.timeout, int) or self.timeout < 1:
                raise ConfigError(f"policy.params.timeout must be an integer >= 1, got {self.timeout!r}")

    def reset(self, arena: Arena, rng: np.random.Generator) -> None:
        super().reset(arena, rng)
        self._grid = FreeGrid(arena, self.params.cell, self.params.clearance) if arena.walls else None
        self._path: list[np.ndarray] = []
        self._age = 0

    def act(self, obs: Any, rng: np.random.Generator) -> np.ndarray:
        prm, arena = self.params, self.arena
        pos, vel = obs.state[:2], obs.state[2:4]
        self._age += 1
        if not self._path or np.linalg.norm(self._path[-1] - pos) < prm.reach or self._age > prm.timeout:
            self._new_waypoint(pos, rng)
        # the carrot: the first path point at least `lookahead` away (the waypoint at the end)
        while len(self._path) > 1 and np.linalg.norm(self._path[0] - pos) < prm.lookahead:
            self._path.pop(0)
        error = self._path[0] - pos
        desired = prm.kp * error
        speed = float(np.linalg.norm(desired))
        if speed > prm.speed:
            desired *= prm.speed / speed
        a = prm.kv * (desired - vel) + rng.normal(0.0, prm.noise * arena.high)
        return np.clip(keep_inside(a, obs.state, arena, prm.margin), arena.low, arena.high)

    def _new_waypoint(self, pos: np.ndarray, rng: np.random.Generator) -> None:
        goal = np.array(self.arena.free_point(rng, self.params.clearance))
        route = self._grid.path(pos, goal) if self._grid is not None else None
        self._path = [*route[1:-1], goal] if route else [goal]
        self._age = 0


class FreeGrid:
    """Cells of `cell` m over the arena; a cell is free where the robot disc keeps `clearance` from walls."""

    def __init__(self, arena: Arena, cell: float, clearance: float):
        (xmin, xmax), (ymin, ymax) = arena.bounds
        self.origin, self.cell = np.array([xmin, ymin]), cell
        xs = xmin + (np.arange(math.ceil((xmax - xmin) / cell)) + 0.5) * cell
        ys = ymin + (np.arange(math.ceil((ymax - ymin) / cell)) + 0.5) * cell
        gx, gy = np.meshgrid(xs, ys, indexing="ij")  # (NX, NY)
        c = arena.radius + clearance
        free = (gx >= xmin + c) & (gx <= xmax - c) & (gy >= ymin + c) & (gy <= ymax - c)
        for wx, wy, hx, hy in arena.walls:
            dx, dy = np.abs(gx - wx) - hx, np.abs(gy - wy) - hy
            outside = np.hypot(np.maximum(dx, 0.0), np.maximum(dy, 0.0))
            free &= np.where((dx <= 0) & (dy <= 0), np.maximum(dx, dy), outside) >= c
        self.free = free
        self.centres = np.stack([gx, gy], axis=-1)

    def _nearest_free(self, point: np.ndarray) -> tuple[int, int]:
        d = np.linalg.norm(self.centres - point, axis=-1)
        d[~self.free] = np.inf
        return tuple(int(i) for i in np.unravel_index(np.argmin(d), d.shape))

    def path(self, start: np.ndarray, goal: np.ndarray) -> list[np.ndarray] | None:
        """Cell centres of a shortest 8-connected path between the free cells nearest `start` and `goal`,
        not cutting wall corners; None when they are not connected."""
        a, b = self._nearest_free(start), self._nearest_free(goal)
        free, (nx, ny) = self.free, self.free.shape
        parent = {a: a}
        queue = deque([a])
        while queue and b not in parent:
            i, j = queue.popleft()
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    n = (i + di, j + dj)
                    if n in parent or not (0 <= n[0] < nx and 0 <= n[1] < ny) or not free[n]:
                        continue
                    if di and dj and not (free[i + di, j] and free[i, j + dj]):
                        continue
                    parent[n] = (i, j)
                    queue.append(n)
        if b not in parent:
            return None
        cells = [b]
        while cells[-1] != a:
            cells.append(parent[cells[-1]])
        return [self.centres[c] for c in reversed(cells)]


POLICIES: dict[str, type[Policy]] = {RandomPolicy.name: RandomPolicy, NoisyExpert.name: NoisyExpert}


def make_policy(spec: Mapping[str, Any]) -> Policy:
    """A policy from `{name, params}`; an unknown name or parameter fails with what is valid."""
    import difflib

    from amiagent.config import check_keys
    from amiagent.registry import build_params

    spec = check_keys("policy", spec, {"name", "params"})
    name = spec.get("name")
    if name not in POLICIES:
        close = difflib.get_close_matches(str(name), list(POLICIES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown policy {name!r}{hint}; choose one of: {', '.join(POLICIES)}")
    cls = POLICIES[name]
    return cls(build_params(cls, spec.get("params"), where=f"policy ({name})"))
