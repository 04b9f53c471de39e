"""Converters between the contract dataclasses and message fields."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from amiagent.errors import ConfigError, MessageError

from amiagent.messages.envelope import Message

if TYPE_CHECKING:  # contracts imports torch; the wire layer stays light
    from amiagent.contracts import Observation, Settings, Task


def observation_to_fields(obs: Observation) -> dict[str, Any]:
    """Fields of an `observation` message; `state` is sent as float64."""
    fields: dict[str, Any] = {"t": float(obs.t), "state": np.ascontiguousarray(obs.state, dtype=np.float64)}
    if obs.images:
        fields["images"] = dict(obs.images)
    return fields


def observation_from_message(msg: Message) -> Observation:
    """The Observation carried by an `observation` message (arrays read-only)."""
    from amiagent.contracts import Observation

    _expect_kind(msg, "observation")
    return Observation(t=float(msg["t"]), state=msg["state"], images=dict(msg.get("images", {})))


def task_to_fields(task: Task) -> dict[str, Any]:
    """Fields of a `task` message (with the goal observation, when the task has one)."""
    fields = {
        "name": task.name,
        "goal": list(task.goal),
        "constraints": task.constraints,
        "goal_tolerance": task.goal_tolerance,
        "max_steps": task.max_steps,
    }
    if task.goal_observation is not None:
        fields["goal_observation"] = observation_to_fields(task.goal_observation)
    return fields


def task_from_message(msg: Message) -> Task:
    """The Task carried by a `task` message; MessageError if its values are invalid."""
    from amiagent.contracts import Task

    _expect_kind(msg, "task")
    seen = msg.get("goal_observation")  # checked by the schema as strictly as an observation message
    goal_observation = None if seen is None else observation_from_message(Message("observation", seen))
    return _build(Task, "task", name=msg["name"], goal=tuple(msg["goal"]), constraints=msg["constraints"],
                  goal_tolerance=msg["goal_tolerance"], max_steps=msg["max_steps"], goal_observation=goal_observation)


def settings_to_fields(settings: Settings) -> dict[str, Any]:
    """Fields of a `settings` message."""
    return {
        "goal": list(settings.goal),
        "horizon": settings.horizon,
        "weights": settings.weights,
        "guardrails": settings.guardrails,
        "mode": settings.mode,
        "version": settings.version,
    }


def settings_from_message(msg: Message) -> Settings:
    """The Settings carried by a `settings` message; MessageError if its values are invalid."""
    from amiagent.contracts import Settings

    _expect_kind(msg, "settings")
    return _build(Settings, "settings", goal=tuple(msg["goal"]), horizon=msg["horizon"], weights=msg["weights"],
                  guardrails=msg["guardrails"], mode=msg["mode"], version=msg["version"])


def _expect_kind(msg: Message, kind: str) -> None:
    if msg.kind != kind:
        raise MessageError(f"expected a {kind!r} message, got {msg.kind!r}")


def _build(cls: type, kind: str, **kwargs: Any) -> Any:
    try:
        return cls(**kwargs)
    except ConfigError as e:  # well-formed on the wire but invalid as a value
        raise MessageError(f"message {kind!r}: {e}") from e
