"""Per-cycle telemetry on the bus: every agent cycle as a `telemetry` message.

Subscribe with `amiagent.bus.Subscriber(endpoint, ["telemetry/"])`; the topic is
`telemetry/<agent name>` and the values are plain finite numbers (names below).
`events`, when present, says what changed before the cycle: a module down or
back after a restart, a hot swap ("swap world_model: point_mass {...}").
"""

from __future__ import annotations

import math

from amiagent.agent import Cycle
from amiagent.bus import Publisher

STATE_NAMES = ("x", "y", "vx", "vy")


def cycle_values(cycle: Cycle) -> dict[str, float]:
    """The cycle's figures as a flat name -> finite number map.

    `state.<i>` / `action.<i>` (or x, y, vx, vy for a four-element state),
    `plan_ms`, `cycle_ms`, `cost`, `predicted_violation` when known,
    `filtered`, `missed_deadline` and `checked` (the safety filter passed the action) as 0/1, and `source.<name>` = 1.
    """
    names = STATE_NAMES if len(cycle.state) == len(STATE_NAMES) else [f"state.{i}" for i in range(len(cycle.state))]
    values = {f"state.{n}" if len(n) <= 2 else n: v for n, v in zip(names, cycle.state)}
    values.update({f"action.{i}": v for i, v in enumerate(cycle.action)})
    for name in ("plan_ms", "cycle_ms", "cost", "predicted_violation"):
        value = getattr(cycle, name)
        if math.isfinite(value):
            values[name] = value
    values["filtered"] = float(cycle.filtered)
    values["missed_deadline"] = float(cycle.missed_deadline)
    values["checked"] = float(cycle.checked)
    values[f"source.{cycle.source}"] = 1.0
    return values


class TelemetryPublisher:
    """Publishes cycles of agent `agent` on a PUB socket bound to `endpoint`."""

    def __init__(self, endpoint: str, agent: str):
        self.topic = f"telemetry/{agent}"
        self._publisher = Publisher(endpoint)
        self.endpoint = self._publisher.endpoint

    def __call__(self, cycle: Cycle) -> None:
        fields = {"cycle": cycle.index, "t": cycle.t, "values": cycle_values(cycle)}
        if cycle.events:
            fields["events"] = list(cycle.events)
        self._publisher.publish(self.topic, "telemetry", fields)

    def close(self) -> None:
        """Close the socket. Safe twice."""
        self._publisher.close()
