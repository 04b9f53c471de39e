"""Modules in real Ray actors, reached over real ZeroMQ: the groundwork of the Ray runtime."""

from __future__ import annotations

import pytest
import ray
import torch

from amiagent import checks, registry
from amiagent.build import build_cost
from amiagent.errors import ConfigError
from amiagent.runtime.ray import host

COST_SPEC = {"terms": {"goal_distance": {"weight": 1.0}}, "guardrails": {"keep_out": {}}}


@pytest.fixture(scope="module")
def ray_session():
    # one local instance for the module; actors take no CPU so they fit on two cores
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_world_model_in_a_ray_actor_matches_local(ray_session):
    hosted = host("world_model", {"name": "point_mass", "params": {"max_accel": 2.0}})
    try:
        remote = hosted.proxy()
        local = registry.create("world_model", "point_mass")
        states, actions = torch.randn(4, 4), torch.rand(4, 10, 2) * 4 - 2
        assert torch.equal(remote.rollout(states, actions), local.rollout(states, actions))
        checks.check_world_model(remote)
    finally:
        hosted.close()
        hosted.close()


def test_cost_in_a_ray_actor_matches_local(ray_session):
    hosted = host("cost", COST_SPEC)
    try:
        remote = hosted.proxy()
        settings = checks.sample_settings()
        remote.apply(settings)
        local = build_cost(COST_SPEC)
        local.apply(settings)
        states, actions = torch.randn(3, 5, 4), torch.randn(3, 5, 2)
        assert torch.equal(remote.evaluate(states, actions).violation, local.evaluate(states, actions).violation)
    finally:
        hosted.close()


def test_hosting_errors_are_clear(ray_session):
    with pytest.raises(ConfigError, match="only world_model, cost modules can be hosted"):
        host("actor", {"name": "mpc"})


def test_bad_spec_in_an_actor_reports_the_plugin_error(ray_session):
    from amiagent.errors import AmiagentError

    with pytest.raises(AmiagentError, match="did not start in its Ray actor.*Did you mean 'point_mass'"):
        host("world_model", {"name": "point_mas"})
