"""Planning: feasibility-first ranking, optimisers inside bounds, warm start, the safety filter."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from amiagent import registry
from amiagent.contracts import Settings
from amiagent.planning.cost import IntrinsicCost
from amiagent.planning import CEMConfig, MPPIConfig, SafetyFilter, cem, feasibility_first, mppi, warm_start
from amiagent.contracts.spaces import Box

floats = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(floats, st.one_of(st.just(0.0), st.floats(0.25, 1e3, width=32))), min_size=1, max_size=40))
def test_feasibility_first_is_lexicographic(rows):
    total = torch.tensor([r[0] for r in rows])
    violation = torch.tensor([r[1] for r in rows])
    order = feasibility_first(total, violation).tolist()
    assert sorted(order) == list(range(len(rows)))
    ranked = [(float(violation[i]), float(total[i])) for i in order]
    feasible = [r for r in ranked if r[0] == 0]
    # every feasible candidate comes first, whatever its cost
    assert ranked[: len(feasible)] == feasible
    assert [r[1] for r in feasible] == sorted(r[1] for r in feasible)
    infeasible = ranked[len(feasible):]
    assert [r[0] for r in infeasible] == sorted(r[0] for r in infeasible)


def test_cheap_violation_never_beats_costly_feasible():
    total = torch.tensor([-1e9, 1e9])
    violation = torch.tensor([1e-7, 0.0])
    assert feasibility_first(total, violation).tolist() == [1, 0]


def _problem(zones=((0.0, 0.0, 0.8),), goal=(4.0, 0.0)):
    wm = registry.create("world_model", "point_mass")
    cost = IntrinsicCost(
        {"goal_distance": (registry.create("cost_term", "goal_distance"), 1.0),
         "action_effort": (registry.create("cost_term", "action_effort"), 0.01)},
        {"keep_out": registry.create("guardrail", "keep_out"),
         "speed_limit": registry.create("guardrail", "speed_limit")},
    )
    cost.apply(Settings(goal=(*goal, 0.0, 0.0), guardrails={
        "keep_out": {"circles": [list(z) for z in zones], "robot_radius": 0.2},
        "speed_limit": {"limit": 1.5},
    }))
    return wm, cost


def _evaluate(wm, cost, start):
    def evaluate(actions):
        states = wm.rollout(start, actions)
        return states, cost.evaluate(states, actions)
    return evaluate


@pytest.mark.parametrize("method", ["cem", "mppi"])
def test_optimisers_stay_in_bounds_and_improve(method):
    wm, cost = _problem()
    bounds = Box(wm.action_low, wm.action_high)
    start = torch.tensor([[-4.0, 0.3, 0.0, 0.0]])
    evaluate = _evaluate(wm, cost, start)
    mean = torch.zeros(16, 2)
    std = torch.ones(16, 2)
    _, baseline = evaluate(mean.unsqueeze(0))
    gen = torch.Generator().manual_seed(0)
    if method == "cem":
        result = cem(evaluate, mean, std, bounds, CEMConfig(), gen)
    else:
        result = mppi(evaluate, mean, std, bounds, MPPIConfig(), gen)
    assert result.actions.shape == (16, 2)
    assert bool((result.actions >= -2.0).all() and (result.actions <= 2.0).all())
    assert bool(result.report.feasible[0])
    assert float(result.report.total[0]) < float(baseline.total[0])
    # the reported states are the model's prediction for the returned actions
    assert torch.allclose(result.states, wm.rollout(start, result.actions.unsqueeze(0))[0])


def test_optimiser_prefers_least_violation_when_nothing_is_feasible():
    # the body starts inside a zone: every plan violates, the one leaving fastest wins
    wm, cost = _problem(zones=((0.0, 0.0, 1.0),))
    bounds = Box(wm.action_low, wm.action_high)
    start = torch.tensor([[0.3, 0.0, 0.0, 0.0]])
    result = cem(_evaluate(wm, cost, start), torch.zeros(16, 2), torch.ones(16, 2), bounds, CEMConfig(),
                 torch.Generator().manual_seed(0))
    assert not bool(result.report.feasible[0])
    assert float(result.actions[0, 0]) > 1.0  # pushes outward, along +x


def test_warm_start_shifts_previous_plan():
    bounds = Box(torch.full((2,), -2.0), torch.full((2,), 2.0))
    previous = torch.arange(32, dtype=torch.float32).view(16, 2) / 10
    mean = warm_start(previous, 16, bounds)
    assert torch.equal(mean[:15], previous[1:].clamp(-2, 2))
    assert torch.equal(mean[15], previous[15].clamp(-2, 2))
    assert torch.equal(warm_start(None, 4, bounds), torch.zeros(4, 2))


def test_safety_filter_passes_safe_action_unchanged():
    wm, cost = _problem()
    filt = SafetyFilter(wm, cost)
    state = torch.tensor([[-4.0, 0.0, 0.0, 0.0]])
    verdict = filt.filter(state, torch.tensor([1.0, 0.5]))
    assert not verdict.filtered and torch.equal(verdict.action, torch.tensor([1.0, 0.5]))


def test_safety_filter_replaces_action_that_cannot_stop_in_time():
    wm, cost = _problem()
    filt = SafetyFilter(wm, cost)
    # 1.4 m/s toward the zone, 1.45 m from its inflated edge: accelerating on is unsafe
    state = torch.tensor([[-2.5, 0.0, 1.4, 0.0]])
    verdict = filt.filter(state, torch.tensor([2.0, 0.0]))
    assert verdict.filtered and verdict.violation > 0
    assert float(verdict.action[0]) < 2.0  # no longer pushes on toward the zone
    assert float(filt.check(state, verdict.action.unsqueeze(0))[0]) == 0.0


def test_safety_filter_sends_least_violation_when_no_action_is_safe():
    wm, cost = _problem()
    filt = SafetyFilter(wm, cost)
    state = torch.tensor([[-1.2, 0.0, 1.5, 0.0]])  # already too close to stop
    verdict = filt.filter(state, torch.tensor([2.0, 0.0]))
    assert verdict.filtered and "least violation" in verdict.reason
    assert float(verdict.action[0]) < 0


@pytest.mark.slow
def test_mppi_drives_a_whole_lockstep_episode_with_finite_actions_and_no_violation():
    """The shipped navigator with MPPI in place of CEM, in open_field with its two zones. The model is
    analytic and every plan is waited for, so the episode depends on the seed alone."""
    import numpy as np

    from amiagent.build import build_agent, build_world
    from amiagent.config import load_config
    from amiagent.runtime.local import run_episode

    cfg = load_config(["agent=navigator", "world=open_field", "runtime=local", "agent.actor.params.optimizer=mppi",
                       "+agent.loop.lockstep=true"])
    agent, world = build_agent(cfg["agent"]), build_world(cfg["world"])
    try:
        assert agent.modules.actor.params.optimizer == "mppi"
        episode = run_episode(agent, world, 1)
        zones = world.layout().circles + world.layout().boxes
    finally:
        agent.close()
        world.close()
    assert len(zones) == 2
    assert episode.status == "reached", episode.summary()
    assert episode.total_violations == 0 and episode.min_clearance > 0, episode.summary()
    assert episode.sources["plan"] == episode.steps  # lock-step: every cycle sent a fresh plan's action
    actions = np.array([c.action for c in episode.cycles])
    assert np.isfinite(actions).all() and np.abs(actions).max() <= cfg["world"]["params"]["max_accel"]
    assert all(np.isfinite(c.cost) and c.predicted_violation == 0.0 for c in episode.cycles)
