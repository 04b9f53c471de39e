"""Actor `policy`: Mode 1 — a network distilled from Mode-2 plans (`amiagent distill`) acts in one pass.

No search: the network maps goal-relative, obstacle-aware features of the
state to its next actions. The plan it returns is still predicted by the
bound world model and scored by the bound cost, so its guardrail violations
show in telemetry like a Mode-2 plan's; every action it sends passes the
agent's safety filter all the same.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from amiagent.contracts import Actor, Cost, Plan, Settings, WorldModel
from amiagent.errors import ConfigError
from amiagent.learning.policy import Obstacles, load_policy
from amiagent.contracts.spaces import Box


class PolicyActor(Actor):
    """Acts with a distilled policy network. Deterministic; under a millisecond per plan on one thread.

    The network gives `steps` actions at a time; a longer horizon is filled by
    applying it again from the state the world model predicts at the end of
    each chunk, a shorter one takes the first actions.
    """

    @dataclass(frozen=True)
    class Params:
        checkpoint: str = ""
        """Path of a policy checkpoint written by `amiagent distill`."""

        def __post_init__(self) -> None:
            if not self.checkpoint:
                raise ConfigError("actor.policy: params.checkpoint is required (a file from `amiagent distill "
                                  "agent=navigator world=open_field out=models/mode1-open_field.pt`)")

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self.net, self.info = load_policy(self.params.checkpoint)
        self.horizon = 16
        self.world_model: WorldModel | None = None
        self.cost: Cost | None = None
        self._goal: torch.Tensor | None = None
        self._obstacles = Obstacles()

    def bind(self, world_model: WorldModel, cost: Cost) -> None:
        cfg = self.net.cfg
        if (world_model.state_dim, world_model.action_dim) != (cfg.state_dim, cfg.action_dim):
            raise ConfigError(f"actor.policy: {self.params.checkpoint} was distilled for states of {cfg.state_dim} "
                              f"and actions of {cfg.action_dim} values; this world model has "
                              f"{world_model.state_dim} and {world_model.action_dim}")
        self.world_model, self.cost = world_model, cost
        self._bounds = Box.of_actions(world_model)

    def apply(self, settings: Settings) -> None:
        self.horizon = settings.horizon
        self._goal = settings.goal_tensor()
        self._obstacles = Obstacles.from_guardrails(settings.guardrails)

    @torch.no_grad()
    def sequence(self, state: torch.Tensor) -> torch.Tensor:
        """`state` (1, D) -> (H, A) the policy's actions over the current horizon, within the model's bounds."""
        if self.world_model is None or self.cost is None:
            raise ConfigError("actor.policy: bind(world_model, cost) must be called before act()")
        if self._goal is None:
            raise ConfigError("actor.policy: apply(settings) must be called before act(): the goal and keep-out "
                              "zones come from the settings")
        current = state.reshape(1, -1).float()
        chunks, count = [], 0
        while count < self.horizon:
            chunk = self._bounds.clip(self.net.act(current, self._goal, self._obstacles)[0])
            chunks.append(chunk)
            count += chunk.shape[0]
            if count < self.horizon:  # the next chunk starts where this one is predicted to end
                current = self.world_model.rollout(current, chunk.unsqueeze(0))[:, -1]
        return torch.cat(chunks)[: self.horizon]

    @torch.no_grad()
    def act(self, state: torch.Tensor) -> Plan:
        started = time.perf_counter()
        actions = self.sequence(state)
        states = self.world_model.rollout(state.reshape(1, -1), actions.unsqueeze(0))
        report = self.cost.evaluate(states, actions.unsqueeze(0))
        chunk = self.net.cfg.steps  # the chunks after the first start from predicted states
        rolled = self.horizon + (math.ceil(self.horizon / chunk) - 1) * chunk
        info = {"plan_ms": (time.perf_counter() - started) * 1e3, "model_steps": float(rolled)}
        return Plan(actions, states[0], report, info)
