"""Actor `mpc`: Mode 2 — plans by minimising cost through the world model (CEM or MPPI)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from amiagent.contracts import Actor, Cost, Plan, Settings, WorldModel
from amiagent.errors import ConfigError
from amiagent.planning import CEMConfig, MPPIConfig, best_start, cem, mppi, warm_start
from amiagent.contracts.spaces import Box


class MPCActor(Actor):
    """Receding-horizon planner, warm-started from the shifted previous plan.

    With `proposal` (a Mode-1 policy checkpoint) the policy's action sequence
    from the current state is a second warm start: the search begins from
    whichever of the two the cost ranks first.
    """

    @dataclass(frozen=True)
    class Params:
        optimizer: str = "cem"
        """"cem" or "mppi"."""
        samples: int = 300
        iterations: int = 10
        elites: int = 30
        temperature: float = 0.5
        init_std: float = 0.5
        """Initial sampling std, as a fraction of the action half-range."""
        min_std: float = 0.05
        seed: int = 0
        warm_start: bool = True
        proposal: str = ""
        """Checkpoint of a Mode-1 policy (`amiagent distill`) proposing each plan's initial mean; "": none."""

        def __post_init__(self) -> None:
            if self.optimizer not in ("cem", "mppi"):
                raise ConfigError(f"optimizer must be 'cem' or 'mppi', got {self.optimizer!r}")
            if self.init_std <= 0:
                raise ConfigError(f"init_std must be > 0, got {self.init_std}")
            self.optimizer_config()  # sizes are checked at load time, not at the first plan

        def optimizer_config(self) -> CEMConfig | MPPIConfig:
            if self.optimizer == "cem":
                return CEMConfig(self.samples, self.iterations, self.elites, self.min_std)
            return MPPIConfig(self.samples, self.iterations, self.temperature, self.min_std)

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        p = self.params
        self._config = p.optimizer_config()
        self._optimise = cem if p.optimizer == "cem" else mppi
        self.horizon = 16
        self._generator = torch.Generator().manual_seed(p.seed)
        self._previous: torch.Tensor | None = None
        self.world_model: WorldModel | None = None
        self.cost: Cost | None = None
        self._proposer = None
        if p.proposal:
            from amiagent.plugins.actor.policy import PolicyActor

            self._proposer = PolicyActor(PolicyActor.Params(checkpoint=p.proposal))

    def bind(self, world_model: WorldModel, cost: Cost) -> None:
        self.world_model, self.cost = world_model, cost
        self._bounds = Box.of_actions(world_model)
        if self._proposer is not None:
            self._proposer.bind(world_model, cost)

    def apply(self, settings: Settings) -> None:
        if settings.horizon != self.horizon:
            self._previous = None
        self.horizon = settings.horizon
        if self._proposer is not None:
            self._proposer.apply(settings)

    def reset(self) -> None:
        self._previous = None
        self._generator.manual_seed(self.params.seed)

    def act(self, state: torch.Tensor) -> Plan:
        if self.world_model is None or self.cost is None:
            raise ConfigError("actor.mpc: bind(world_model, cost) must be called before act()")
        started = time.perf_counter()
        start = state.reshape(1, -1)

        def evaluate(actions: torch.Tensor):
            states = self.world_model.rollout(start, actions)
            return states, self.cost.evaluate(states, actions)

        previous = self._previous if self.params.warm_start else None
        mean = warm_start(previous, self.horizon, self._bounds)
        if self._proposer is not None:
            mean = best_start(evaluate, [mean, self._proposer.sequence(start)], self._bounds)
        std = (self.params.init_std * self._bounds.half_range).expand_as(mean).clone()
        result = self._optimise(evaluate, mean, std, self._bounds, self._config, self._generator)
        self._previous = result.actions
        info = {"plan_ms": (time.perf_counter() - started) * 1e3,
                "model_steps": float((self._config.samples * self._config.iterations
                                      + 2 * (self._proposer is not None)) * self.horizon)}
        return Plan(result.actions, result.states, result.report, info)
