"""The `ray` runtime: an agent's modules in supervised Ray actors, talking over ZeroMQ.

Ray places and supervises; ZeroMQ carries the data. Each *group* of modules
(the placement) lives in one Ray actor, a `ModuleHost`, which builds its
modules from their plain config specs and serves each on a bus socket bound to
a port the OS picks on the actor's node; endpoints are discovered through Ray,
never configured. Modules in one group call each other directly; across groups
they use the bus (`amiagent.remote` proxies).

The agent's cycle, and with it the safety filter with its own model and
guardrails, stays in the driver process next to the body (`RayAgent`): it is
the last check before a command and must not go down with a module.

Placement (`runtime.placement`):

    pod        every module of the agent in one actor
    separate   one actor per module
    <name>     a named placement from `runtime.placements`
    {group: {modules: [...], num_cpus, resources, node, labels, max_restarts, backoff_s, backoff_max_s}}

Modules no group names get an actor each. Supervision: when a host dies
(however: a crash, an os-level kill, its node lost) the driver hears of it at
once through a pending `watch` call; its modules are marked down (the cycle
then stops the body or uses the rest of the last valid plan), and the host is
started again after a backoff that doubles with each restart, up to
`max_restarts`. When it is back the proxies reconnect, the agent's settings are
applied again (the configurator's), the short-term memory replays its journal,
and the recovery time is recorded (`RayAgent.recoveries`).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ray

from amiagent.agent import MODULE_NAMES, Agent, check_swappable
from amiagent.contracts import Module, WorldModel
from amiagent.errors import AmiagentError, ConfigError
from amiagent.journal import Journal, JournaledMemory
from amiagent.remote import PROXIES, ModuleServer, RemoteCost, RemoteWorldModel

log = logging.getLogger(__name__)

PLACEMENTS = ("pod", "separate")
GROUP_KEYS = {"modules", "num_cpus", "resources", "node", "labels", "max_restarts", "backoff_s", "backoff_max_s"}
ACTOR_KEYS = {"num_cpus", "resources", "node", "labels"}
SUPERVISION_KEYS = {"max_restarts", "backoff_s", "backoff_max_s", "call_timeout_s", "start_timeout_s"}
RUNTIME_KEYS = {"name", "address", "namespace", "placement", "placements", "actors", "supervision", "ray_logs",
                "torch_threads", "telemetry", "control", "state_dir"}


# --------------------------------------------------------------------------- configuration


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


def _number(where: str, value: Any, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{where} must be a number >= {minimum:g}, got {value!r}")
    return float(value)


def _keys(where: str, value: Any, allowed: set[str]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(allowed)}")
    return dict(value)


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

    @classmethod
    def from_config(cls, spec: Any, where: str = "runtime.supervision") -> Supervision:
        spec = _keys(where, spec, SUPERVISION_KEYS)
        restarts = spec.get("max_restarts", cls.max_restarts)
        if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 0:
            raise ConfigError(f"{where}.max_restarts must be an integer >= 0, got {restarts!r}")
        return cls(restarts, *(_number(f"{where}.{k}", spec.get(k, getattr(cls, k)))
                               for k in ("backoff_s", "backoff_max_s", "call_timeout_s", "start_timeout_s")))

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
    defaults = _keys("runtime.actors", actors, ACTOR_KEYS)
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
        entry = _keys(where, entry, GROUP_KEYS)
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
    for m in modules:  # what no group names gets an actor of its own
        if m not in placed:
            groups.append((m, (m,), {}))
    out = []
    for name, members, entry in groups:
        where = f"runtime.placement.{name}"
        merged = {**defaults, **{k: v for k, v in entry.items() if k in ACTOR_KEYS}}
        restart = {k: entry[k] for k in ("max_restarts", "backoff_s", "backoff_max_s") if k in entry}
        sup = Supervision.from_config({**supervision.__dict__, **restart}, where) if restart else supervision
        resources = _keys(f"{where}.resources", merged.get("resources"), set(merged.get("resources") or {}))
        labels = _keys(f"{where}.labels", merged.get("labels"), set(merged.get("labels") or {}))
        node = merged.get("node")
        if node is not None and not isinstance(node, str):
            raise ConfigError(f"{where}.node must be a node id or IP address, got {node!r}")
        out.append(Group(name, members, _number(f"{where}.num_cpus", merged.get("num_cpus", 0.0)),
                         {k: _number(f"{where}.resources.{k}", v) for k, v in resources.items()}, node,
                         {str(k): str(v) for k, v in labels.items()}, sup))
    return out


# --------------------------------------------------------------------------- Ray itself


def _route_ray_errors_to_log() -> None:
    """Send the error notices Ray's driver prints (e.g. "A worker died...") to this module's debug log.

    The supervisor reports a module's death itself; Ray's notice would be the
    raw version of the same news in the user's terminal. This replaces the
    printing function of Ray's driver-side error listener (a private API: if it
    is not there, Ray's notices simply stay as they are).
    """
    try:
        import ray._private.worker as worker
    except ImportError:
        return
    if getattr(getattr(worker, "print_to_stdstream", None), "amiagent_quiet", False) or \
            not hasattr(worker, "print_to_stdstream"):
        return

    def to_log(data: dict, ignore_prefix: bool = False) -> None:
        for line in data.get("lines", []):
            log.debug("ray (%s): %s", data.get("pid"), line)

    to_log.amiagent_quiet = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_log


class RaySession:
    """Ray for this process: joins the instance already initialised, a cluster (`address`), or starts
    an embedded local one. Ray's own logs stay out of the terminal unless `logs=True`.
    `close()` shuts Ray down only if this session started it."""

    def __init__(self, address: str | None = None, *, namespace: str = "amiagent", logs: bool = False,
                 num_cpus: int | None = None):
        self.started = False
        if not logs:
            # Ray's start-up notices (token auth, resources) go through the `ray` logger
            logging.getLogger("ray").setLevel(logging.ERROR)
            _route_ray_errors_to_log()
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"namespace": namespace, "include_dashboard": False, "log_to_driver": logs,
                                  "configure_logging": logs}
        if logs:
            kwargs["logging_level"] = logging.INFO
        if address is None:  # a private local instance, even when another process runs Ray here
            address, kwargs["num_cpus"] = "local", num_cpus
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = "an embedded local instance" if address == "local" else f"the cluster at {address!r}"
            raise AmiagentError(f"cannot start or join Ray ({where}): {exc}") from exc
        self.started = True

    def close(self) -> None:
        """Shut Ray down if this session started it. Safe twice."""
        if self.started and ray.is_initialized():
            ray.shutdown()
        self.started = False

    def __enter__(self) -> RaySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remote_cause(exc: BaseException) -> str:
    """The last line of a Ray error (the remote exception's own message), without its class path."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else str(exc)
    head, sep, rest = last.partition(": ")
    return rest if sep and "." in head and " " not in head else last


def _node_id_for(node: str) -> str:
    """A node id from a node id or a node's IP address."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    for n in alive:
        if node in (n["NodeID"], n.get("NodeManagerAddress")):
            return n["NodeID"]
    listed = ", ".join(f"{n['NodeID'][:12]}.. at {n.get('NodeManagerAddress')}" for n in alive)
    raise ConfigError(f"no live Ray node {node!r}; nodes: {listed}")


def _actor_options(group: Group) -> dict[str, Any]:
    # restarts are the runtime's (with backoff and re-binding), not Ray's
    options: dict[str, Any] = {"num_cpus": group.num_cpus, "max_restarts": 0, "max_concurrency": 4}
    if group.resources:
        options["resources"] = dict(group.resources)
    if group.node is not None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(_node_id_for(group.node), soft=False)
    if group.labels:
        options["label_selector"] = dict(group.labels)
    return options


# --------------------------------------------------------------------------- the actor hosting a group


def _kind(name: str) -> str:
    return "actor" if name == "mode1" else name


def build_module(name: str, spec: Mapping[str, Any]) -> Module:
    from amiagent.build import build_module as build

    return build(name, spec)


@ray.remote
class ModuleHost:
    """A Ray actor that builds a group of modules and serves each on the bus.

    Its methods are the runtime's control plane (start, bind, swap, stats,
    close); module calls never go through Ray, only over the sockets.
    """

    def __init__(self, group: str, specs: dict[str, dict], journal: str | None = None, torch_threads: int = 1):
        import torch

        torch.set_num_threads(max(1, int(torch_threads)))
        self.group = group
        self._closed = threading.Event()
        self._proxies: list[Any] = []
        self._pending: dict[str, Module] = {}
        self.modules: dict[str, Module] = {}
        self._journal_path = journal
        try:
            for name, spec in specs.items():
                self.modules[name] = self._build(name, spec)
            address = ray.util.get_node_ip_address()
            self.servers = {name: ModuleServer(module, f"tcp://{address}:0").start()
                            for name, module in self.modules.items()}
        except BaseException:
            for module in self.modules.values():
                module.close()
            raise

    def _build(self, name: str, spec: Mapping[str, Any]) -> Module:
        module = build_module(name, spec)
        if name == "memory" and self._journal_path:
            module = JournaledMemory(module, Journal(self._journal_path))
        return module

    def info(self) -> dict[str, Any]:
        """Endpoints of the modules, and where this host runs."""
        memory = self.modules.get("memory")
        return {"endpoints": {name: s.endpoint for name, s in self.servers.items()}, "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address(),
                "restored": getattr(memory, "restored", 0)}

    def bind(self, endpoints: dict[str, str], timeout: float = 2.0) -> None:
        """Bind the actors of this group to the world model and cost: local objects when they are in
        this group, proxies to `endpoints` otherwise."""
        old, self._proxies = self._proxies, []
        wm = self.modules.get("world_model") or self._proxy(RemoteWorldModel, endpoints["world_model"], timeout)
        cost = self.modules.get("cost") or self._proxy(RemoteCost, endpoints["cost"], timeout)
        for name in ("actor", "mode1"):
            if name in self.modules:
                self.modules[name].bind(wm, cost)
        for proxy in old:
            proxy.close()

    def _proxy(self, cls: type, endpoint: str, timeout: float) -> Any:
        proxy = cls(endpoint, timeout=timeout)
        self._proxies.append(proxy)
        return proxy

    def prepare_swap(self, name: str, spec: dict) -> str:
        """Build the replacement for module `name` (not serving yet); returns a label for it."""
        if name not in self.modules:
            raise ConfigError(f"group {self.group!r} does not hold {name!r}")
        if name == "memory" and isinstance(self.modules[name], JournaledMemory):
            self.modules[name].journal.close()  # the new memory takes over the journal
        new = self._build(name, spec)
        try:
            check_swappable(name, self.modules[name], new)
        except BaseException:
            new.close()
            raise
        stale = self._pending.pop(name, None)
        if stale is not None:
            stale.close()
        self._pending[name] = new
        params = spec.get("params") or {}
        return f"{spec.get('name', type(new).__name__)} {params}" if params else str(spec.get("name", name))

    def commit_swap(self, name: str) -> None:
        """Serve the prepared replacement of `name` from the next request on; close the old module."""
        new = self._pending.pop(name)
        old, self.modules[name] = self.modules[name], new
        self.servers[name].module = new
        if name in ("actor", "mode1", "world_model", "cost"):
            wm = self.modules.get("world_model") or next((p for p in self._proxies if isinstance(p, WorldModel)), None)
            cost = self.modules.get("cost") or next((p for p in self._proxies if isinstance(p, RemoteCost)), None)
            for actor in ("actor", "mode1"):
                if actor in self.modules and wm is not None and cost is not None:
                    self.modules[actor].bind(wm, cost)
        old.close()

    def stats(self) -> dict[str, Any]:
        """Requests served per module, and bus calls this host's modules made to other hosts."""
        return {"served": {name: s.served for name, s in self.servers.items()},
                "requests": sum(p.requests for p in self._proxies)}

    def pid(self) -> int:
        return os.getpid()

    def watch(self) -> bool:
        """Returns when the host is closed; fails at once if its process dies (how the driver notices)."""
        self._closed.wait()
        return True

    def close(self) -> None:
        """Stop serving and close the modules."""
        for server in self.servers.values():
            server.close()
        for proxy in self._proxies:
            proxy.close()
        for module in list(self.modules.values()) + list(self._pending.values()):
            module.close()
        self._closed.set()


# --------------------------------------------------------------------------- the driver's side


@dataclass
class Recovery:
    """One restart of a group: when its death was noticed, when its modules were back, and how many restarts."""

    group: str
    modules: tuple[str, ...]
    down_at: float
    up_at: float
    restart: int

    @property
    def seconds(self) -> float:
        return self.up_at - self.down_at


class _Host:
    """The driver's record of one group's actor."""

    def __init__(self, group: Group, specs: dict[str, dict]):
        self.group = group
        self.specs = specs
        self.actor: Any = None
        self.info: dict[str, Any] = {}
        self.watch: Any = None
        self.restarts = 0

    def start(self, journal: str | None, torch_threads: int) -> None:
        self.actor = ModuleHost.options(**_actor_options(self.group)).remote(
            self.group.name, self.specs, journal, torch_threads)

    def wait_ready(self, timeout: float) -> None:
        try:
            self.info = ray.get(self.actor.info.remote(), timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            self.kill()
            raise AmiagentError(
                f"group {self.group.name!r} ({', '.join(self.group.modules)}) did not start within {timeout:g} s: "
                "are its resources (num_cpus, resources, node, labels) available in the cluster?") from None
        except ray.exceptions.RayError as exc:
            self.kill()
            raise AmiagentError(f"group {self.group.name!r} did not start in its Ray actor: "
                                f"{remote_cause(exc)}") from exc
        self.watch = self.actor.watch.remote()

    def kill(self) -> None:
        if self.actor is not None:
            ray.kill(self.actor, no_restart=True)
            self.actor = None


class RayAgent(Agent):
    """An Agent whose modules live in supervised Ray actors, placed by `runtime` config.

    `agent_cfg` and `runtime_cfg` are plain containers (the `agent` and
    `runtime` sections of a composed config). The whole agent is first built
    once in this process, so every config error is reported before any actor
    starts; that build's safety filter (own world model, own guardrails) is the
    one the cycle uses. Needs Ray initialised (see `RaySession`).
    """

    def __init__(self, agent_cfg: dict, runtime_cfg: dict | None = None, *, name: str | None = None):
        from amiagent.agent import LoopConfig, Modules
        from amiagent.build import build_agent, describe

        runtime_cfg = _keys("runtime", runtime_cfg, RUNTIME_KEYS)
        require_plain(agent_cfg, "agent")
        require_plain(runtime_cfg, "runtime")
        if not ray.is_initialized():
            raise ConfigError("Ray is not initialised: open a RaySession (or call ray.init) first")
        local = build_agent(agent_cfg)  # every config error surfaces here, before any actor starts
        safety = local.safety
        local.safety = None
        local._safety_modules = []
        local.close()
        self.name = name or str(agent_cfg.get("name", "agent"))
        loop = LoopConfig(**(agent_cfg.get("loop") or {}))
        self.supervision = Supervision.from_config(runtime_cfg.get("supervision"))
        self.torch_threads = int(runtime_cfg.get("torch_threads") or 1)
        self.safety_follows_planner = not (agent_cfg.get("safety") or {}).get("world_model")
        module_names = [m for m in MODULE_NAMES if agent_cfg.get(m)]
        self.groups = plan_groups(runtime_cfg.get("placement", "pod"), module_names,
                                  placements=runtime_cfg.get("placements"), actors=runtime_cfg.get("actors"),
                                  supervision=self.supervision)
        root = runtime_cfg.get("state_dir")
        self._state_dir = tempfile.mkdtemp(prefix=f"amiagent-{self.name}-", dir=root)
        self._hosts = {g.name: _Host(g, {m: agent_cfg[m] for m in g.modules}) for g in self.groups}
        self._host_of = {m: h for h in self._hosts.values() for m in h.group.modules}
        self.recoveries: list[Recovery] = []
        self._stop = threading.Event()
        self._host_lock = threading.Lock()
        try:
            for h in self._hosts.values():  # all start in parallel
                h.start(self._journal(h.group), self.torch_threads)
            for h in self._hosts.values():
                h.wait_ready(self.supervision.start_timeout_s)
            self._bind_all()
            proxies = {m: self._make_proxy(m, loop.period) for m in module_names}
        except BaseException:
            self._shutdown_hosts()
            if safety is not None:
                safety.world_model.close()
            raise
        follows = self.safety_follows_planner
        super().__init__(Modules(**proxies), loop, safety=safety)
        self.safety_follows_planner = follows
        self.plugins = {m: describe(agent_cfg[m]) for m in module_names}
        self._supervisor = threading.Thread(target=self._supervise, name=f"amiagent-supervise-{self.name}",
                                            daemon=True)
        self._supervisor.start()

    # ---------------------------------------------------------------- set-up

    def _journal(self, group: Group) -> str | None:
        return os.path.join(self._state_dir, "memory.journal") if "memory" in group.modules else None

    def endpoints(self) -> dict[str, str]:
        """Module name -> bus endpoint where it is served now."""
        return {m: h.info["endpoints"][m] for m, h in self._host_of.items()}

    def _bind_all(self, hosts: Iterable[_Host] | None = None) -> None:
        endpoints = self.endpoints()
        hosts = [h for h in (hosts or self._hosts.values()) if {"actor", "mode1"} & set(h.group.modules)]
        ray.get([h.actor.bind.remote(endpoints, self.supervision.call_timeout_s) for h in hosts],
                timeout=self.supervision.start_timeout_s)

    def _make_proxy(self, name: str, period: float) -> Module:
        timeout = self.supervision.call_timeout_s
        if name in ("perception", "memory"):  # called inside the cycle: never wait a whole period
            timeout = min(timeout, period)
        return PROXIES[_kind(name)](self.endpoints()[name], timeout=timeout)

    def start(self, task: Any, obs: Any = None) -> Any:
        """As `Agent.start`, after waiting (up to `supervision.start_timeout_s`) for modules being restarted."""
        deadline = time.monotonic() + self.supervision.start_timeout_s
        while True:
            self._run_between_cycles()  # recoveries that are ready take effect here
            if self.failure is not None:
                raise AmiagentError(f"cannot start: {self.failure}")
            if not self.down:
                break
            if time.monotonic() > deadline:
                raise AmiagentError(f"cannot start: modules {sorted(self.down)} are still down after "
                                    f"{self.supervision.start_timeout_s:g} s")
            time.sleep(0.05)
        return super().start(task, obs)

    # ---------------------------------------------------------------- introspection

    def placement(self) -> dict[str, dict[str, Any]]:
        """Group -> its modules, process id, node id and endpoints, as they are now."""
        with self._host_lock:
            return {name: {"modules": list(h.group.modules), "pid": h.info.get("pid"),
                           "node_id": h.info.get("node_id"), "endpoints": dict(h.info.get("endpoints", {})),
                           "restarts": h.restarts} for name, h in self._hosts.items()}

    def host_pid(self, module: str) -> int:
        """Process id of the Ray actor holding `module` (to watch it, or to kill it in a test)."""
        return int(self._host_of[module].info["pid"])

    def cross_process_calls(self) -> int:
        """Bus calls made so far: by this process to the modules, and by the modules to each other."""
        driver = sum(getattr(m, "requests", 0) for m in self.modules.all())
        with self._host_lock:
            actors = [h.actor for h in self._hosts.values() if h.actor is not None]
        hosts = sum(s["requests"] for s in ray.get([a.stats.remote() for a in actors], timeout=10))
        return driver + hosts

    # ---------------------------------------------------------------- hot swap

    def swap_plugin(self, name: str, spec: Mapping[str, Any]) -> threading.Event:
        """Replace module `name` by the plugin `spec` ({name, params}) while the agent runs.

        The new module is built and checked in its host now (errors raise
        here, and nothing changes); it starts serving at the next cycle
        boundary, with the current settings, and the event returned is set
        then. When the safety filter uses the planner's model, a world-model
        swap replaces the filter's copy in the same step.
        """
        from amiagent.build import plugin

        spec = dict(spec)
        require_plain(spec, f"swap {name}")
        host = self._host_of.get(name)
        if host is None:
            raise ConfigError(f"cannot swap {name!r}: this agent's modules are {sorted(self._host_of)}")
        try:
            label = ray.get(host.actor.prepare_swap.remote(name, spec), timeout=self.supervision.start_timeout_s)
        except ray.exceptions.RayError as exc:
            raise AmiagentError(remote_cause(exc)) from exc
        checker = None
        if name == "world_model" and self.safety_follows_planner and self.safety is not None:
            checker = plugin("world_model", spec, "swap world_model")
        done = threading.Event()

        def commit() -> None:
            ray.get(host.actor.commit_swap.remote(name), timeout=self.supervision.call_timeout_s * 5)
            host.specs[name] = spec  # a restart builds what runs now
            if checker is not None:
                self._swap_checker(checker)
            self.refresh([name])
            self.plugins[name] = label
            self.note(f"swap {name}: {label}")
            done.set()

        self.between_cycles(commit)
        return done

    # ---------------------------------------------------------------- supervision

    def _supervise(self) -> None:
        while not self._stop.is_set():
            with self._host_lock:
                watching = {h.watch: h for h in self._hosts.values() if h.watch is not None}
            if not watching:
                self._stop.wait(0.2)
                continue
            ready, _ = ray.wait(list(watching), num_returns=1, timeout=1.0)  # a death resolves at once
            for ref in ready:
                host = watching[ref]
                try:
                    ray.get(ref)
                    with self._host_lock:
                        host.watch = None  # closed on purpose
                except ray.exceptions.RayError as exc:
                    if self._stop.is_set():
                        return
                    self._recover(host, exc)

    def _recover(self, host: _Host, exc: Exception) -> None:
        down_at = time.perf_counter()
        modules = host.group.modules
        with self._host_lock:
            host.watch = None
        self.module_down(modules, f"group {host.group.name} died ({type(exc).__name__})")
        log.warning("modules %s (group %s) died; restarting", ", ".join(modules), host.group.name)
        policy = host.group.supervision
        while not self._stop.is_set():
            if host.restarts >= policy.max_restarts:
                self.fail(f"group {host.group.name} died after {host.restarts} restart(s) "
                          f"(runtime.supervision.max_restarts={policy.max_restarts})")
                log.error("group %s is gone for good: the body is stopped", host.group.name)
                return
            host.restarts += 1
            if self._stop.wait(policy.backoff(host.restarts)):
                return
            try:
                with self._host_lock:
                    host.kill()
                    host.start(self._journal(host.group), self.torch_threads)
                host.wait_ready(policy.start_timeout_s)
                # the actors bind to the new endpoints; actors elsewhere re-bind to this host's modules
                dependents = [host] if {"actor", "mode1"} & set(modules) else []
                if {"world_model", "cost"} & set(modules):
                    dependents = list(self._hosts.values())
                self._bind_all(dependents)
                break
            except Exception:
                log.exception("restart %d of group %s failed", host.restarts, host.group.name)
        else:
            return
        endpoints = dict(host.info["endpoints"])
        restart = host.restarts

        def back() -> None:
            named = self.modules.named()
            for m in modules:
                named[m].reconnect(endpoints[m])
            self.module_up(modules, f"restart {restart}")
            self.refresh(modules)  # settings again, activation, memory backlog
            up_at = time.perf_counter()
            self.recoveries.append(Recovery(host.group.name, modules, down_at, up_at, restart))
            self.note(f"recovered {','.join(modules)} in {up_at - down_at:.2f} s")

        self.between_cycles(back)

    # ---------------------------------------------------------------- shutdown

    def _shutdown_hosts(self) -> None:
        hosts = [h for h in self._hosts.values() if h.actor is not None]
        closing = [h.actor.close.remote() for h in hosts]
        try:
            ray.get(closing, timeout=10)
        except ray.exceptions.RayError:  # a dead host has nothing to close
            pass
        for h in hosts:
            h.kill()

    def close(self) -> None:
        """Stop supervising, close every module and end every actor; remove the state directory. Safe twice."""
        if self._closed:
            return
        self._stop.set()
        try:
            super().close()
        finally:
            with self._host_lock:
                self._shutdown_hosts()
            if self._supervisor.is_alive():
                self._supervisor.join(timeout=5)
            shutil.rmtree(self._state_dir, ignore_errors=True)


# --------------------------------------------------------------------------- single modules (tools, benches)


@dataclass
class HostedModule:
    """One module living in a Ray actor: its name, the actor, and its bus endpoint."""

    name: str
    actor: Any
    endpoint: str

    def proxy(self, timeout: float = 5.0) -> Module:
        """A local object implementing the module's contract over the bus."""
        return PROXIES[_kind(self.name)](self.endpoint, timeout=timeout)

    def close(self) -> None:
        """Close the module and end its actor. Safe twice."""
        if self.actor is None:
            return
        try:
            ray.get(self.actor.close.remote(), timeout=10)
        finally:
            ray.kill(self.actor, no_restart=True)
            self.actor = None


def host(name: str, spec: Mapping[str, Any], *, num_cpus: float = 0.0, timeout: float = 60.0) -> HostedModule:
    """Start a Ray actor serving module `name` (world_model, cost, ...) built from `spec`; needs Ray initialised.

    `num_cpus` defaults to 0: modules mostly wait on the bus. `spec` must be
    plain containers (convert OmegaConf configs with `OmegaConf.to_container`).
    """
    if name not in MODULE_NAMES:
        raise ConfigError(f"{name!r} is not a module; modules are {list(MODULE_NAMES)}")
    if not ray.is_initialized():
        raise ConfigError("ray.init() must be called (or a cluster joined) before hosting modules")
    spec = dict(spec)
    require_plain(spec, f"agent.{name}")
    h = _Host(Group(name, (name,), num_cpus=num_cpus), {name: spec})
    h.start(None, 1)
    h.wait_ready(timeout)
    return HostedModule(name, h.actor, h.info["endpoints"][name])
