"""Control of a running agent from another process: `amiagent swap` and `amiagent agents`.

`amiagent run` serves a control endpoint on the bus (`runtime.control`) and
registers it under the agent's name: one JSON file per running agent in the
runtime directory (`$AMIAGENT_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/amiagent`,
else `<tmp>/amiagent-<uid>`); the file is removed when the run ends.

Requests (declared once, in `amiagent.contracts.declared.CONTROL`, from which the
server's dispatch and `RemoteControl` derive; validated like every bus message):

    swap {module, spec}   -> ok {module, plugin, applied}   hot-swap one module's plugin
    agent_status          -> ok {agent, pid, runtime, modules: {module: plugin}, down, cycles, placement?}
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from amiagent.bus import Server
from amiagent.bus.rpc import Proxy, dispatcher
from amiagent.contracts import Control
from amiagent.contracts.declared import CONTROL
from amiagent.errors import AmiagentError, BusError, ConfigError
from amiagent.messages import Message

SWAP_WAIT_S = 10.0
"""How long a swap request waits for the cycle boundary at which the new module takes over."""


def runtime_dir() -> Path:
    """Where running agents register their control endpoints."""
    if os.environ.get("AMIAGENT_RUNTIME_DIR"):
        return Path(os.environ["AMIAGENT_RUNTIME_DIR"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "amiagent"
    return Path(tempfile.gettempdir()) / f"amiagent-{os.getuid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_agents() -> dict[str, dict[str, Any]]:
    """Agent name -> its registration ({endpoint, pid, runtime, ...}); stale entries are removed."""
    found = {}
    folder = runtime_dir()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not _alive(int(entry.get("pid", -1))):
            path.unlink(missing_ok=True)  # its process is gone
            continue
        found[entry["agent"]] = entry
    return found


class ControlServer(Control):
    """Serves the control requests of one running agent and registers it by name.

    `swap(module, spec) -> (label, ticket)` queues a swap (the ticket is set
    when it took effect, with `error` set if it failed); `status() -> dict`
    describes the agent. A swap request waits for its module to be built (up
    to the runtime's start timeout) and then up to SWAP_WAIT_S for the cycle
    boundary.
    """

    def __init__(self, agent: str, endpoint: str, *, swap: Callable[[str, dict], tuple[str, threading.Event]],
                 status: Callable[[], dict[str, Any]], runtime: str):
        if agent in running_agents():
            raise ConfigError(f"an agent named {agent!r} is already running (see `amiagent agents`); "
                              "give this one another name (agent.name=...)")
        self.agent, self._queue_swap, self._describe = agent, swap, status
        self._answer = dispatcher(CONTROL, lambda: self)
        self._server = Server(endpoint, self._handle, workers=1, name="control").start()
        self.endpoint = self._server.endpoint
        folder = runtime_dir()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = folder / f"{agent}.json"
        self.path.write_text(json.dumps({"agent": agent, "endpoint": self.endpoint, "pid": os.getpid(),
                                         "runtime": runtime}))

    def _handle(self, msg: Message) -> tuple[str, Mapping[str, Any]]:
        try:
            return self._answer(msg)
        except AmiagentError as exc:  # the caller's mistake: an error reply, not a logged traceback
            return "error", {"kind": type(exc).__name__, "message": str(exc)}

    def status(self) -> dict[str, Any]:
        """What the agent runs."""
        return self._describe()

    def swap(self, module: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Queue the swap, and wait for the cycle boundary at which it takes over (up to SWAP_WAIT_S)."""
        if not isinstance(spec, Mapping):
            raise ConfigError("swap: spec must be a mapping {name, params}")
        label, done = self._queue_swap(module, dict(spec))
        applied = done.wait(SWAP_WAIT_S)
        if done.error:
            raise AmiagentError(f"the swap failed at the cycle boundary: {done.error}")
        return {"module": module, "plugin": label, "applied": applied}

    def close(self) -> None:
        """Stop serving and unregister. Safe twice."""
        self._server.close()
        self.path.unlink(missing_ok=True)


class RemoteControl(Proxy, Control, contract=CONTROL):
    """A running agent's control endpoint, as `Control`: `swap(module, spec)` and `status()`."""

    def request(self, kind: str, fields: Mapping[str, Any] | None = None, timeout: float | None = None) -> Message:
        """One raw request, for callers written before the declared methods (prefer `swap` and `status`)."""
        return self._client.request(kind, fields, timeout=timeout)


def connect(agent: str | None, endpoint: str | None = None, timeout: float = 180.0) -> RemoteControl:
    """A proxy to a running agent's control endpoint, by name (or only one running) or by endpoint."""
    if endpoint is None:
        agents = running_agents()
        if not agents:
            raise AmiagentError("no agent is running (start one with `amiagent run`; it registers by agent.name)")
        if agent is None:
            if len(agents) != 1:
                raise AmiagentError(f"name the agent to control; running: {', '.join(agents)}")
            agent = next(iter(agents))
        if agent not in agents:
            names = ", ".join(agents) or "none"
            raise AmiagentError(f"no running agent named {agent!r}; running: {names}")
        endpoint = agents[agent]["endpoint"]
    try:
        return RemoteControl(endpoint, timeout=timeout)
    except BusError as exc:
        raise AmiagentError(f"cannot reach the agent at {endpoint}: {exc}") from exc
