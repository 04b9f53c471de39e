"""Placement of an agent's modules into Ray actors, as config: groups, resources, restart policy.

`plan_groups(placement, modules)` turns `runtime.placement` (`pod`,
`separate`, a name from `runtime.placements`, or a mapping of groups) into the
groups the Ray runtime starts, one actor each; every config error names its
path. `require_plain` refuses anything but plain containers crossing into Ray.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from amiagent.agent import MODULE_NAMES
from amiagent.config import check_keys, check_number
from amiagent.errors import ConfigError

PLACEMENTS = ("pod", "separate")
GROUP_KEYS = {"modules", "num_cpus", "resources", "node", "labels", "max_restarts", "backoff_s", "backoff_max_s"}
ACTOR_KEYS = {"num_cpus", "resources", "node", "labels"}
RUNTIME_KEYS = {"name", "address", "namespace", "placement", "placements", "actors", "supervision", "ray_logs",
                "torch_threads", "telemetry", "control", "state_dir"}
SUPERVISION_KEYS = {"max_restarts", "backoff_s", "backoff_max_s", "call_timeout_s", "start_timeout_s"}


def require_plain(value: Any, where: str) -> None:
    """Refuse anything but plain containers (dict, list, str, numbers, bool, None) crossing into Ray."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: keys must be strings, got {key!r}")
            require_plain(item, f"{where}.{key}")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            require_plain(item, f"{where}[{i}]")
        return
    raise ConfigError(f"{where}: {type(value).__name__} cannot cross into Ray; pass plain containers "
                      "(OmegaConf.to_container(cfg, resolve=True))")


@dataclass(frozen=True)
class Supervision:
    """Restart policy of a host: `max_restarts`, and a backoff of `backoff_s` doubling per restart up to
    `backoff_max_s`. `call_timeout_s`: how long a bus call to a module may take. `start_timeout_s`: how
    long a host may take to build its modules."""

    max_restarts: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 10.0
    call_timeout_s: float = 2.0
    start_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        self.check("runtime.supervision")

    def check(self, where: str) -> None:
        restarts = self.max_restarts
        if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 0:
            raise ConfigError(f"{where}.max_restarts must be an integer >= 0, got {restarts!r}")
        for name in ("backoff_s", "backoff_max_s"):
            check_number(f"{where}.{name}", getattr(self, name))
        for name in ("call_timeout_s", "start_timeout_s"):
            if check_number(f"{where}.{name}", getattr(self, name)) <= 0:
                raise ConfigError(f"{where}.{name} must be > 0, got {getattr(self, name)!r}")

    @classmethod
    def from_config(cls, spec: Any, where: str = "runtime.supervision") -> Supervision:
        spec = check_keys(where, spec, SUPERVISION_KEYS)
        try:
            return cls(**spec)
        except ConfigError as exc:  # name the config path the value came from
            raise ConfigError(str(exc).replace("runtime.supervision", where, 1)) from None

    def backoff(self, restart: int) -> float:
        """Seconds to wait before restart number `restart` (1-based)."""
        return min(self.backoff_s * 2 ** (restart - 1), self.backoff_max_s)


@dataclass(frozen=True)
class Group:
    """Modules that share one Ray actor, with what that actor asks of Ray and its restart policy.

    `num_cpus`: CPUs reserved (default 0: modules mostly wait on the bus, and
    several agents must fit on two cores). `resources`: custom Ray resources
    (e.g. {node_b: 0.01} to land on a node that offers `node_b`). `node`: a
    node id or IP address to pin the actor to. `labels`: a node label selector.
    """

    name: str
    modules: tuple[str, ...]
    num_cpus: float = 0.0
    resources: Mapping[str, float] = field(default_factory=dict)
    node: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    supervision: Supervision = field(default_factory=Supervision)


def plan_groups(placement: Any, modules: Iterable[str], *, placements: Mapping[str, Any] | None = None,
                actors: Mapping[str, Any] | None = None, supervision: Supervision | None = None) -> list[Group]:
    """The groups of a placement over the agent's `modules` (checked: each module in exactly one group)."""
    modules = [m for m in MODULE_NAMES if m in set(modules)]
    defaults = check_keys("runtime.actors", actors, ACTOR_KEYS)
    supervision = supervision or Supervision()
    if isinstance(placement, str) and placement not in PLACEMENTS:
        if placement not in (placements or {}):
            known = list(PLACEMENTS) + sorted(placements or {})
            raise ConfigError(f"runtime.placement: unknown placement {placement!r}; choose one of {known} "
                              "or give a mapping of groups")
        placement = placements[placement]
    if placement == "pod":
        spec: dict[str, Any] = {"pod": {"modules": modules}}
    elif placement == "separate":
        spec = {m: {"modules": [m]} for m in modules}
    elif isinstance(placement, Mapping):
        spec = dict(placement)
    else:
        raise ConfigError(f"runtime.placement must be pod, separate, a placement name or a mapping, got {placement!r}")
    groups, placed = [], {}
    for name, entry in spec.items():
        where = f"runtime.placement.{name}"
        entry = check_keys(where, entry, GROUP_KEYS)
        members = entry.get("modules")
        if not isinstance(members, (list, tuple)) or not members:
            raise ConfigError(f"{where}.modules must be a non-empty list of module names")
        for m in members:
            if m not in MODULE_NAMES:
                raise ConfigError(f"{where}.modules: {m!r} is not a module; modules are {list(MODULE_NAMES)}")
            if m not in modules:
                raise ConfigError(f"{where}.modules: this agent has no {m!r} module")
            if m in placed:
                raise ConfigError(f"{where}.modules: {m!r} is already placed in group {placed[m]!r}")
            placed[m] = name
        groups.append((name, tuple(members), entry))
    for m in modules:  # what no group names gets an actor of its own, named after it
        if m not in placed:
            if m in spec:
                raise ConfigError(f"runtime.placement.{m}: a group named after the module {m!r} must hold it "
                                  f"(it would get an actor of its own named {m!r}); rename the group")
            groups.append((m, (m,), {}))
    out = []
    for name, members, entry in groups:
        where = f"runtime.placement.{name}"
        merged = {**defaults, **{k: v for k, v in entry.items() if k in ACTOR_KEYS}}
        restart = {k: entry[k] for k in ("max_restarts", "backoff_s", "backoff_max_s") if k in entry}
        sup = Supervision.from_config({**supervision.__dict__, **restart}, where) if restart else supervision
        resources = check_keys(f"{where}.resources", merged.get("resources"), set(merged.get("resources") or {}))
        labels = check_keys(f"{where}.labels", merged.get("labels"), set(merged.get("labels") or {}))
        node = merged.get("node")
        if node is not None and not isinstance(node, str):
            raise ConfigError(f"{where}.node must be a node id or IP address, got {node!r}")
        out.append(Group(name, members, check_number(f"{where}.num_cpus", merged.get("num_cpus", 0.0)),
                         {k: check_number(f"{where}.resources.{k}", v) for k, v in resources.items()}, node,
                         {str(k): str(v) for k, v in labels.items()}, sup))
    return out


def check_runtime_config(agent_cfg: dict, runtime_cfg: dict) -> tuple[list[Group], Supervision, int]:
    """Check the `runtime` section against the agent before anything starts: keys, placement, restart
    policy, torch threads and state directory. Returns the groups, the policy and the thread count."""
    runtime_cfg = check_keys("runtime", runtime_cfg, RUNTIME_KEYS)
    require_plain(agent_cfg, "agent")
    require_plain(runtime_cfg, "runtime")
    threads = runtime_cfg.get("torch_threads") or 1
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"runtime.torch_threads must be an integer >= 1, got {threads!r}")
    supervision = Supervision.from_config(runtime_cfg.get("supervision"))
    module_names = [m for m in MODULE_NAMES if agent_cfg.get(m)]
    groups = plan_groups(runtime_cfg.get("placement", "pod"), module_names, placements=runtime_cfg.get("placements"),
                         actors=runtime_cfg.get("actors"), supervision=supervision)
    root = runtime_cfg.get("state_dir")
    if root is not None and not os.path.isdir(str(root)):
        raise ConfigError(f"runtime.state_dir {root!r} is not a directory")
    return groups, supervision, threads
