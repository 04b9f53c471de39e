"""Per-cycle telemetry crosses a real ZeroMQ PUB/SUB pair as validated msgpack."""

from __future__ import annotations

import math
import time

from amiagent.agent import Cycle
from amiagent.bus import Subscriber
from amiagent.bus.telemetry import TelemetryPublisher, cycle_values


def _cycle(index, plan_ms=3.5):
    return Cycle(index=index, t=0.1 * index, state=(1.0, 2.0, 0.5, 0.0), action=(0.3, -0.2), source="plan",
                 filtered=False, missed_deadline=False, plan_ms=plan_ms, cycle_ms=5.0, cost=12.0,
                 predicted_violation=0.0)


def test_cycle_values_skip_unknown_figures():
    values = cycle_values(_cycle(0, plan_ms=math.nan))
    assert "plan_ms" not in values
    assert values["state.x"] == 1.0 and values["action.1"] == -0.2 and values["source.plan"] == 1.0


def test_cycles_arrive_on_a_subscriber():
    publisher = TelemetryPublisher("tcp://127.0.0.1:*", "navigator")
    subscriber = Subscriber(publisher.endpoint, ["telemetry/"])
    try:
        received = None
        # PUB drops until the SUB has joined (milliseconds here); 60 s only turns a subscription that never
        # joins into a failure
        deadline = time.monotonic() + 60
        while received is None and time.monotonic() < deadline:
            publisher(_cycle(7))
            received = subscriber.recv(timeout=0.05)
        assert received is not None
        topic, message = received
        assert topic == "telemetry/navigator" and message.kind == "telemetry"
        assert message["cycle"] == 7 and message["values"]["plan_ms"] == 3.5
    finally:
        subscriber.close()
        publisher.close()
        publisher.close()
