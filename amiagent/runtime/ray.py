"""Modules hosted in Ray actors and served on the amiagent bus (groundwork of `runtime=ray`).

Ray places and supervises; ZeroMQ carries the data. `host(kind, spec)` starts a
Ray actor that builds the plugin from its (plain) config spec and serves it with
a `ModuleServer` on a tcp port the OS picks on the actor's node; the endpoint is
discovered through the actor, never configured. `HostedModule.proxy()` returns
a `RemoteWorldModel` / `RemoteCost` that planners use like a local module.

Still to come (issue 3): whole agents under `amiagent run runtime=ray`,
placement groups, supervision with restarts, hot swap, multi-node tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray

from amiagent.errors import AmiagentError, ConfigError
from amiagent.remote import RemoteCost, RemoteWorldModel

HOSTABLE = ("world_model", "cost")


@ray.remote(num_cpus=0)
class ModuleHost:
    """A Ray actor that builds one module and serves it on the bus."""

    def __init__(self, kind: str, spec: Mapping[str, Any]):
        from amiagent.build import build_cost, plugin
        from amiagent.remote import ModuleServer

        module = build_cost(spec) if kind == "cost" else plugin(kind, spec, f"agent.{kind}")
        address = ray.util.get_node_ip_address()
        self._server = ModuleServer(module, f"tcp://{address}:0").start()

    def endpoint(self) -> str:
        """Where the module is served."""
        return self._server.endpoint

    def close(self) -> None:
        """Stop serving and close the module."""
        self._server.close()
        self._server.module.close()


@dataclass
class HostedModule:
    """A module living in a Ray actor: its kind, the actor, and its bus endpoint."""

    kind: str
    actor: Any
    endpoint: str

    def proxy(self, timeout: float = 5.0) -> RemoteWorldModel | RemoteCost:
        """A local object implementing the module's contract over the bus."""
        if self.kind == "world_model":
            return RemoteWorldModel(self.endpoint, timeout=timeout)
        return RemoteCost(self.endpoint, timeout=timeout)

    def close(self) -> None:
        """Close the module and end its actor. Safe twice."""
        if self.actor is None:
            return
        try:
            ray.get(self.actor.close.remote(), timeout=10)
        finally:
            ray.kill(self.actor)
            self.actor = None


def host(kind: str, spec: Mapping[str, Any], *, num_cpus: float = 0.0, timeout: float = 60.0) -> HostedModule:
    """Start a Ray actor serving the module `kind` built from `spec`; needs `ray.init()` first.

    `num_cpus` defaults to 0: modules mostly wait on the bus, and six of them
    must fit on a two-core machine. `spec` must be plain containers (convert
    OmegaConf configs with `OmegaConf.to_container` before they cross into Ray).
    """
    if kind not in HOSTABLE:
        raise ConfigError(f"only {', '.join(HOSTABLE)} modules can be hosted in Ray actors so far, not {kind!r}")
    if not ray.is_initialized():
        raise ConfigError("ray.init() must be called (or a cluster joined) before hosting modules")
    actor = ModuleHost.options(num_cpus=num_cpus).remote(kind, dict(spec))
    try:
        endpoint = ray.get(actor.endpoint.remote(), timeout=timeout)
    except ray.exceptions.RayError as exc:
        ray.kill(actor)
        # the actor's own error (a PluginError naming the bad parameter, say) is in the text
        cause = str(exc).strip().splitlines()
        raise AmiagentError(f"the {kind} module did not start in its Ray actor: {cause[-1] if cause else exc}") from exc
    return HostedModule(kind, actor, endpoint)
