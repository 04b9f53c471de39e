"""Contract checkers: run `check_<kind>(plugin)` on your own plugin before you ship it.

Each checker drives the plugin through its contract with seeded inputs and
raises ContractError naming the first broken promise and its likely fix:
output shapes and dtypes, finite values, determinism under a seed, action
bounds, and `close()` being safe twice. `check(kind, plugin)` dispatches.

The default inputs are a point robot's (4-value states, planar zones). A
plugin made for another body says what it takes by defining
`example_settings()` (cost terms, guardrails: settings whose goal has the
state's length) or `example_observation()` (perception); the checkers use
them when no input is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from amiagent.contracts import (
    Actor,
    Configurator,
    Cost,
    CostReport,
    CostTerm,
    Critic,
    Guardrail,
    Memory,
    MemoryRecord,
    Observation,
    Perception,
    Plan,
    Settings,
    Task,
    World,
    WorldModel,
)
from amiagent.errors import ContractError

BATCH, HORIZON = 5, 7


def sample_settings(state_dim: int = 4, horizon: int = HORIZON) -> Settings:
    """Settings with a goal, a keep-out circle and box, a speed limit and bounds, for checking."""
    goal = (1.0, -0.5) + (0.0,) * (state_dim - 2)
    return Settings(
        goal=goal[:state_dim],
        horizon=horizon,
        guardrails={
            "keep_out": {"circles": [[0.5, 0.5, 0.3]], "boxes": [[-0.5, -0.5, 0.2, 0.3]], "robot_radius": 0.1},
            "speed_limit": {"limit": 1.0},
            "workspace_bounds": {"low": [-2.0, -2.0], "high": [2.0, 2.0], "robot_radius": 0.1},
        },
    )


def _fail(plugin: object, message: str) -> ContractError:
    return ContractError(f"{type(plugin).__name__}: {message}")


def _expect_tensor(plugin: object, what: str, value: object, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise _fail(plugin, f"{what} must be a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise _fail(plugin, f"{what} must have shape {shape}, got {tuple(value.shape)}; check the batch and horizon axes")
    if value.dtype != torch.float32:
        raise _fail(plugin, f"{what} must be float32, got {value.dtype}; convert with .float()")
    if not bool(torch.isfinite(value).all()):
        raise _fail(plugin, f"{what} holds NaN or inf for finite inputs")
    return value


def _check_close_twice(plugin) -> None:
    try:
        plugin.close()
        plugin.close()
    except Exception as exc:
        raise _fail(plugin, f"close() must be safe to call twice, the second call raised {exc!r}") from exc


def _random_states(dim: int, generator: torch.Generator, batch: int = BATCH) -> torch.Tensor:
    return torch.randn(batch, dim, generator=generator)


def check_world_model(wm: WorldModel, seed: int = 0) -> None:
    """Shapes, dtypes, bounds, determinism, (1, D) broadcasting and brake_action of a world model."""
    d, a = wm.state_dim, wm.action_dim
    if not (isinstance(d, int) and d > 0 and isinstance(a, int) and a > 0):
        raise _fail(wm, f"state_dim and action_dim must be positive ints, got {d!r}, {a!r}")
    low = _expect_tensor(wm, "action_low", wm.action_low, (a,))
    high = _expect_tensor(wm, "action_high", wm.action_high, (a,))
    if not bool((low < high).all()):
        raise _fail(wm, "action_low must be below action_high on every axis")
    g = torch.Generator().manual_seed(seed)
    states = _random_states(d, g)
    actions = low + (high - low) * torch.rand(BATCH, HORIZON, a, generator=g)
    out = _expect_tensor(wm, "rollout(states, actions)", wm.rollout(states, actions), (BATCH, HORIZON, d))
    again = wm.rollout(states.clone(), actions.clone())
    if not torch.equal(out, again):
        raise _fail(wm, "rollout is not deterministic: the same inputs gave different outputs")
    shared = wm.rollout(states[:1], actions)
    expanded = wm.rollout(states[:1].expand(BATCH, -1), actions)
    if not torch.allclose(shared, expanded, atol=1e-5):
        raise _fail(wm, "rollout with states of shape (1, D) must equal the rollout with the state repeated B times")
    brake = _expect_tensor(wm, "brake_action(states)", wm.brake_action(states), (BATCH, a))
    if not wm.action_space.contains(brake):
        raise _fail(wm, "brake_action leaves the action bounds")
    _check_close_twice(wm)


@runtime_checkable
class ShowsObservation(Protocol):
    """A perception that gives the checker an observation it can encode (the default is a 4-value state)."""

    def example_observation(self) -> Observation: ...


@runtime_checkable
class ShowsSettings(Protocol):
    """A cost term or guardrail that gives the checker settings it can apply (the default: `sample_settings`)."""

    def example_settings(self) -> Settings: ...


def check_perception(perception: Perception, obs: Observation | None = None) -> None:
    """encode() gives (1, D) for one observation and (B, D) for B, float32, finite, deterministic."""
    if obs is None:
        obs = perception.example_observation() if isinstance(perception, ShowsObservation) else \
            Observation(t=0.0, state=np.array([0.1, -0.2, 0.3, 0.0]))
    one = perception.encode(obs)
    d = perception.state_dim
    _expect_tensor(perception, "encode(obs)", one, (1, d))
    many = _expect_tensor(perception, "encode([obs] * 3)", perception.encode([obs] * 3), (3, d))
    if not torch.equal(many[0], one[0]) or not torch.equal(perception.encode(obs), one):
        raise _fail(perception, "encode is not deterministic for the same observation")
    _check_close_twice(perception)


def _check_per_step(plugin, fn: Callable, name: str, seed: int, settings: Settings | None) -> torch.Tensor:
    settings = settings or (plugin.example_settings() if isinstance(plugin, ShowsSettings) else sample_settings())
    plugin.apply(settings)
    g = torch.Generator().manual_seed(seed)
    d = len(settings.goal)
    states = torch.randn(BATCH, HORIZON, d, generator=g) * 1.5
    actions = torch.randn(BATCH, HORIZON, 2, generator=g)
    out = _expect_tensor(plugin, f"{name}(states, actions)", fn(states, actions), (BATCH, HORIZON))
    if not torch.equal(out, fn(states, actions)):
        raise _fail(plugin, f"{name} is not deterministic")
    return out


def check_cost_term(term: CostTerm, seed: int = 0, settings: Settings | None = None) -> None:
    """evaluate() gives a finite (B, H) cost per step, deterministically."""
    _check_per_step(term, term.evaluate, "evaluate", seed, settings)
    _check_close_twice(term)


def check_guardrail(guardrail: Guardrail, seed: int = 0, settings: Settings | None = None) -> None:
    """violation() gives a finite (B, H) amount >= 0, deterministically."""
    out = _check_per_step(guardrail, guardrail.violation, "violation", seed, settings)
    if bool((out < 0).any()):
        raise _fail(guardrail, "violation must be >= 0 (0 means safe); clamp with torch.relu")
    _check_close_twice(guardrail)


def check_critic(critic: Critic, state_dim: int = 4, seed: int = 0) -> None:
    """value() gives a finite (B,) estimate per state, deterministically."""
    states = _random_states(state_dim, torch.Generator().manual_seed(seed))
    out = _expect_tensor(critic, "value(states)", critic.value(states), (BATCH,))
    if not torch.equal(out, critic.value(states.clone())):
        raise _fail(critic, "value is not deterministic")
    _check_close_twice(critic)


def check_cost(cost: Cost, seed: int = 0, settings: Settings | None = None) -> None:
    """evaluate() gives a CostReport: total (B,), terms (B, T) named, violation (B, H) >= 0."""
    settings = settings or sample_settings()
    cost.apply(settings)
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(BATCH, HORIZON, len(settings.goal), generator=g) * 1.5
    actions = torch.randn(BATCH, HORIZON, 2, generator=g)
    report = cost.evaluate(states, actions)
    if not isinstance(report, CostReport):
        raise _fail(cost, f"evaluate must return a CostReport, got {type(report).__name__}")
    _expect_tensor(cost, "report.total", report.total, (BATCH,))
    _expect_tensor(cost, "report.terms", report.terms, (BATCH, len(report.names)))
    violation = _expect_tensor(cost, "report.violation", report.violation, (BATCH, HORIZON))
    if bool((violation < 0).any()):
        raise _fail(cost, "report.violation must be >= 0")
    _check_close_twice(cost)


def check_memory(memory: Memory, seed: int = 0) -> None:
    """write/recent/sample/len behave, sampling is deterministic under a seeded generator."""
    records = [MemoryRecord(float(i), torch.full((4,), float(i)), torch.zeros(2), float(i), 0.0) for i in range(10)]
    for record in records:
        memory.write(record)
    if len(memory) != 10:
        raise _fail(memory, f"len() must count written records (10), got {len(memory)}")
    recent = memory.recent(3)
    if [r.t for r in recent] != [7.0, 8.0, 9.0]:
        raise _fail(memory, f"recent(3) must return the last three records oldest first, got t={[r.t for r in recent]}")
    first = memory.sample(5, torch.Generator().manual_seed(seed))
    second = memory.sample(5, torch.Generator().manual_seed(seed))
    if len(first) != 5 or [r.t for r in first] != [r.t for r in second]:
        raise _fail(memory, "sample(n, generator) must return n records, the same ones for the same seed")
    _check_close_twice(memory)


def check_configurator(configurator: Configurator, task: Task | None = None) -> None:
    """configure(task) returns valid Settings, the same for the same task."""
    task = task or Task(name="check", goal=(1.0, 2.0), constraints={"speed_limit": {"limit": 1.0}})
    first = configurator.configure(task)
    if not isinstance(first, Settings):
        raise _fail(configurator, f"configure must return Settings, got {type(first).__name__}")
    second = configurator.configure(task)
    if (first.goal, first.horizon, dict(first.weights), first.mode) != (
        second.goal, second.horizon, dict(second.weights), second.mode
    ):
        raise _fail(configurator, "configure is not deterministic for the same task")
    _check_close_twice(configurator)


def check_actor(actor: Actor, world_model: WorldModel | None = None, cost=None, seed: int = 0) -> None:
    """act() returns a Plan within the action bounds, finite, the same after reset()."""
    from amiagent import registry
    from amiagent.planning.cost import IntrinsicCost

    world_model = world_model or registry.create("world_model", "point_mass")
    if cost is None:
        cost = IntrinsicCost(
            {"goal_distance": (registry.create("cost_term", "goal_distance"), 1.0)},
            {"keep_out": registry.create("guardrail", "keep_out")},
        )
    settings = sample_settings(world_model.state_dim)
    cost.apply(settings)
    actor.bind(world_model, cost)
    actor.apply(settings)
    actor.reset()
    state = torch.zeros(1, world_model.state_dim)
    plan = actor.act(state)
    if not isinstance(plan, Plan):
        raise _fail(actor, f"act must return a Plan, got {type(plan).__name__}")
    h, a, d = settings.horizon, world_model.action_dim, world_model.state_dim
    _expect_tensor(actor, "plan.actions", plan.actions, (h, a))
    _expect_tensor(actor, "plan.states", plan.states, (h, d))
    if not world_model.action_space.contains(plan.actions):
        raise _fail(actor, "plan.actions leave the world model's action bounds; clamp them")
    actor.reset()
    if not torch.equal(actor.act(state).actions, plan.actions):
        raise _fail(actor, "act is not deterministic after reset(); seed its random generator in reset()")
    _check_close_twice(actor)


def check_world(world: World, seed: int = 0) -> None:
    """reset(seed) gives the same task for the same seed; the body observes and takes commands."""
    task = world.reset(seed)
    if not isinstance(task, Task):
        raise _fail(world, f"reset must return a Task, got {type(task).__name__}")
    obs0 = world.body.observe()
    if repr(world.reset(seed)) != repr(task):
        raise _fail(world, "reset(seed) must return the same task for the same seed")
    state = np.asarray(obs0.state)
    if state.ndim != 1 or not np.isfinite(state).all():
        raise _fail(world, "body.observe().state must be a finite 1-D array")
    low, high = np.asarray(world.body.action_low), np.asarray(world.body.action_high)
    world.body.command((low + high) / 2)
    world.advance(world.dt)
    counts = world.violations()
    if not all(isinstance(v, int) and v >= 0 for v in counts.values()):
        raise _fail(world, "violations() must map kinds to counts >= 0")
    if not math.isfinite(world.body.observe().t):
        raise _fail(world, "observation time must be finite")
    _check_close_twice(world)


CHECKERS: dict[str, Callable] = {
    "world_model": check_world_model,
    "perception": check_perception,
    "cost_term": check_cost_term,
    "guardrail": check_guardrail,
    "memory": check_memory,
    "critic": check_critic,
    "cost": check_cost,
    "configurator": check_configurator,
    "actor": check_actor,
    "world": check_world,
}


def check(kind: str, plugin) -> None:
    """Run the checker of `kind` on `plugin`."""
    checker = CHECKERS.get(kind)
    if checker is None:
        raise ContractError(f"no checker for kind {kind!r}; kinds with checkers: {', '.join(CHECKERS)}")
    checker(plugin)
