"""The Ray actor that hosts a group of modules (`ModuleHost`), and the driver's handle on it.

A host builds its modules from plain config specs and serves each on a bus
socket bound to a port the OS picks on its node; modules of one host call
each other directly, others through bus proxies (`bind`). Its Ray methods are
the control plane (start, bind, swap, stats, close); module calls never go
through Ray. `host(name, spec)` starts one module alone (tools, benches).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray

from amiagent.agent import MODULE_NAMES, check_swappable
from amiagent.build import build_module
from amiagent.contracts import Module, WorldModel
from amiagent.errors import AmiagentError, ConfigError
from amiagent.runtime.journal import Journal, JournaledMemory
from amiagent.bus.remote import PROXIES, ModuleServer, RemoteCost, RemoteWorldModel
from amiagent.runtime.placement import Group, require_plain


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
        self._lock = threading.Lock()  # Ray runs up to four of these methods at once (watch blocks)
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

    def _build(self, name: str, spec: Mapping[str, Any], journaled: bool = True) -> Module:
        module = build_module(name, spec)
        if name == "memory" and self._journal_path and journaled:
            module = JournaledMemory(module, Journal(self._journal_path))
        return module

    def info(self) -> dict[str, Any]:
        """Endpoints of the modules, and where this host runs."""
        memory = self.modules.get("memory")
        return {"endpoints": {name: s.endpoint for name, s in self.servers.items()}, "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address(),
                "restored": memory.restored if isinstance(memory, JournaledMemory) else 0}

    def bind(self, endpoints: dict[str, str], timeout: float = 2.0) -> None:
        """Bind the actors of this group to the world model and cost: local objects when they are in
        this group, proxies to `endpoints` otherwise."""
        with self._lock:
            self._bind(endpoints, timeout)

    def _bind(self, endpoints: dict[str, str], timeout: float) -> None:
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
        """Build the replacement for module `name` (not serving yet); returns a label for it.

        A memory is built bare here and takes over the journal at commit, so
        the running one keeps journaling until then and nothing is lost.
        """
        with self._lock:
            if name not in self.modules:
                raise ConfigError(f"group {self.group!r} does not hold {name!r}")
            if name in self._pending:
                raise ConfigError(f"a swap of {name} is already waiting for its cycle boundary")
            new = self._build(name, spec, journaled=False)
            try:
                check_swappable(name, self.modules[name], new)
            except BaseException:
                new.close()
                raise
            self._pending[name] = new
        params = spec.get("params") or {}
        return f"{spec.get('name', type(new).__name__)} {params}" if params else str(spec.get("name", name))

    def commit_swap(self, name: str) -> None:
        """Serve the prepared replacement of `name` from the next request on; close the old module."""
        with self._lock:
            self._commit(name)

    def _commit(self, name: str) -> None:
        if name not in self._pending:
            raise ConfigError(f"no swap of {name} is waiting (this host may have restarted since)")
        new = self._pending.pop(name)
        old = self.modules[name]
        if isinstance(old, JournaledMemory):  # the journal holds everything the old one stored
            old.journal.close()
            new = JournaledMemory(new, Journal(self._journal_path))
        self.modules[name] = new
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
        with self._lock:
            self._close()

    def _close(self) -> None:
        for server in self.servers.values():
            server.close()
        for proxy in self._proxies:
            proxy.close()
        for module in list(self.modules.values()) + list(self._pending.values()):
            module.close()
        if self._journal_path:  # a closed agent's memory is not resumed: its journal goes, on any node
            for path in (self._journal_path, self._journal_path + ".tmp"):
                if os.path.exists(path):
                    os.remove(path)
            try:
                os.rmdir(os.path.dirname(self._journal_path))
            except OSError:  # not empty, or already gone (the driver's own node)
                pass
        self._closed.set()


class HostHandle:
    """The driver's record of one group's actor: the specs it builds (kept current by swaps), its
    endpoints and process, whether it is alive, and how often it was restarted."""

    def __init__(self, group: Group, specs: dict[str, dict]):
        self.group = group
        self.specs = specs
        self.actor: Any = None
        self.info: dict[str, Any] = {}
        self.watch: Any = None
        self.alive = False
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
        self.alive = True

    def kill(self) -> None:
        if self.actor is not None:
            ray.kill(self.actor, no_restart=True)
            self.actor = None



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
        except ray.exceptions.RayError:  # a dead actor has nothing left to close
            pass
        finally:
            ray.kill(self.actor, no_restart=True)
            self.actor = None


def host(name: str, spec: Mapping[str, Any], *, num_cpus: float = 0.0, timeout: float = 60.0) -> HostedModule:
    """Start a Ray actor serving module `name` (world_model, cost, ...) built from `spec`; needs Ray initialised.

    `num_cpus` defaults to 0: modules mostly wait on the bus. `spec` must be
    plain containers (convert OmegaConf configs with `OmegaConf.to_container`).
    """
    return host_all({name: spec}, num_cpus=num_cpus, timeout=timeout)[name]


def host_all(specs: Mapping[str, Mapping[str, Any]], *, num_cpus: float = 0.0,
             timeout: float = 60.0) -> dict[str, HostedModule]:
    """`host` for several modules, each alone in its own Ray actor; the actors start side by side.

    An actor (or mode1) hosted so plans through nothing until bound:
    `ray.get(hosted["actor"].actor.bind.remote({"world_model": ..., "cost": ...}))`.
    """
    unknown = [name for name in specs if name not in MODULE_NAMES]
    if unknown:
        raise ConfigError(f"{unknown[0]!r} is not a module; modules are {list(MODULE_NAMES)}")
    if not ray.is_initialized():
        raise ConfigError("ray.init() must be called (or a cluster joined) before hosting modules")
    handles = {}
    for name, spec in specs.items():
        spec = dict(spec)
        require_plain(spec, f"agent.{name}")
        handles[name] = HostHandle(Group(name, (name,), num_cpus=num_cpus), {name: spec})
    try:
        for h in handles.values():
            h.start(None, 1)
        for h in handles.values():
            h.wait_ready(timeout)
    except BaseException:
        for h in handles.values():
            h.kill()
        raise
    return {name: HostedModule(name, h.actor, h.info["endpoints"][name]) for name, h in handles.items()}
