"""The `ray` runtime: an agent's modules in supervised Ray actors, talking over ZeroMQ.

Ray places and supervises; ZeroMQ carries the data. Each *group* of modules
(the placement, `amiagent.runtime.placement`) lives in one Ray actor, a
`ModuleHost` (`amiagent.runtime.host`), which serves each module on a bus
socket whose endpoint is discovered through Ray, never configured. Modules in
one group call each other directly; across groups they use the bus.

The agent's cycle, and with it the safety filter with its own model and
guardrails, stays in the driver process next to the body (`RayAgent`): it is
the last check before a command and must not go down with a module.

Supervision: when a host dies (a crash, an os-level kill, its node lost) the
driver hears of it at once through a pending `watch` call. Its modules are
marked down (the cycle then stops the body, or uses the rest of the last valid
plan, and never calls them), and the host is started again after a backoff
that doubles with each restart, up to `max_restarts`; each dead host recovers
on its own thread. When it is back its modules get the agent's settings again
and only then are marked up; the short-term memory replays its journal; the
recovery time is recorded (`RayAgent.recoveries`).
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
from amiagent.remote import PROXIES
from amiagent.runtime.host import HostedModule, HostHandle, ModuleHost, _kind, host, remote_cause
from amiagent.config import check_keys
from amiagent.runtime.placement import Group, Supervision, plan_groups, require_plain

__all__ = ["HostedModule", "ModuleHost", "RayAgent", "RaySession", "Recovery", "host", "plan_groups",
           "require_plain"]

log = logging.getLogger(__name__)

RUNTIME_KEYS = {"name", "address", "namespace", "placement", "placements", "actors", "supervision", "ray_logs",
                "torch_threads", "telemetry", "control", "state_dir"}
UNANSWERED_LIMIT = 3
"""Calls in a row a module may leave unanswered before its group is taken for hung and restarted."""
REFRESH_TRIES = 5
"""Cycle boundaries at which a restarted group may fail to take its settings before it is restarted again."""


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail fast when nothing listens at a cluster address `host:port`."""
    import socket

    host_, _, port = address.rpartition(":")
    if not host_ or not port.isdigit():
        raise AmiagentError(f"runtime.address must be null, auto, host:port or ray://host:port, got {address!r}")
    try:
        socket.create_connection((host_, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise AmiagentError(f"no Ray cluster answers at runtime.address={address} ({exc}); start one there with "
                            "`ray start --head`, or leave runtime.address null for an embedded instance") from exc


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
        elif address != "auto" and not address.startswith("ray://"):
            _check_reachable(address)  # Ray itself would retry for minutes, logging to the terminal
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if address == "auto":
                raise AmiagentError("runtime.address=auto: no running Ray cluster found on this machine; start "
                                    "one with `ray start --head`, or leave runtime.address null for an embedded "
                                    "instance") from exc
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


@dataclass
class Recovery:
    """One restart of a group: when its death was noticed, when its modules were back, and which restart."""

    group: str
    modules: tuple[str, ...]
    down_at: float
    up_at: float
    restart: int

    @property
    def seconds(self) -> float:
        return self.up_at - self.down_at


class RayAgent(Agent):
    """An Agent whose modules live in supervised Ray actors, placed by `runtime` config.

    `agent_cfg` and `runtime_cfg` are plain containers (the `agent` and
    `runtime` sections of a composed config). The whole agent is first built
    once in this process, so every config error is reported before any actor
    starts; that build's safety filter (own world model, own guardrails) is the
    one the cycle uses. Needs Ray initialised (see `RaySession`).
    """

    def __init__(self, agent_cfg: dict, runtime_cfg: dict | None = None, *, name: str | None = None):
        from amiagent.build import build_agent, describe

        runtime_cfg = check_keys("runtime", runtime_cfg, RUNTIME_KEYS)
        self.groups, self.supervision, self.torch_threads = check_runtime_config(agent_cfg, runtime_cfg)
        if not ray.is_initialized():
            raise ConfigError("Ray is not initialised: open a RaySession (or call ray.init) first")
        _check_resources_offered(self.groups)
        module_names = [m for m in MODULE_NAMES if agent_cfg.get(m)]
        root = runtime_cfg.get("state_dir")
        local = build_agent(agent_cfg)  # every config error surfaces here, before any actor starts
        # the safety filter and the upper planning levels stay in this process, next to the cycle
        safety, local.arbiter.safety, local.safety_modules = local.safety, None, []
        hierarchy, local.levels = local.hierarchy, None
        options = local.options  # as build_agent read them
        local.close()
        self.name = name or str(agent_cfg.get("name", "agent"))
        loop = options.loop
        self._state_dir = tempfile.mkdtemp(prefix=f"amiagent-{self.name}-", dir=root)
        self._hosts = {g.name: HostHandle(g, {m: agent_cfg[m] for m in g.modules}) for g in self.groups}
        self._host_of = {m: h for h in self._hosts.values() for m in h.group.modules}
        self.recoveries: list[Recovery] = []
        self._stop = threading.Event()
        self._host_lock = threading.Lock()
        self._recovering: dict[str, threading.Thread] = {}
        self._restarting: set[str] = set()  # groups found dead whose modules are not yet handed back
        self._restarted = threading.Condition(self._host_lock)
        proxies: dict[str, Module] = {}
        try:
            for h in self._hosts.values():  # all start in parallel
                h.start(self._journal(h.group), self.torch_threads)
            for h in self._hosts.values():
                h.wait_ready(self.supervision.start_timeout_s)
            self._bind(list(self._hosts.values()))
            for m in module_names:
                proxies[m] = self._make_proxy(m, self._cycle_timeout(loop))
        except BaseException:
            for proxy in proxies.values():
                proxy.close()
            self._shutdown_hosts()
            if safety is not None:
                safety.world_model.close()
                safety.cost.close()
            if hierarchy is not None:
                hierarchy.close()
            shutil.rmtree(self._state_dir, ignore_errors=True)
            raise
        super().__init__(Modules(**proxies), options, safety=safety, hierarchy=hierarchy)
        self.plugins = {m: describe(agent_cfg[m]) for m in module_names}
        self.specs = {m: dict(agent_cfg[m]) for m in module_names}
        self._supervisor = threading.Thread(target=self._supervise, name=f"amiagent-supervise-{self.name}",
                                            daemon=True)
        self._supervisor.start()

    # ---------------------------------------------------------------- set-up

    def _journal(self, group: Group) -> str | None:
        return os.path.join(self._state_dir, "memory.journal") if "memory" in group.modules else None

    def endpoints(self) -> dict[str, str]:
        """Module name -> bus endpoint where it is served now."""
        return {m: h.info["endpoints"][m] for m, h in self._host_of.items()}

    def _bind(self, hosts: list[HostHandle]) -> None:
        """Bind the actors of `hosts` to the world model and cost, where those are alive."""
        providers = [self._host_of[m] for m in ("world_model", "cost")]
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

    @property
    def loop(self) -> LoopConfig:
        """The cycle's timing, as `Agent.loop`. Setting it (e.g. lockstep for an evaluation) also sets how
        long the calls a cycle makes to the modules wait."""
        return self.options.loop

    @loop.setter
    def loop(self, loop: LoopConfig) -> None:
        Agent.loop.fset(self, loop)
        for proxy in self.modules.named().values():
            proxy.cycle_timeout = self._cycle_timeout(loop)

    def start(self, task: Any, obs: Any = None) -> Any:
        """As `Agent.start`, after waiting (up to `supervision.start_timeout_s`) for modules being restarted."""
        deadline = time.monotonic() + self.supervision.start_timeout_s
        while True:
            self.run_between_cycles()  # recoveries that are ready take effect here
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
        """Group -> its modules, process id, node id, endpoints and restarts, as they are now."""
        with self._host_lock:
            return {name: {"modules": list(h.group.modules), "pid": h.info.get("pid"), "alive": h.alive,
                           "node_id": h.info.get("node_id"), "endpoints": dict(h.info.get("endpoints", {})),
                           "restarts": h.restarts} for name, h in self._hosts.items()}

    def host_pid(self, module: str) -> int:
        """Process id of the Ray actor holding `module` (to watch it, or to kill it in a test)."""
        return int(self._host_of[module].info["pid"])

    def cross_process_calls(self) -> int:
        """Bus calls made so far: by this process to the modules, and by the modules to each other."""
        driver = sum(getattr(m, "requests", 0) for m in self.modules.all())
        with self._host_lock:
            actors = [h.actor for h in self._hosts.values() if h.alive]
        hosts = sum(s["requests"] for s in ray.get([a.stats.remote() for a in actors], timeout=10))
        return driver + hosts

    # ---------------------------------------------------------------- hot swap

    def swap(self, name: str, module: Module, **kwargs: Any) -> SwapTicket:
        raise ConfigError("a Ray agent's modules live in their actors: swap them with swap_plugin(name, spec)")

    def swap_plugin(self, name: str, spec: Mapping[str, Any]) -> SwapTicket:
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
        host_ = self._host_of.get(name)
        if host_ is None:
            raise ConfigError(f"cannot swap {name!r}: this agent's modules are {sorted(self._host_of)}")
        spec = merge_spec(host_.specs[name], spec)
        if name in self.down or not host_.alive:
            raise AmiagentError(f"cannot swap {name} now: it is down (restarting); try again once it is back")
        try:
            label = ray.get(host_.actor.prepare_swap.remote(name, spec), timeout=self.supervision.start_timeout_s)
        except ray.exceptions.RayError as exc:
            raise AmiagentError(remote_cause(exc)) from exc
        checker, guardrails = self.swapper.safety_copies(name, spec)
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
            self.swapper.replace_safety_copies(checker, guardrails)
            self.refresh([name])
            self.swapper.done(name, label, spec)

        self.between_cycles(ticket.run(commit))
        return ticket

    # ---------------------------------------------------------------- supervision

    def _supervise(self) -> None:
        while not self._stop.is_set():
            with self._host_lock:
                watching = {h.watch: h for h in self._hosts.values() if h.watch is not None}
            if not watching:
                self._stop.wait(0.2)
                continue
            self._restart_hung()
            ready, _ = ray.wait(list(watching), num_returns=len(watching), timeout=0.5)
            dead = []
            for ref in ready:  # every host found dead is marked down at once, then each recovers alone
                host_ = watching[ref]
                try:
                    ray.get(ref)
                    with self._host_lock:
                        host_.watch = None  # closed on purpose
                except ray.exceptions.RayError as exc:
                    if self._stop.is_set():
                        return
                    with self._host_lock:
                        host_.watch, host_.alive = None, False
                        self._restarting.add(host_.group.name)
                    self.module_down(host_.group.modules, f"group {host_.group.name} died ({type(exc).__name__})")
                    log.warning("modules %s (group %s) died; restarting", ", ".join(host_.group.modules),
                                host_.group.name)
                    dead.append(host_)
            for host_ in dead:
                thread = threading.Thread(target=self._recover, args=(host_, time.perf_counter()),
                                          name=f"amiagent-recover-{host_.group.name}", daemon=True)
                self._recovering[host_.group.name] = thread
                thread.start()

    def _restart_hung(self) -> None:
        """A group whose module leaves UNANSWERED_LIMIT calls in a row unanswered is alive but hung: it
        is killed, and then recovers like any group that died."""
        down = self.down
        for name, module in self.modules.named().items():
            host_ = self._host_of.get(name)
            if getattr(module, "unanswered", 0) < UNANSWERED_LIMIT or name in down or host_ is None:
                continue
            module.unanswered = 0
            with self._host_lock:
                if not host_.alive or host_.actor is None:
                    continue
                log.error("module %s left %d calls in a row unanswered: restarting group %s as hung", name,
                          UNANSWERED_LIMIT, host_.group.name)
                self.note(f"hung {name}: restarting group {host_.group.name}")
                ray.kill(host_.actor, no_restart=True)  # its watch now fails: the usual recovery follows

    def wait_restarts(self, timeout: float) -> bool:
        """Wait until no group found dead is still being restarted: each has been started again, its
        modules handed back to the cycle at the next cycle boundary, or has failed for good (`failure`).
        False if `timeout` seconds pass first.

        For drivers of lockstep episodes (tests, tools): called between cycles once a module is seen in
        `down`, the next cycle has it back, however long the restart took on this machine.
        """
        with self._restarted:
            return self._restarted.wait_for(lambda: not self._restarting, timeout)

    def _recover(self, host_: HostHandle, down_at: float) -> None:
        """Restart a dead group (with backoff), then hand its modules back to the cycle."""
        try:
            self._restart(host_, down_at)
        finally:
            with self._restarted:
                self._restarting.discard(host_.group.name)
                self._restarted.notify_all()

    def _restart(self, host_: HostHandle, down_at: float) -> None:
        policy = host_.group.supervision
        while not self._stop.is_set():
            if host_.restarts >= policy.max_restarts:
                self.fail(f"group {host_.group.name} died after {host_.restarts} restart(s) "
                          f"(runtime.supervision.max_restarts={policy.max_restarts})")
                log.error("group %s is gone for good: the body is stopped", host_.group.name)
                return
            host_.restarts += 1
            if self._stop.wait(policy.backoff(host_.restarts)):
                return
            try:
                with self._host_lock:
                    if self._stop.is_set():  # closing: no new actor may outlive close()
                        return
                    host_.kill()
                    host_.start(self._journal(host_.group), self.torch_threads)
                host_.wait_ready(policy.start_timeout_s)
                self._bind([host_])
                break
            except Exception:
                log.exception("restart %d of group %s failed", host_.restarts, host_.group.name)
                host_.alive = False
        else:
            return
        if {"world_model", "cost"} & set(host_.group.modules):  # actors elsewhere re-bind to the new endpoints
            others = [h for h in self._hosts.values() if h is not host_]
            try:
                self._bind(others)
            except Exception:
                log.exception("re-binding the actors to group %s failed", host_.group.name)
        self.between_cycles(self._back(host_, down_at, REFRESH_TRIES))

    def _back(self, host_: HostHandle, down_at: float, tries: int):
        modules, endpoints, restart = host_.group.modules, dict(host_.info["endpoints"]), host_.restarts

        def back() -> None:
            named = self.modules.named()
            try:
                for m in modules:
                    named[m].reconnect(endpoints[m])
                self.refresh(modules)  # settings again, activation, memory backlog: before anyone calls them
            except Exception:
                if tries > 1:
                    log.warning("group %s is back but did not take its settings; trying again", host_.group.name)
                    self.between_cycles(self._back(host_, down_at, tries - 1))
                else:  # it answers but does not work: restart it (counts as a restart)
                    log.error("group %s did not take its settings after a restart; restarting it again",
                              host_.group.name)
                    host_.kill()
                raise
            self.module_up(modules, f"restart {restart}")
            up_at = time.perf_counter()
            self.recoveries.append(Recovery(host_.group.name, modules, down_at, up_at, restart))
            self.note(f"recovered {','.join(modules)} in {up_at - down_at:.2f} s")

        return back

    # ---------------------------------------------------------------- shutdown

    def _shutdown_hosts(self) -> None:
        hosts = [h for h in self._hosts.values() if h.actor is not None]
        for h, ref in [(h, h.actor.close.remote()) for h in hosts]:
            try:
                ray.get(ref, timeout=10)
            except ray.exceptions.RayError as exc:  # a dead host has nothing left to close
                log.debug("group %s did not close cleanly: %s", h.group.name, exc)
            h.kill()
            h.alive = False

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
            for thread in [self._supervisor, *self._recovering.values()]:
                if thread.is_alive():
                    thread.join(timeout=5)
            shutil.rmtree(self._state_dir, ignore_errors=True)
