"""Configurator `static`: the same weights and horizon for every task."""

from __future__ import annotations

from dataclasses import dataclass, field

from amiagent.contracts import Configurator, Settings, Task
from amiagent.errors import ConfigError


class StaticConfigurator(Configurator):
    """Builds Settings from a task: the task's goal and constraints, fixed weights and horizon.

    Guardrail parameters come from the task (the world's zones and limits);
    `guardrails` in the params are merged over them (e.g. a tighter speed limit).
    """

    @dataclass(frozen=True)
    class Params:
        horizon: int = 16
        weights: dict = field(default_factory=dict)
        guardrails: dict = field(default_factory=dict)
        mode: str = "mode2"
        state_dim: int = 4
        """The goal state is the task goal padded with zeros (at rest) to this length."""

        def __post_init__(self) -> None:
            if self.horizon < 1:
                raise ConfigError(f"configurator.static: horizon must be >= 1, got {self.horizon}")

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self._version = 0

    def configure(self, task: Task) -> Settings:
        goal = tuple(float(g) for g in task.goal)
        if len(goal) > self.params.state_dim:
            raise ConfigError(f"task goal has {len(goal)} values but state_dim is {self.params.state_dim}")
        goal = goal + (0.0,) * (self.params.state_dim - len(goal))
        guardrails = {name: dict(values) for name, values in task.constraints.items()}
        for name, values in self.params.guardrails.items():
            guardrails.setdefault(name, {}).update(values)
        self._version += 1
        return Settings(
            goal=goal,
            horizon=self.params.horizon,
            weights=dict(self.params.weights),
            guardrails=guardrails,
            mode=self.params.mode,
            version=self._version,
        )
