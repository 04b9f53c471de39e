"""Supervision of the Ray runtime's hosts: a dead or hung group is restarted and handed back to the agent.

A host's death (a crash, an os-level kill, its node lost) is heard at once
through its pending `watch` call. Its modules are marked down in the agent
(the cycle then stops the body, or uses the rest of the last valid plan, and
never calls them), and the host is started again after a backoff that doubles
with each restart, up to `max_restarts`; each dead host recovers on its own
thread. When it is back its modules get the agent's settings again and only
then are marked up; the short-term memory replays its journal.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ray

from amiagent.runtime.host import HostHandle

if TYPE_CHECKING:
    from amiagent.runtime.ray import RayModules

log = logging.getLogger(__name__)

UNANSWERED_LIMIT = 3
"""Calls in a row a module may leave unanswered before its group is taken for hung and restarted."""
REFRESH_TRIES = 5
"""Cycle boundaries at which a restarted group may fail to take its settings before it is restarted again."""


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


class Supervisor:
    """Watches the hosts of one `RayModules` on its own thread and restarts the groups that die or hang."""

    def __init__(self, handles: RayModules):
        self.handles = handles
        self.stop_event = threading.Event()
        self.recoveries: list[Recovery] = []
        """Every restart of a group so far, with how long its modules were away."""
        self.recovering: dict[str, threading.Thread] = {}
        self.restarting: set[str] = set()  # groups found dead whose modules are not yet handed back
        self.restarted = threading.Condition(handles.lock)
        self.thread = threading.Thread(target=self.run, name=f"amiagent-supervise-{handles.name}", daemon=True)

    def stop(self) -> None:
        """Stop watching and restarting; wait briefly for the threads."""
        self.stop_event.set()

    def join(self) -> None:
        """Wait (briefly) for the supervisor's threads once stopped."""
        for thread in [self.thread, *self.recovering.values()]:
            if thread.is_alive():
                thread.join(timeout=5)

    def run(self) -> None:
        """Watch every host until stopped (the supervisor thread)."""
        while not self.stop_event.is_set():
            with self.handles.lock:
                watching = {h.watch: h for h in self.handles.hosts.values() if h.watch is not None}
            if not watching:
                self.stop_event.wait(0.2)
                continue
            self._restart_hung()
            ready, _ = ray.wait(list(watching), num_returns=len(watching), timeout=0.5)
            dead = []
            for ref in ready:  # every host found dead is marked down at once, then each recovers alone
                host_ = watching[ref]
                try:
                    ray.get(ref)
                    with self.handles.lock:
                        host_.watch = None  # closed on purpose
                except ray.exceptions.RayError as exc:
                    if self.stop_event.is_set():
                        return
                    with self.handles.lock:
                        host_.watch, host_.alive = None, False
                        self.restarting.add(host_.group.name)
                    self.handles.agent.module_down(host_.group.modules, f"group {host_.group.name} died ({type(exc).__name__})")
                    log.warning("modules %s (group %s) died; restarting", ", ".join(host_.group.modules),
                                host_.group.name)
                    dead.append(host_)
            for host_ in dead:
                thread = threading.Thread(target=self._recover, args=(host_, time.perf_counter()),
                                          name=f"amiagent-recover-{host_.group.name}", daemon=True)
                self.recovering[host_.group.name] = thread
                thread.start()

    def _restart_hung(self) -> None:
        """A group whose module leaves UNANSWERED_LIMIT calls in a row unanswered is alive but hung: it
        is killed, and then recovers like any group that died."""
        down = self.handles.agent.down
        for name, module in self.handles.agent.modules.named().items():
            host_ = self.handles.host_of.get(name)
            if module.unanswered < UNANSWERED_LIMIT or name in down or host_ is None:  # a bus proxy
                continue
            module.unanswered = 0
            with self.handles.lock:
                if not host_.alive or host_.actor is None:
                    continue
                log.error("module %s left %d calls in a row unanswered: restarting group %s as hung", name,
                          UNANSWERED_LIMIT, host_.group.name)
                self.handles.agent.note(f"hung {name}: restarting group {host_.group.name}")
                ray.kill(host_.actor, no_restart=True)  # its watch now fails: the usual recovery follows

    def wait_restarts(self, timeout: float) -> bool:
        """Wait until no group found dead is still being restarted: each has been started again, its
        modules handed back to the cycle at the next cycle boundary, or has failed for good (`failure`).
        False if `timeout` seconds pass first.

        For drivers of lockstep episodes (tests, tools): called between cycles once a module is seen in
        `down`, the next cycle has it back, however long the restart took on this machine.
        """
        with self.restarted:
            return self.restarted.wait_for(lambda: not self.restarting, timeout)

    def _recover(self, host_: HostHandle, down_at: float) -> None:
        """Restart a dead group (with backoff), then hand its modules back to the cycle."""
        try:
            self._restart(host_, down_at)
        finally:
            with self.restarted:
                self.restarting.discard(host_.group.name)
                self.restarted.notify_all()

    def _restart(self, host_: HostHandle, down_at: float) -> None:
        policy = host_.group.supervision
        while not self.stop_event.is_set():
            if host_.restarts >= policy.max_restarts:
                self.handles.agent.fail(f"group {host_.group.name} died after {host_.restarts} restart(s) "
                          f"(runtime.supervision.max_restarts={policy.max_restarts})")
                log.error("group %s is gone for good: the body is stopped", host_.group.name)
                return
            host_.restarts += 1
            if self.stop_event.wait(policy.backoff(host_.restarts)):
                return
            try:
                with self.handles.lock:
                    if self.stop_event.is_set():  # closing: no new actor may outlive close()
                        return
                    host_.kill()
                    host_.start(self.handles.journal(host_.group), self.handles.torch_threads)
                host_.wait_ready(policy.start_timeout_s)
                self.handles.bind([host_])
                break
            except Exception:
                log.exception("restart %d of group %s failed", host_.restarts, host_.group.name)
                host_.alive = False
        else:
            return
        if {"world_model", "cost"} & set(host_.group.modules):  # actors elsewhere re-bind to the new endpoints
            others = [h for h in self.handles.hosts.values() if h is not host_]
            try:
                self.handles.bind(others)
            except Exception:
                log.exception("re-binding the actors to group %s failed", host_.group.name)
        self.handles.agent.between_cycles(self._back(host_, down_at, REFRESH_TRIES))

    def _back(self, host_: HostHandle, down_at: float, tries: int):
        modules, endpoints, restart = host_.group.modules, dict(host_.info["endpoints"]), host_.restarts

        def back() -> None:
            named = self.handles.agent.modules.named()
            try:
                for m in modules:
                    named[m].reconnect(endpoints[m])
                self.handles.agent.refresh(modules)  # settings again, activation, memory backlog: before anyone calls them
            except Exception:
                if tries > 1:
                    log.warning("group %s is back but did not take its settings; trying again", host_.group.name)
                    self.handles.agent.between_cycles(self._back(host_, down_at, tries - 1))
                else:  # it answers but does not work: restart it (counts as a restart)
                    log.error("group %s did not take its settings after a restart; restarting it again",
                              host_.group.name)
                    host_.kill()
                raise
            self.handles.agent.module_up(modules, f"restart {restart}")
            up_at = time.perf_counter()
            self.recoveries.append(Recovery(host_.group.name, modules, down_at, up_at, restart))
            self.handles.agent.note(f"recovered {','.join(modules)} in {up_at - down_at:.2f} s")

        return back
