"""Mode 1: a policy distilled from Mode-2 plans — distillation, the `policy` actor, Mode-1-only episodes,
the Mode-2 warm start, and the deadline fallback; on the real navigator in open_field."""

from __future__ import annotations

import csv
import json
import time

import pytest
import torch

from amiagent import checks, registry
from amiagent.agent import to_body_action
from amiagent.build import build_agent, build_module, build_world
from amiagent.cli import main
from amiagent.errors import AmiagentError
from amiagent.learning.policy import Obstacles, features, load_policy
from amiagent.runtime.local import run_episode

MPC = registry.load_class("actor", "mpc")


def _with_mode1(cfg, checkpoint, mode1_only: bool):
    cfg["agent"]["mode1"] = {"name": "policy", "params": {"checkpoint": str(checkpoint)}}
    if mode1_only:
        cfg["agent"]["configurator"]["params"]["mode"] = "mode1"
    cfg["agent"]["loop"]["lockstep"] = True
    return cfg


def test_distillation_fits_the_plans_and_saves_a_plain_checkpoint(tiny_distill):
    history = tiny_distill.history
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert min(row["val_loss"] for row in history) < history[0]["val_loss"]
    assert tiny_distill.train_episodes == 3 and tiny_distill.val_episodes == 1 and tiny_distill.samples > 100
    first, dagger = tiny_distill.rounds
    assert (first["driver"], first["seeds"]) == ("mode2", [1000, 1001, 1002])
    assert (dagger["driver"], dagger["seeds"]) == ("mode1", [1003]) and dagger["plans"] > 0  # the policy drove
    # torch.load(weights_only=True): plain tensors and values; normalisation and bounds travel with the weights
    net, info = load_policy(tiny_distill.checkpoint)
    assert not set(info["train_episodes"]) & set(info["val_episodes"])
    assert info["kept_epoch"] == tiny_distill.kept_epoch and len(info["history"]) == len(history)
    assert net.action_high.tolist() == [2.0, 2.0] and float(net.feature_std.min()) > 0
    with tiny_distill.checkpoint.with_suffix(".metrics.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(history)
    assert tiny_distill.checkpoint.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_features_see_the_nearest_zones_first_within_range():
    obstacles = Obstacles.from_guardrails({
        "keep_out": {"circles": [[3.0, 0.0, 0.5]], "boxes": [[0.0, 2.0, 0.5, 0.25]], "robot_radius": 0.2},
        "workspace_bounds": {"low": [-5.0, -5.0], "high": [5.0, 5.0]},
    })
    state, goal = torch.zeros(1, 4), torch.tensor([4.0, 0.0, 0.0, 0.0])
    f = features(state, goal, obstacles, zones=3, sense=3.0)[0]
    assert f[:4].tolist() == [4.0, 0.0, 0.0, 0.0]  # goal - state
    assert f[4:8].tolist() == pytest.approx([3.0] * 4)  # bound clearances (4.8 m) seen up to the range
    box, circle, pad = f[8:15].tolist(), f[15:22].tolist(), f[22:29].tolist()
    assert box == pytest.approx([0.0, 2.0, 1.75 - 0.2, 0.5, 0.25, 1.0, 1.0])  # nearest: clearance 1.55 m
    assert circle == pytest.approx([3.0, 0.0, 2.5 - 0.2, 0.5, 0.5, 0.0, 1.0])
    assert pad == [0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0]  # no zone: nothing, at the range
    # a shorter range: the circle (2.3 m away) is out of sight, the box (1.55 m) fading in
    f = features(state, goal, obstacles, zones=3, sense=2.0)[0]
    box, circle = f[8:15].tolist(), f[15:22].tolist()
    assert box == pytest.approx([0.0, 1.8, 1.55, 0.45, 0.225, 0.9, 0.9])
    assert circle == [0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0]


def test_policy_actor_passes_its_checker_and_is_fast(tiny_policy, navigator_config):
    actor = registry.create("actor", "policy", {"checkpoint": str(tiny_policy)})
    checks.check_actor(actor)
    # one act on the navigator's own modules: network, rollout and cost, well under 5 ms on one thread
    agent_cfg = navigator_config["agent"]
    wm, cost = build_module("world_model", agent_cfg["world_model"]), build_module("cost", agent_cfg["cost"])
    world = build_world(navigator_config["world"])
    try:
        settings = build_module("configurator", agent_cfg["configurator"]).configure(world.reset(3))
    finally:
        world.close()
    cost.apply(settings)
    actor = registry.create("actor", "policy", {"checkpoint": str(tiny_policy)})
    actor.bind(wm, cost)
    actor.apply(settings)
    state = torch.tensor([[-3.5, 0.0, 0.3, 0.0]])
    times = []
    for _ in range(30):
        started = time.perf_counter()
        plan = actor.act(state)
        times.append(time.perf_counter() - started)
    assert plan.actions.shape == (16, 2) and plan.cost.violation.shape == (1, 16)
    assert sorted(times)[len(times) // 2] < 5e-3


def test_policy_actor_needs_a_checkpoint(tmp_path):
    with pytest.raises(AmiagentError, match="checkpoint is required"):
        registry.create("actor", "policy", {})
    with pytest.raises(AmiagentError, match="no policy checkpoint at .*amiagent distill"):
        registry.create("actor", "policy", {"checkpoint": str(tmp_path / "missing.pt")})


@pytest.mark.parametrize("seed", [5000, 5001])
def test_mode1_only_episodes_end_without_violations(navigator_config, tiny_policy, seed):
    cfg = _with_mode1(navigator_config, tiny_policy, mode1_only=True)
    cfg["world"]["params"]["max_steps"] = 150
    agent, world = build_agent(cfg["agent"]), build_world(cfg["world"])
    try:
        episode = run_episode(agent, world, seed)
    finally:
        agent.close()
        world.close()
    assert episode.status in ("reached", "timeout", "stalled") and 0 < episode.steps <= 150
    assert episode.total_violations == 0, episode.violations
    # every action came from the Mode-1 plan and passed the safety filter
    assert all(c.source == "plan" and c.checked for c in episode.cycles)
    assert all(c.model_steps == 24 for c in episode.cycles)  # no search: 8 steps to chain the chunks, 16 to score


def _plan_cost(actor, cases) -> tuple[int, float]:
    """Infeasible plans and mean cost of one cold plan (no previous plan) from each (settings, state)."""
    infeasible, total = 0, 0.0
    for settings, state in cases:
        actor.cost.apply(settings)
        actor.apply(settings)
        actor.reset()
        plan = actor.act(state)
        infeasible += int(not plan.feasible)
        total += float(plan.cost.total[0])
    return infeasible, total / len(cases)


def test_mode1_warm_start_lets_cem_stop_earlier(navigator_config, tiny_policy):
    # states a Mode-2 episode passes through, on seeds the policy never saw
    agent_cfg = navigator_config["agent"]
    agent_cfg["loop"]["lockstep"] = True
    agent, world = build_agent(agent_cfg), build_world(navigator_config["world"])
    cases = []
    try:
        for seed in (5002, 5003):
            episode = run_episode(agent, world, seed)
            cases += [(agent.settings, torch.tensor([c.state])) for c in episode.cycles[::8]]
    finally:
        agent.close()
        world.close()

    def planner(iterations: int, proposal: str = ""):
        actor = build_module("actor", {"name": "mpc", "params": {**agent_cfg["actor"]["params"],
                                                                 "iterations": iterations, "proposal": proposal}})
        actor.bind(build_module("world_model", agent_cfg["world_model"]), build_module("cost", agent_cfg["cost"]))
        return actor

    # (infeasible plans, mean cost) by iterations, warm-started by the policy or not
    warm = {k: _plan_cost(planner(k, str(tiny_policy)), cases) for k in (1, 3)}
    cold = {k: _plan_cost(planner(k), cases) for k in (1, 3, 10)}
    assert all(infeasible == 0 for infeasible, _ in [*warm.values(), *cold.values()])  # the cost decides
    for k in (1, 3):
        assert warm[k][1] <= cold[k][1]  # the same few iterations from the policy's proposal: no worse
    # 3 warm iterations come within 3% of 10 cold ones, even with this tiny policy (the README has the
    # figures of a policy distilled from 40 episodes)
    assert warm[3][1] <= cold[10][1] * 1.03


class SlowPlanner(MPC):
    """The MPC actor, late on purpose from its third plan on (the first is the agent's warm-up)."""

    def __init__(self, params=None):
        super().__init__(params)
        self.calls = 0

    def act(self, state):
        self.calls += 1
        if self.calls > 2:
            time.sleep(1.0)  # far beyond the deadline
        return super().act(state)


@pytest.fixture
def slow_planner():
    registry.register("actor", "slow_for_mode1", SlowPlanner)
    yield
    registry.unregister("actor", "slow_for_mode1")


def test_late_plans_fall_back_to_mode1(navigator_config, tiny_policy, slow_planner):
    cfg = _with_mode1(navigator_config, tiny_policy, mode1_only=False)
    cfg["agent"]["actor"]["name"] = "slow_for_mode1"
    cfg["agent"]["actor"]["params"].update(samples=50, iterations=2, elites=10)  # on time when not made late
    cfg["agent"]["loop"].update(lockstep=False, deadline_s=0.08)
    agent, world = build_agent(cfg["agent"]), build_world(cfg["world"])
    try:
        agent.start(world.reset(0), world.body.observe())
        cycles = []
        for _ in range(10):
            cycle = agent.cycle(world.body.observe())
            world.body.command(to_body_action(cycle.action))
            world.advance(agent.loop.period)
            cycles.append(cycle)
        violations = world.violations()
    finally:
        agent.close()
        world.close()
    sources = [c.source for c in cycles]
    validity = agent.loop.plan_validity
    # one plan on time, its next steps while it is valid, then Mode 1 for every late plan
    assert sources[:validity] == ["plan"] + ["previous"] * (validity - 1)
    assert sources[validity:] == ["mode1"] * (10 - validity)
    assert all(c.missed_deadline and c.checked for c in cycles[1:])
    assert violations == {k: 0 for k in violations}


def test_distill_command_then_eval_of_mode1_alone(tmp_path, capsys):
    out = tmp_path / "mode1.pt"
    short = ["world=open_field", "world.params.max_steps=20", "progress=false"]
    assert main(["distill", "agent=navigator", *short, "episodes=2", "seed=7", "distill.dagger_rounds=0",
                 "distill.epochs=3", "distill.hidden=16", f"out={out}"]) == 0
    printed = capsys.readouterr().out
    assert f"{out}:" in printed and "seeds 7..8" in printed and "round 0: mode2 drove 2 episode(s)" in printed
    assert out.with_suffix(".png").exists() and out.with_suffix(".metrics.csv").exists()
    # Mode 1 alone through the shipped agent config, on another seed, with eval's table
    run_dir = tmp_path / "eval"
    assert main(["eval", "agent=mode1", *short, "runtime=local", "runtime.control=null", f"agent.checkpoint={out}",
                 "episodes=1", "seed=9", f"run_dir={run_dir}", "plot=false"]) == 0
    assert "eval: mode1 in open_field" in capsys.readouterr().out
    agg = json.loads((run_dir / "eval.json").read_text())["aggregate"]
    assert agg["total_violations"] == 0 and agg["plan_ms_p50"] > 0 and agg["model_steps_per_cycle"] == 24.0
