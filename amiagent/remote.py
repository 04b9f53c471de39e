"""Modules across processes: serve a world model or cost module on the bus, and call it through a proxy.

`ModuleServer(module, endpoint)` answers the module's contract as bus
requests; `RemoteWorldModel` and `RemoteCost` implement the same contracts on
the calling side, so a planner cannot tell a remote module from a local one.
This is the data plane the Ray runtime places modules on.

Requests (all tensors float32, validated on receipt like every bus message):

    model_info                           -> model_info_reply {state_dim, action_dim, dt, action_low, action_high}
    rollout {states (B|1, D), actions (B, H, A)}   -> states {states (B, H, D)}
    brake {states (B, D)}                -> actions {actions (B, A)}
    evaluate {states (B, H, D), actions (B, H, A)} -> cost_report {total, terms, names, violation}
    settings {...}                       -> ok        (the module's apply)
    activate / deactivate                -> ok

Shapes are checked against the module before it is called: a request that does
not fit gets an error reply naming the mismatch, and the module never sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from amiagent.bus import Client, Server
from amiagent.contracts import Cost, CostReport, Module, Settings, WorldModel
from amiagent.errors import ConfigError, ContractError
from amiagent.messages import (
    Array,
    Int,
    ListOf,
    Message,
    Number,
    Schema,
    Str,
    register_schema,
    settings_from_message,
    settings_to_fields,
)

_F32 = frozenset({"float32"})
_MAX = 1 << 22  # elements per tensor: 4 M floats, 16 MiB

for _schema in (
    Schema("model_info", {}, "Ask a world model for its dimensions and bounds."),
    Schema("model_info_reply", {
        "state_dim": Int(min=1),
        "action_dim": Int(min=1),
        "dt": Number(),
        "action_low": Array(_F32, (None,), finite=True),
        "action_high": Array(_F32, (None,), finite=True),
    }, "A world model's dimensions, step (s) and action bounds."),
    Schema("rollout", {
        "states": Array(_F32, (None, None), finite=True, max_elements=_MAX),
        "actions": Array(_F32, (None, None, None), finite=True, max_elements=_MAX),
    }, "WorldModel.rollout: states (B or 1, D), actions (B, H, A)."),
    Schema("states", {"states": Array(_F32, (None, None, None), max_elements=_MAX)}, "Predicted (B, H, D)."),
    Schema("brake", {"states": Array(_F32, (None, None), finite=True, max_elements=_MAX)}, "WorldModel.brake_action."),
    Schema("actions", {"actions": Array(_F32, (None, None), max_elements=_MAX)}, "Actions (B, A)."),
    Schema("evaluate", {
        "states": Array(_F32, (None, None, None), finite=True, max_elements=_MAX),
        "actions": Array(_F32, (None, None, None), finite=True, max_elements=_MAX),
    }, "Cost.evaluate: states (B, H, D), actions (B, H, A)."),
    Schema("cost_report", {
        "total": Array(_F32, (None,), max_elements=_MAX),
        "terms": Array(_F32, (None, None), max_elements=_MAX),
        "names": ListOf(Str(max_len=256), max_len=1024),
        "violation": Array(_F32, (None, None), max_elements=_MAX),
    }, "A CostReport."),
    Schema("activate", {}, "Module.activate."),
    Schema("deactivate", {}, "Module.deactivate."),
):
    register_schema(_schema, replace=True)


def _tensor(msg: Message, name: str) -> torch.Tensor:
    # received arrays are read-only views of the frame: copy into a tensor torch may own
    return torch.from_numpy(np.array(msg[name]))


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


class ModuleServer:
    """Serves a WorldModel or Cost module on `endpoint` until closed.

    `inline=True` runs calls on the socket thread (the fastest; calls are then
    serialised, which modules that are not thread-safe need anyway).
    """

    def __init__(self, module: Module, endpoint: str, *, inline: bool = True):
        if not isinstance(module, (WorldModel, Cost)):
            raise ConfigError(f"ModuleServer serves world models and cost modules, not {type(module).__name__}")
        self.module = module
        self._server = Server(endpoint, self._handle, workers=0 if inline else 2, inline=inline,
                              name=f"module-{module.kind}")

    @property
    def endpoint(self) -> str:
        return self._server.endpoint

    def start(self) -> ModuleServer:
        self._server.start()
        return self

    def close(self) -> None:
        """Stop serving. Safe twice; the module itself is not closed."""
        self._server.close()

    def __enter__(self) -> ModuleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handle(self, msg: Message) -> tuple[str, Mapping[str, Any] | None]:
        module = self.module
        if msg.kind == "settings":
            module.apply(settings_from_message(msg))
            return "ok", None
        if msg.kind in ("activate", "deactivate"):
            getattr(module, msg.kind)()
            return "ok", None
        if isinstance(module, WorldModel):
            return self._world_model(module, msg)
        return self._cost(module, msg)

    def _world_model(self, wm: WorldModel, msg: Message) -> tuple[str, Mapping[str, Any]]:
        if msg.kind == "model_info":
            return "model_info_reply", {"state_dim": wm.state_dim, "action_dim": wm.action_dim, "dt": float(wm.dt),
                                        "action_low": _array(wm.action_low), "action_high": _array(wm.action_high)}
        if msg.kind == "rollout":
            states, actions = _tensor(msg, "states"), _tensor(msg, "actions")
            if states.shape[1] != wm.state_dim or actions.shape[2] != wm.action_dim or \
                    states.shape[0] not in (1, actions.shape[0]):
                raise ContractError(f"rollout: states {tuple(states.shape)} and actions {tuple(actions.shape)} do not "
                                    f"fit (B or 1, {wm.state_dim}) and (B, H, {wm.action_dim})")
            return "states", {"states": _array(wm.rollout(states, actions))}
        if msg.kind == "brake":
            states = _tensor(msg, "states")
            if states.shape[1] != wm.state_dim:
                raise ContractError(f"brake: states {tuple(states.shape)} do not fit (B, {wm.state_dim})")
            return "actions", {"actions": _array(wm.brake_action(states))}
        raise ContractError(f"a world model does not answer {msg.kind!r}")

    def _cost(self, cost: Cost, msg: Message) -> tuple[str, Mapping[str, Any]]:
        if msg.kind != "evaluate":
            raise ContractError(f"a cost module does not answer {msg.kind!r}")
        states, actions = _tensor(msg, "states"), _tensor(msg, "actions")
        if states.shape[:2] != actions.shape[:2]:
            raise ContractError(f"evaluate: states {tuple(states.shape)} and actions {tuple(actions.shape)} must "
                                "share (B, H)")
        report = cost.evaluate(states, actions)
        return "cost_report", {"total": _array(report.total), "terms": _array(report.terms),
                               "names": list(report.names), "violation": _array(report.violation)}


class _Proxy:
    """The lifecycle of a proxied module: every call is forwarded to the served module.

    Mixed in before the contract class, so these methods take precedence over
    the contract's no-op defaults.
    """

    def _connect(self, endpoint: str, timeout: float) -> None:
        self._client = Client(endpoint, timeout=timeout)

    def _call(self, kind: str, fields: Mapping[str, Any] | None = None, expect: str = "ok") -> Message:
        return self._client.request(kind, fields, expect=expect)

    def apply(self, settings: Settings) -> None:
        self._call("settings", settings_to_fields(settings))

    def activate(self) -> None:
        super().activate()
        self._call("activate")

    def deactivate(self) -> None:
        super().deactivate()
        self._call("deactivate")

    def close(self) -> None:
        super().close()
        self._client.close()


class RemoteWorldModel(_Proxy, WorldModel):
    """A WorldModel served by a ModuleServer at `endpoint`."""

    def __init__(self, endpoint: str, *, timeout: float = 1.0):
        WorldModel.__init__(self)
        self._connect(endpoint, timeout)
        info = self._call("model_info", expect="model_info_reply")
        self.state_dim, self.action_dim, self.dt = info["state_dim"], info["action_dim"], info["dt"]
        self.action_low, self.action_high = _tensor(info, "action_low"), _tensor(info, "action_high")

    def rollout(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        reply = self._call("rollout", {"states": _array(states), "actions": _array(actions)}, expect="states")
        return _tensor(reply, "states")

    def brake_action(self, states: torch.Tensor) -> torch.Tensor:
        return _tensor(self._call("brake", {"states": _array(states)}, expect="actions"), "actions")


class RemoteCost(_Proxy, Cost):
    """A cost module served by a ModuleServer at `endpoint`."""

    def __init__(self, endpoint: str, *, timeout: float = 1.0):
        Cost.__init__(self)
        self._connect(endpoint, timeout)

    def evaluate(self, states: torch.Tensor, actions: torch.Tensor) -> CostReport:
        reply = self._call("evaluate", {"states": _array(states), "actions": _array(actions)}, expect="cost_report")
        return CostReport(_tensor(reply, "total"), _tensor(reply, "terms"), tuple(reply["names"]),
                          _tensor(reply, "violation"))
