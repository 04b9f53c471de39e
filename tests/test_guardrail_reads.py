"""Guardrails declare the settings sections they read (`reads`), and read nothing else."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from amiagent import registry
from amiagent.contracts.checks import sample_settings
from amiagent.contracts import Guardrail, Settings
from amiagent.errors import ConfigError, ContractError
from amiagent.plugins.cost.arm import JointGoal
from amiagent.plugins.cost.sections import read
from amiagent.plugins.cost.terms import GoalDistance

GUARDRAILS = registry.names("guardrail")


def _settings_for(plugin) -> Settings:
    example = getattr(type(plugin), "example_settings", None)  # the checker's own choice of settings
    return example() if example is not None else sample_settings()


def _only(settings: Settings, sections: tuple[str, ...]) -> Settings:
    return dataclasses.replace(settings, guardrails={k: v for k, v in settings.guardrails.items() if k in sections})


@pytest.mark.parametrize("name", GUARDRAILS)
def test_a_guardrail_reads_exactly_the_sections_it_declares(name):
    guardrail = registry.create("guardrail", name)
    reads = type(guardrail).reads
    settings = _settings_for(guardrail)
    assert reads and set(reads) <= set(settings.guardrails), (name, reads)
    states = torch.randn(6, 5, len(settings.goal), generator=torch.Generator().manual_seed(0)) * 1.5
    actions = torch.zeros(6, 5, 2)
    guardrail.apply(settings)
    full = guardrail.violation(states, actions)
    assert bool((full > 0).any()), name  # the settings matter here, so dropping them would show
    guardrail.apply(_only(settings, reads))  # handed only what it declares: the same verdicts
    assert torch.equal(guardrail.violation(states, actions), full), name
    guardrail.apply(_only(settings, ()))  # handed none of it: it no longer fires
    assert not bool((guardrail.violation(states, actions) > 0).any()), name


def test_cost_terms_that_read_zones_declare_them_too():
    assert set(GoalDistance.reads) == {"keep_out", "workspace_bounds"}
    assert set(JointGoal.reads) == {"keep_out", "joint_limits"}


def test_reading_an_undeclared_section_is_a_contract_error():
    class Sloppy(Guardrail):
        reads = ("keep_out",)

    settings = sample_settings()
    assert read(settings, Sloppy()) == settings.guardrails["keep_out"]
    assert read(_only(settings, ()), Sloppy()) is None
    with pytest.raises(ContractError, match=r"Sloppy reads settings.guardrails\['speed_limit'\].*add it there"):
        read(settings, Sloppy(), "speed_limit")
    with pytest.raises(ConfigError, match=r"settings.guardrails\['keep_out'\] must be a mapping"):
        read(dataclasses.replace(settings, guardrails={"keep_out": [1, 2]}), Sloppy())
