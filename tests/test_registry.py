"""Registry: entry-point discovery, clear errors for unknown names, bad parameters and broken imports."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

import pytest

from amiagent import registry
from amiagent.contracts import CostTerm
from amiagent.errors import PluginError

FIRST_PARTY = {
    ("configurator", "static"), ("perception", "state"), ("world_model", "point_mass"),
    ("cost_term", "goal_distance"), ("cost_term", "action_effort"), ("guardrail", "keep_out"),
    ("guardrail", "speed_limit"), ("guardrail", "workspace_bounds"), ("memory", "ring"), ("actor", "mpc"),
    ("world", "open_field"), ("world", "two_rooms"),
}


def test_first_party_plugins_are_entry_points():
    found = registry.discover()
    assert FIRST_PARTY <= set(found)
    assert all(found[key].dist == "amiagent" for key in FIRST_PARTY)


def test_import_amiagent_loads_no_plugin_or_heavy_module():
    code = "import sys, amiagent; bad = [m for m in ('torch', 'pybullet', 'ray', 'amiagent.plugins.actor.mpc') if m in sys.modules]; print(bad)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_name_suggests_and_lists_installed():
    with pytest.raises(PluginError) as err:
        registry.create("world_model", "point_mas")
    message = str(err.value)
    assert "Did you mean 'point_mass'" in message
    installed = message.split("Installed world_model plugins: ")[1].rstrip(".").split(", ")
    assert "point_mass" in installed and installed == sorted(installed)


def test_unknown_kind_lists_kinds():
    with pytest.raises(PluginError, match="unknown plugin kind 'world_modle'.*Did you mean 'world_model'"):
        registry.create("world_modle", "point_mass")


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(PluginError) as err:
        registry.create("world_model", "point_mass", {"max_acel": 2.0})
    message = str(err.value)
    assert "unknown parameter(s) max_acel" in message and "did you mean 'max_accel'" in message
    assert "Valid parameters: dims: int, dt: float, substeps: int, max_accel: float" in message


def test_ill_typed_parameter_names_field_and_type():
    with pytest.raises(PluginError, match=r"parameter 'substeps' must be int, got 'many'"):
        registry.create("world_model", "point_mass", {"substeps": "many"})
    with pytest.raises(PluginError, match=r"parameter 'dims' must be tuple\[int, \.\.\.\]"):
        registry.create("cost_term", "goal_distance", {"dims": [0, "y"]})


def test_invalid_value_fails_at_load_time():
    with pytest.raises(PluginError, match="optimizer must be 'cem' or 'mppi'"):
        registry.create("actor", "mpc", {"optimizer": "adam"})


def test_parameters_are_coerced():
    term = registry.create("cost_term", "goal_distance", {"dims": [0, 1], "terminal": 2})
    assert term.params.dims == (0, 1) and term.params.terminal == 2.0


def _install_fake_distribution(tmp_path, monkeypatch, name, entry_points, module=None, source=""):
    """A real installed distribution: a dist-info folder on sys.path, found by importlib.metadata."""
    dist = tmp_path / f"{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[amiagent.plugins]\n" + entry_points + "\n")
    if module:
        (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()


def test_plugin_that_fails_to_import_is_reported(tmp_path, monkeypatch):
    # an installed distribution whose plugin module raises on import
    _install_fake_distribution(tmp_path, monkeypatch, "brokenplug", "world_model.broken = brokenplug_mod:Model",
                               "brokenplug_mod", "raise RuntimeError('needs a GPU driver')\n")
    with pytest.raises(PluginError) as err:
        registry.load_class("world_model", "broken")
    message = str(err.value)
    assert "from brokenplug" in message and "RuntimeError: needs a GPU driver" in message
    rows = {(r["kind"], r["name"]): r for r in registry.table()}
    assert rows[("world_model", "broken")]["status"].startswith("error:")
    assert rows[("world_model", "point_mass")]["status"] == "ok"


def test_plugin_of_wrong_contract_is_rejected(tmp_path, monkeypatch):
    _install_fake_distribution(tmp_path, monkeypatch, "wrongplug", "actor.notanactor = wrongplug_mod:Thing",
                               "wrongplug_mod", "class Thing:\n    pass\n")
    with pytest.raises(PluginError, match="is not a subclass of Actor"):
        registry.load_class("actor", "notanactor")


def test_runtime_registration():
    class Constant(CostTerm):
        @dataclass(frozen=True)
        class Params:
            value: float = 1.0

        def evaluate(self, states, actions):
            return states.new_full(states.shape[:2], self.params.value)

    registry.register("cost_term", "constant", Constant)
    try:
        assert "constant" in registry.names("cost_term")
        assert registry.create("cost_term", "constant", {"value": 3}).params.value == 3.0
    finally:
        registry.unregister("cost_term", "constant")
    assert "constant" not in registry.names("cost_term")


def test_two_distributions_declaring_one_name_conflict(tmp_path, monkeypatch):
    # a third-party package that claims guardrail.keep_out must not silently replace (or hide behind) ours
    _install_fake_distribution(tmp_path, monkeypatch, "shadow", "guardrail.keep_out = shadow_mod:NoGuard")
    with pytest.raises(PluginError, match="declared by two distributions: .*amiagent.*shadow|declared by two distributions: .*shadow.*amiagent"):
        registry.create("guardrail", "keep_out")
    rows = {(r["kind"], r["name"]): r for r in registry.table()}
    assert rows[("guardrail", "keep_out")]["status"].startswith("error:")


def test_register_checks_the_contract():
    with pytest.raises(PluginError, match="not a subclass of Guardrail"):
        registry.register("guardrail", "bogus", dict)
