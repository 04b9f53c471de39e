"""Demonstrations for distillation: the Mode-2 planner's plans, recorded over seeded episodes.

Collection runs the Mode-2 agent as it is built from its config (runtime
local, lockstep, seeded episodes). A `PlanRecorder` takes the place of the
agent's actor: it passes every request on to the real actor and keeps the
last (state, plan) it answered; the episode's `on_cycle` hook keeps that pair
when the cycle acted on the plan, with the cycle's goal and the episode's
guardrails. The agent itself is not changed.

Two things widen the recorded states beyond the planner's own paths, where a
cloned policy would otherwise meet states it never saw (it drifts, then
stalls): with `noise > 0` the first action of each plan is perturbed before it
is sent (the label stays the clean plan; DART-style noise injection), and
`dagger_rounds` rounds of DAgger follow the first fit: the policy just fitted
drives (`PlanRecorder(acting=...)`) while the planner labels every state it
reaches, and the policy is fitted again on everything recorded. The safety
filter checks every sent action throughout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from amiagent.contracts import Actor, Cost, Plan, Settings, WorldModel
from amiagent.errors import ConfigError
from amiagent.learning.policy import Obstacles, PolicyConfig, features


@dataclass
class Demonstrations:
    """Recorded plans. `states` (N, D), `goals` (N, D) level 0's goal, `actions` (N, steps, A) each plan's
    first actions, `episode` (N,) index into `obstacles`, `seeds` and `statuses` (one per episode)."""

    states: torch.Tensor
    goals: torch.Tensor
    actions: torch.Tensor
    episode: torch.Tensor
    obstacles: list[Obstacles]
    seeds: list[int]
    statuses: list[str]
    action_low: torch.Tensor
    action_high: torch.Tensor

    def merge(self, other: Demonstrations) -> Demonstrations:
        """These and `other`'s records together (episode indices of `other` follow on)."""
        cat = torch.cat
        return Demonstrations(
            cat([self.states, other.states]), cat([self.goals, other.goals]), cat([self.actions, other.actions]),
            cat([self.episode, other.episode + len(self.obstacles)]), self.obstacles + other.obstacles,
            self.seeds + other.seeds, self.statuses + other.statuses, self.action_low, self.action_high)

    def features(self, cfg: PolicyConfig) -> torch.Tensor:
        """(N, F) policy features of every recorded state."""
        out = torch.empty(len(self.states), cfg.feature_dim)
        for e, obstacles in enumerate(self.obstacles):
            rows = (self.episode == e).nonzero().squeeze(1)
            if len(rows):
                out[rows] = features(self.states[rows], self.goals[rows], obstacles, cfg.zones, cfg.sense)
        return out


class PlanRecorder(Actor):
    """Stands in for the agent's actor: keeps the last (state, actions) the real actor planned.

    Without `acting` it answers with the real actor's plans, the first action
    perturbed when `noise` > 0 (Gaussian, a fraction of the half-range, clamped
    into bounds, drawn from a generator `reseed` restarts). With `acting` (a
    policy) it answers with that actor's plans instead: the planner only
    labels the states the policy reaches (DAgger).
    """

    def __init__(self, inner: Actor, noise: float = 0.0, acting: Actor | None = None):
        super().__init__()
        self.inner = inner
        self.noise = noise
        self.acting = acting
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None
        self._generator = torch.Generator().manual_seed(0)
        self._low = self._high = None

    def _actors(self) -> list[Actor]:
        return [self.inner] + ([self.acting] if self.acting is not None else [])

    def reseed(self, seed: int) -> None:
        """Restart the noise sequence (one seed per episode: episodes repeat)."""
        self._generator.manual_seed(seed)
        self.last = None

    def bind(self, world_model: WorldModel, cost: Cost) -> None:
        self._low, self._high = world_model.action_low, world_model.action_high
        for actor in self._actors():
            actor.bind(world_model, cost)

    def apply(self, settings: Settings) -> None:
        for actor in self._actors():
            actor.apply(settings)

    def reset(self) -> None:
        for actor in self._actors():
            actor.reset()

    def activate(self) -> None:
        super().activate()
        for actor in self._actors():
            actor.activate()

    def deactivate(self) -> None:
        super().deactivate()
        for actor in self._actors():
            actor.deactivate()

    def close(self) -> None:
        super().close()
        for actor in self._actors():
            actor.close()

    def act(self, state: torch.Tensor) -> Plan:
        plan = self.inner.act(state)
        self.last = (state.reshape(-1).detach().clone(), plan.actions.detach().clone())
        if self.acting is not None:
            return self.acting.act(state)
        if not self.noise:
            return plan
        half = (self._high - self._low) / 2
        noise = torch.randn(plan.actions.shape[1], generator=self._generator) * self.noise * half
        actions = plan.actions.clone()
        actions[0] = torch.maximum(torch.minimum(actions[0] + noise, self._high), self._low)
        return Plan(actions, plan.states, plan.cost, plan.info)


def collect_plans(agent_cfg: Mapping[str, Any], world_cfg: Mapping[str, Any], seeds: Sequence[int], steps: int,
                  noise: float = 0.0, policy: str | Path | None = None,
                  on_episode: Callable[[str], None] | None = None) -> Demonstrations:
    """Run one lockstep episode per seed and record the Mode-2 plan of every cycle that acted on a plan.

    `steps`: actions kept per plan. The planner drives (its first action
    perturbed by `noise`), or the policy checkpoint `policy` drives while the
    planner labels. `on_episode(status)` is called after each episode.
    """
    from amiagent import registry
    from amiagent.build import build_agent, build_world
    from amiagent.runtime.local import run_episode

    agent = build_agent(agent_cfg)
    world = build_world(world_cfg)
    states: list[torch.Tensor] = []
    goals: list[tuple[float, ...]] = []
    actions: list[torch.Tensor] = []
    episode_of: list[int] = []
    obstacles: list[Obstacles] = []
    statuses = []
    try:
        agent.loop = dataclasses.replace(agent.loop, lockstep=True)
        acting = None if policy is None else registry.create("actor", "policy", {"checkpoint": str(policy)})
        recorder = PlanRecorder(agent.modules.actor, noise, acting)
        recorder.bind(agent.modules.world_model, agent.modules.cost)
        agent.modules = dataclasses.replace(agent.modules, actor=recorder)
        wm = agent.modules.world_model
        for seed in seeds:
            recorder.reseed(seed)
            index = len(obstacles)

            def on_cycle(cycle, index=index) -> None:
                if index == len(obstacles):  # first cycle: the episode's settings are in place
                    _check_mode2(agent.settings, steps)
                    obstacles.append(Obstacles.from_guardrails(agent.settings.guardrails))
                last, recorder.last = recorder.last, None
                if cycle.source != "plan" or last is None:
                    return
                state, plan = last
                states.append(state)
                goals.append(cycle.goal)
                actions.append(plan[:steps])
                episode_of.append(index)

            episode = run_episode(agent, world, seed, on_cycle=on_cycle)
            if index == len(obstacles):  # no cycle ran (reached at once): nothing was recorded
                obstacles.append(Obstacles())
            statuses.append(episode.status)
            if on_episode is not None:
                on_episode(episode.status)
    finally:
        agent.close()
        world.close()
    if not states:
        raise ConfigError("distill: the episodes recorded no plans (did every episode end at once?)")
    return Demonstrations(
        states=torch.stack(states).float(), goals=torch.tensor(goals, dtype=torch.float32),
        actions=torch.stack(actions).float(), episode=torch.tensor(episode_of), obstacles=obstacles,
        seeds=list(seeds), statuses=statuses, action_low=wm.action_low.clone(), action_high=wm.action_high.clone(),
    )


def _check_mode2(settings: Settings, steps: int) -> None:
    if settings.mode != "mode2":
        raise ConfigError("distill records the Mode-2 planner: the agent's configurator must set mode: mode2, "
                          f"got {settings.mode!r}")
    if settings.horizon < steps:
        raise ConfigError(f"distill.steps ({steps}) exceeds the planning horizon ({settings.horizon}): "
                          "the policy can learn no more actions than a plan holds")
