"""Assembling agents from config: every mistake fails at launch with the config path that is wrong."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from amiagent import registry

from amiagent.contracts import checks
from amiagent.build import build_agent, build_cost, build_safety, build_world, check_body_fits
from amiagent.contracts import Critic
from amiagent.planning.cost import IntrinsicCost
from amiagent.errors import ConfigError, ContractError, PluginError


class DistanceCritic(Critic):
    """A stand-in critic: distance of the final state from the origin."""

    @dataclass(frozen=True)
    class Params:
        scale: float = 1.0

    def value(self, states):
        return self.params.scale * states[:, :2].norm(dim=1)


@pytest.fixture
def critic_plugin():
    registry.register("critic", "distance", DistanceCritic)
    yield
    registry.unregister("critic", "distance")


@pytest.mark.parametrize(("weight", "message"), [
    (-1.0, r"agent.cost.terms.goal_distance.weight must be a finite number >= 0, got -1.0"),
    (float("nan"), r"weight must be a finite number >= 0, got nan"),
    ("abc", r"weight must be a finite number >= 0, got 'abc'"),
])
def test_bad_term_weight_fails(navigator_config, weight, message):
    navigator_config["agent"]["cost"]["terms"]["goal_distance"]["weight"] = weight
    with pytest.raises(ConfigError, match=message):
        build_agent(navigator_config["agent"])


def test_misspelt_term_key_fails(navigator_config):
    navigator_config["agent"]["cost"]["terms"]["goal_distance"]["wieght"] = 0.5
    with pytest.raises(ConfigError, match=r"agent.cost.terms.goal_distance: unknown key\(s\) \['wieght'\]"):
        build_agent(navigator_config["agent"])


def test_term_given_as_a_number_fails(navigator_config):
    navigator_config["agent"]["cost"]["terms"]["lateral"] = 5
    with pytest.raises(ConfigError, match="agent.cost.terms.lateral: expected a mapping, got 5"):
        build_agent(navigator_config["agent"])


def test_unknown_agent_section_fails(navigator_config):
    navigator_config["agent"]["planner"] = {}
    with pytest.raises(ConfigError, match=r"agent: unknown key\(s\) \['planner'\]"):
        build_agent(navigator_config["agent"])


def test_bad_parameter_names_its_config_path(navigator_config):
    navigator_config["agent"]["world_model"]["params"]["mass"] = 3
    with pytest.raises(PluginError, match=r"agent.world_model \(world_model.point_mass\): unknown parameter\(s\) mass"):
        build_agent(navigator_config["agent"])


def test_bad_optimizer_sizes_fail_at_load(navigator_config):
    navigator_config["agent"]["actor"]["params"]["elites"] = 1
    with pytest.raises(PluginError, match=r"agent.actor \(actor.mpc\): .*2 <= elites <= samples"):
        build_agent(navigator_config["agent"])


def test_dimension_mismatch_fails(navigator_config):
    navigator_config["agent"]["world_model"]["params"]["dims"] = 3
    with pytest.raises(ConfigError, match="perception gives states of 4 values but agent.world_model expects 6"):
        build_agent(navigator_config["agent"])


def test_body_must_fit_world_model(navigator_config):
    navigator_config["agent"]["world_model"]["params"]["dims"] = 3
    navigator_config["agent"]["perception"]["params"]["state_dim"] = 6
    agent = build_agent(navigator_config["agent"])
    world = build_world(navigator_config["world"])
    try:
        with pytest.raises(ConfigError, match="body takes 2-dimensional actions but agent.world_model plans 3"):
            check_body_fits(agent, world)
    finally:
        agent.close()
        world.close()


def test_safety_filter_has_its_own_modules(navigator_config):
    agent = build_agent(navigator_config["agent"])
    try:
        assert agent.safety.world_model is not agent.modules.world_model
        assert agent.safety.cost is not agent.modules.cost
        assert agent.safety.cost.names == ()  # guardrails only
        assert set(agent.safety.cost.guardrails) == set(agent.modules.cost.guardrails)
    finally:
        agent.close()


def test_safety_extra_margin_widens_guardrails(navigator_config):
    navigator_config["agent"]["safety"]["extra_margin"] = 0.1
    agent = build_agent(navigator_config["agent"])
    try:
        planner = agent.modules.cost.guardrails["keep_out"].params.margin
        assert agent.safety.cost.guardrails["keep_out"].params.margin == pytest.approx(planner + 0.1)
    finally:
        agent.close()


def test_safety_off_is_logged(navigator_config, caplog):
    navigator_config["agent"]["safety"]["enabled"] = False
    agent = build_agent(navigator_config["agent"])
    agent.close()
    assert agent.safety is None
    assert "safety filter is off" in caplog.text


def test_critic_joins_the_total(critic_plugin):
    spec = {"terms": {"action_effort": {"weight": 1.0}}, "critic": {"name": "distance", "weight": 2.0}}
    cost = build_cost(spec)
    checks.check_cost(cost)
    cost = build_cost(spec)
    cost.apply(checks.sample_settings())
    states = torch.zeros(1, 3, 4)
    states[0, -1, :2] = torch.tensor([3.0, 4.0])
    report = cost.evaluate(states, torch.zeros(1, 3, 2))
    assert float(report.total[0]) == pytest.approx(2.0 * 5.0)
    checks.check_critic(DistanceCritic())


def test_cost_checker_catches_negative_violation():
    from tests.test_checks import _NegativeGuardrail

    with pytest.raises(ContractError, match="violation must be >= 0"):
        checks.check_cost(IntrinsicCost({}, {"neg": _NegativeGuardrail()}))


def test_model_with_more_authority_than_the_body_is_refused(navigator_config):
    navigator_config["agent"]["world_model"]["params"]["max_accel"] = 4.0
    agent = build_agent(navigator_config["agent"])
    world = build_world(navigator_config["world"])
    try:
        with pytest.raises(ConfigError, match="the planner would count on authority the body does not have"):
            check_body_fits(agent, world)
    finally:
        agent.close()
        world.close()


def test_safety_model_must_match_the_planner(navigator_config):
    navigator_config["agent"]["safety"]["world_model"] = {"name": "point_mass", "params": {"max_accel": 1.0}}
    with pytest.raises(ConfigError, match="agent.safety.world_model must have the planner's"):
        build_agent(navigator_config["agent"])


def test_non_numeric_margin_with_extra_margin_is_a_config_error(navigator_config):
    navigator_config["agent"]["safety"]["extra_margin"] = 0.1
    navigator_config["agent"]["cost"]["guardrails"]["keep_out"]["params"]["margin"] = "wide"
    with pytest.raises(ConfigError, match=r"keep_out.params.margin must be a finite number"):
        build_safety(navigator_config["agent"])  # the filter's widened copy, not a traceback


def test_swap_specs_merge_onto_what_runs_and_a_new_plugin_starts_fresh():
    from amiagent.build import merge_spec

    running = {"name": "point_mass", "params": {"dims": 2, "dt": 0.1, "max_accel": 1.5}}
    assert merge_spec(running, {"params": {"substeps": 12}}) == {
        "name": "point_mass", "params": {"dims": 2, "dt": 0.1, "max_accel": 1.5, "substeps": 12}}
    assert merge_spec(running, {"name": "other", "params": {"x": 1}}) == {"name": "other", "params": {"x": 1}}
    cost = {"terms": {"goal_distance": {"weight": 1.0}}, "guardrails": {"keep_out": {"params": {"margin": 0.05}}}}
    merged = merge_spec(cost, {"guardrails": {"keep_out": {"params": {"margin": 0.2}}}})
    assert merged["guardrails"]["keep_out"]["params"]["margin"] == 0.2 and merged["terms"] == cost["terms"]
    assert cost["guardrails"]["keep_out"]["params"]["margin"] == 0.05  # the running spec is left alone
