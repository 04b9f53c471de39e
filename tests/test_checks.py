"""The contract checkers pass on every first-party plugin and catch broken ones."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from amiagent import registry

from amiagent.contracts import checks
from amiagent.contracts import Guardrail
from amiagent.errors import ContractError

PLUGINS = sorted(
    (kind, name) for (kind, name), info in registry.discover().items()
    if info.dist == "amiagent" and kind in checks.CHECKERS
)


NEEDS_CHECKPOINT = {("perception", "jepa"): "tiny_checkpoint", ("world_model", "jepa"): "tiny_checkpoint",
                    ("actor", "policy"): "tiny_policy"}
"""Plugins that load a trained model -> the session fixture that trains a tiny one for them to load."""


@pytest.mark.parametrize(("kind", "name"), PLUGINS, ids=[f"{k}.{n}" for k, n in PLUGINS])
def test_first_party_plugin_passes_its_checker(kind, name, request):
    params = {}
    if (kind, name) in NEEDS_CHECKPOINT:
        params = {"checkpoint": str(request.getfixturevalue(NEEDS_CHECKPOINT[(kind, name)]))}
    checks.check(kind, registry.create(kind, name, params))


def test_every_shipped_kind_has_a_checked_plugin():
    # cost: no first-party plugin (the cost module is built from terms, guardrails and a critic)
    assert {kind for kind, _ in PLUGINS} == set(checks.CHECKERS) - {"cost"}


def test_geodesic_goal_distance_passes_checker():
    checks.check("cost_term", registry.create("cost_term", "goal_distance", {"metric": "geodesic"}))


def test_mppi_actor_passes_checker():
    checks.check("actor", registry.create("actor", "mpc", {"optimizer": "mppi"}))


class _NegativeGuardrail(Guardrail):
    @dataclass(frozen=True)
    class Params:
        pass

    def violation(self, states, actions):
        return -states[..., 0].abs()


class _WrongShapeModel(registry.load_class("world_model", "point_mass")):
    def rollout(self, states, actions):
        return super().rollout(states, actions)[:, :-1]  # drops the last step


def test_checker_rejects_negative_violation():
    with pytest.raises(ContractError, match="violation must be >= 0"):
        checks.check_guardrail(_NegativeGuardrail())


def test_checker_names_the_wrong_shape():
    model = _WrongShapeModel()
    with pytest.raises(ContractError, match=r"rollout\(states, actions\) must have shape \(5, 7, 4\), got \(5, 6, 4\)"):
        checks.check_world_model(model)


def test_checker_rejects_non_deterministic_actor():
    actor = registry.create("actor", "mpc", {"samples": 20, "iterations": 2, "elites": 5})
    actor.reset = lambda: None  # forgets to re-seed: two plans from the same state differ
    with pytest.raises(ContractError, match="not deterministic after reset"):
        checks.check_actor(actor)


def test_unknown_kind_has_no_checker():
    with pytest.raises(ContractError, match="no checker for kind"):
        checks.check("body", object())


def test_checker_sample_settings_are_valid():
    settings = checks.sample_settings()
    assert settings.goal_tensor().shape == torch.Size([4])
