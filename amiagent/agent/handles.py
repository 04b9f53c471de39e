"""Where an agent's modules come from: runtimes supply module handles; the agent is the same object.

`InProcess` builds every module in this process. A runtime that places them
elsewhere (`amiagent.runtime.ray.RayModules`: supervised Ray actors) hands the
agent proxies that speak the same contracts, and supervises them through the
agent's `health` (modules down, back, or gone for good).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from amiagent.agent.options import MODULE_NAMES, LoopConfig, Modules

if TYPE_CHECKING:
    from amiagent.agent.core import Agent
    from amiagent.agent.swap import SwapTicket


@runtime_checkable
class ModuleHandles(Protocol):
    """What a runtime provides to an agent. Every method is called on the agent's (cycle) thread."""

    in_process: bool
    """The modules are plain objects in this process (then a module instance may be swapped in directly)."""
    recoveries: list
    """Restarts of modules that went down, so far (`amiagent.runtime.supervisor.Recovery`); none in process."""

    def modules(self, agent_cfg: Mapping[str, Any], loop: LoopConfig) -> Modules:
        """The agent's module handles, from the `agent` section of a config (already checked)."""

    def attach(self, agent: Agent) -> None:
        """The agent is built: from now on the runtime may report on its modules through it."""

    def loop_changed(self, loop: LoopConfig) -> None:
        """The cycle's timing changed (e.g. lockstep for an evaluation)."""

    def before_start(self, agent: Agent) -> None:
        """Called as a task starts: wait (within limits) until every module answers."""

    def swap_plugin(self, agent: Agent, name: str, spec: Mapping[str, Any]) -> SwapTicket:
        """Replace module `name` by one built from its spec merged with `spec`, at the next cycle boundary."""

    def detach(self) -> None:
        """The agent is closing: stop reporting on it (supervision ends; nothing is restarted any more)."""

    def close(self) -> None:
        """After the agent closed its modules: release what the runtime holds. Safe twice."""


class InProcess:
    """Every module built and called in this process (the `local` runtime, and the default)."""

    in_process = True

    def __init__(self) -> None:
        self.recoveries: list = []  # modules in this process go down only with it

    def modules(self, agent_cfg: Mapping[str, Any], loop: LoopConfig) -> Modules:
        from amiagent.build import build_module

        built: dict[str, Any] = {}
        try:
            for name in MODULE_NAMES:
                if agent_cfg.get(name):
                    built[name] = build_module(name, agent_cfg[name])
        except BaseException:
            for module in built.values():
                module.close()
            raise
        return Modules(**built)

    def attach(self, agent: Agent) -> None:
        pass

    def loop_changed(self, loop: LoopConfig) -> None:
        pass

    def before_start(self, agent: Agent) -> None:
        pass

    def swap_plugin(self, agent: Agent, name: str, spec: Mapping[str, Any]) -> SwapTicket:
        return agent.swapper.swap_plugin(name, spec)

    def detach(self) -> None:
        pass

    def close(self) -> None:
        pass
