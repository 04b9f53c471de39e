"""The `ray` runtime: an agent's modules in supervised Ray actors, talking over ZeroMQ.

Ray places and supervises; ZeroMQ carries the data. Each *group* of modules
(the placement, `amiagent.runtime.placement`) lives in one Ray actor, a
`ModuleHost` (`amiagent.runtime.host`), which serves each module on a bus
socket whose endpoint is discovered through Ray, never configured. Modules in
one group call each other directly; across groups they use the bus.

The agent's cycle, and with it the safety filter with its own model and
guardrails, stays in the driver process next to the body: it is
the last check before a command and must not go down with a module.

`RayModules` supplies the agent's module handles (proxies to the hosts) and
hot-swaps plugins inside the hosts; its `Supervisor` (`amiagent.runtime.supervisor`)
restarts a group that dies or hangs and hands its modules back to the agent.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray

from amiagent.agent import MODULE_NAMES, Agent, LoopConfig, Modules, SwapTicket
from amiagent.contracts import Module
from amiagent.errors import AmiagentError, ConfigError
from amiagent.bus.remote import PROXIES
from amiagent.runtime.host import HostedModule, HostHandle, ModuleHost, _kind, host, remote_cause
from amiagent.config import check_keys
from amiagent.runtime.placement import RUNTIME_KEYS, Group, check_runtime_config, plan_groups, require_plain
from amiagent.runtime.session import RaySession
from amiagent.runtime.supervisor import Recovery, Supervisor

__all__ = ["HostedModule", "ModuleHost", "RayModules", "RaySession", "Recovery", "check_runtime_config", "host",
           "plan_groups", "ray_agent", "require_plain"]

log = logging.getLogger(__name__)

def _check_resources_offered(groups: list[Group]) -> None:
    """Refuse at once a group asking for a custom resource no node of the cluster offers."""
    offered = ray.cluster_resources()
    for g in groups:
        for resource, amount in g.resources.items():
            if offered.get(resource, 0.0) < amount:
                custom = sorted(k for k in offered if not k.startswith("node:") and k not in
                                ("CPU", "GPU", "memory", "object_store_memory"))
                raise ConfigError(f"runtime.placement.{g.name}.resources: no node of this Ray cluster offers "
                                  f"{amount:g} {resource!r} (custom resources offered: {custom or 'none'})")


def ray_agent(agent_cfg: dict, runtime_cfg: dict | None = None, *, name: str | None = None) -> Agent:
    """An Agent whose modules live in supervised Ray actors, placed by `runtime` config (see `RayModules`).

    `agent_cfg` and `runtime_cfg` are plain containers (the `agent` and `runtime` sections of a composed
    config). The agent is built once: every config error is reported before any actor starts. The
    safety filter (own world model, own guardrails) and the upper planning levels stay in this process,
    next to the cycle. Needs Ray initialised (see `RaySession`). `agent.runtime` is the `RayModules`.
    """
    from amiagent.build import build_agent

    handles = RayModules(agent_cfg, runtime_cfg, name=name)
    return build_agent(agent_cfg, handles, name=handles.name)


class RayModules:
    """Module handles from supervised Ray actors: started hosts, proxies to them, restarts, swaps in them.

    Checks the runtime config when made (nothing starts); the hosts start when the agent asks for its
    modules (`modules`), once the agent's config has been checked.
    """

    in_process = False

    def __init__(self, agent_cfg: dict, runtime_cfg: dict | None = None, *, name: str | None = None):
        runtime_cfg = check_keys("runtime", runtime_cfg, RUNTIME_KEYS)
        self.groups, self.supervision, self.torch_threads = check_runtime_config(agent_cfg, runtime_cfg)
        if not ray.is_initialized():
            raise ConfigError("Ray is not initialised: open a RaySession (or call ray.init) first")
        _check_resources_offered(self.groups)
        self.name = name or str(agent_cfg.get("name", "agent"))
        self._root = runtime_cfg.get("state_dir")
        self.state_dir: str | None = None
        self.agent: Agent | None = None
        self.hosts: dict[str, HostHandle] = {}
        self.host_of: dict[str, HostHandle] = {}
        self.lock = threading.Lock()
        self.supervisor = Supervisor(self)
        self._closed = False

    def modules(self, agent_cfg: Mapping[str, Any], loop: LoopConfig) -> Modules:
        """Start every group's host (in parallel), wait until each serves, and return proxies to the modules."""
        self.state_dir = tempfile.mkdtemp(prefix=f"amiagent-{self.name}-", dir=self._root)
        self.hosts = {g.name: HostHandle(g, {m: agent_cfg[m] for m in g.modules}) for g in self.groups}
        self.host_of = {m: h for h in self.hosts.values() for m in h.group.modules}
        proxies: dict[str, Module] = {}
        try:
            for h in self.hosts.values():
                h.start(self.journal(h.group), self.torch_threads)
            for h in self.hosts.values():
                h.wait_ready(self.supervision.start_timeout_s)
            self.bind(list(self.hosts.values()))
            for m in self.host_of:
                proxies[m] = self._make_proxy(m, self._cycle_timeout(loop))
        except BaseException:
            for proxy in proxies.values():
                proxy.close()
            self.close()
            raise
        return Modules(**proxies)

    def attach(self, agent: Agent) -> None:
        """Supervise the hosts from now on, reporting to `agent`."""
        self.agent = agent
        self.supervisor.thread.start()

    @property
    def recoveries(self) -> list[Recovery]:
        """Every restart of a group so far, with how long its modules were away."""
        return self.supervisor.recoveries

    def wait_restarts(self, timeout: float) -> bool:
        """See `Supervisor.wait_restarts`."""
        return self.supervisor.wait_restarts(timeout)

    # ---------------------------------------------------------------- set-up

    def journal(self, group: Group) -> str | None:
        return os.path.join(self.state_dir, "memory.journal") if "memory" in group.modules else None

    def endpoints(self) -> dict[str, str]:
        """Module name -> bus endpoint where it is served now."""
        return {m: h.info["endpoints"][m] for m, h in self.host_of.items()}

    def bind(self, hosts: list[HostHandle]) -> None:
        """Bind the actors of `hosts` to the world model and cost, where those are alive."""
        providers = [self.host_of[m] for m in ("world_model", "cost")]
        if not all(p.alive for p in providers):
            return  # the providers' own recovery binds everyone once they are back
        endpoints = self.endpoints()
        planners = [h for h in hosts if h.alive and {"actor", "mode1"} & set(h.group.modules)]
        ray.get([h.actor.bind.remote(endpoints, self.supervision.call_timeout_s) for h in planners],
                timeout=self.supervision.start_timeout_s)

    def _make_proxy(self, name: str, cycle_timeout: float) -> Module:
        return PROXIES[_kind(name)](self.endpoints()[name], timeout=self.supervision.call_timeout_s,
                                    cycle_timeout=cycle_timeout)

    def _cycle_timeout(self, loop: LoopConfig) -> float:
        # lifecycle and planning calls may take call_timeout_s; the calls a cycle makes (perception, memory
        # acknowledgements, braking) at most a period, so a slow module costs a cycle, not the body's safety.
        # In lockstep, which waits for every plan, they wait as long: a loaded machine must not turn an
        # evaluation's cycle into a stop (the episode would then depend on the load, not the seed)
        if loop.lockstep:
            return self.supervision.call_timeout_s
        return min(self.supervision.call_timeout_s, loop.period)

    def loop_changed(self, loop: LoopConfig) -> None:
        """The calls a cycle makes to the modules wait as long as the new timing allows."""
        for proxy in self.agent.modules.named().values():
            proxy.cycle_timeout = self._cycle_timeout(loop)

    def before_start(self, agent: Agent) -> None:
        """Wait (up to `supervision.start_timeout_s`) for modules being restarted."""
        deadline = time.monotonic() + self.supervision.start_timeout_s
        while True:
            agent.run_between_cycles()  # recoveries that are ready take effect here
            if agent.failure is not None:
                raise AmiagentError(f"cannot start: {agent.failure}")
            if not agent.down:
                return
            if time.monotonic() > deadline:
                raise AmiagentError(f"cannot start: modules {sorted(agent.down)} are still down after "
                                    f"{self.supervision.start_timeout_s:g} s")
            time.sleep(0.05)

    # ---------------------------------------------------------------- introspection

    def placement(self) -> dict[str, dict[str, Any]]:
        """Group -> its modules, process id, node id, endpoints and restarts, as they are now."""
        with self.lock:
            return {name: {"modules": list(h.group.modules), "pid": h.info.get("pid"), "alive": h.alive,
                           "node_id": h.info.get("node_id"), "endpoints": dict(h.info.get("endpoints", {})),
                           "restarts": h.restarts} for name, h in self.hosts.items()}

    def host_pid(self, module: str) -> int:
        """Process id of the Ray actor holding `module` (to watch it, or to kill it in a test)."""
        return int(self.host_of[module].info["pid"])

    def cross_process_calls(self) -> int:
        """Bus calls made so far: by this process to the modules, and by the modules to each other."""
        driver = sum(m.requests for m in self.agent.modules.all())  # every module here is a bus proxy
        with self.lock:
            actors = [h.actor for h in self.hosts.values() if h.alive]
        hosts = sum(s["requests"] for s in ray.get([a.stats.remote() for a in actors], timeout=10))
        return driver + hosts

    # ---------------------------------------------------------------- hot swap

    def swap_plugin(self, agent: Agent, name: str, spec: Mapping[str, Any]) -> SwapTicket:
        """Replace module `name` while the agent runs; `spec` is merged onto what it runs now
        (`{"params": {"substeps": 12}}` changes one parameter; a new `name` starts from its defaults).

        The new module is built and checked in its host now (errors raise
        here, and nothing changes); it starts serving at the next cycle
        boundary, with the current settings, and the ticket returned is set
        then. When the safety filter uses the planner's model, a world-model
        swap replaces the filter's copy, and a cost swap the filter's
        guardrails, in the same step. Refused while the module is down or
        another swap of it is pending.
        """
        from amiagent.build import merge_spec

        require_plain(dict(spec), f"swap {name}")
        host_ = self.host_of.get(name)
        if host_ is None:
            raise ConfigError(f"cannot swap {name!r}: this agent's modules are {sorted(self.host_of)}")
        spec = merge_spec(host_.specs[name], spec)
        if name in agent.down or not host_.alive:
            raise AmiagentError(f"cannot swap {name} now: it is down (restarting); try again once it is back")
        try:
            label = ray.get(host_.actor.prepare_swap.remote(name, spec), timeout=self.supervision.start_timeout_s)
        except ray.exceptions.RayError as exc:
            raise AmiagentError(remote_cause(exc)) from exc
        checker, guardrails = agent.swapper.safety_copies(name, spec)
        ticket = SwapTicket(label)

        def commit() -> None:
            try:
                ray.get(host_.actor.commit_swap.remote(name), timeout=self.supervision.start_timeout_s)
            except ray.exceptions.RayError as exc:
                for m in (checker, guardrails):
                    if m is not None:
                        m.close()
                raise AmiagentError(remote_cause(exc)) from exc
            host_.specs[name] = spec  # a restart builds what runs now
            agent.swapper.replace_safety_copies(checker, guardrails)
            agent.refresh([name])
            agent.swapper.done(name, label, spec)

        agent.between_cycles(ticket.run(commit))
        return ticket

    # ---------------------------------------------------------------- shutdown

    def _shutdown_hosts(self) -> None:
        hosts = [h for h in self.hosts.values() if h.actor is not None]
        for h, ref in [(h, h.actor.close.remote()) for h in hosts]:
            try:
                ray.get(ref, timeout=10)
            except ray.exceptions.RayError as exc:  # a dead host has nothing left to close
                log.debug("group %s did not close cleanly: %s", h.group.name, exc)
            h.kill()
            h.alive = False

    def detach(self) -> None:
        """Stop supervising: the agent is closing, and no group may be restarted under it."""
        self.supervisor.stop()

    def close(self) -> None:
        """End every actor and remove the state directory (after the agent closed its proxies). Safe twice."""
        if self._closed:
            return
        self._closed = True
        self.supervisor.stop()
        with self.lock:
            self._shutdown_hosts()
        self.supervisor.join()
        if self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
