"""Typed configuration: unknown keys refused with the closest dotted path, types and ranges checked with the
path named, all before anything starts (real Hydra composition, the real `main()` and the installed script)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psutil
import pytest

from amiagent.cli import main
from amiagent.cli.schema import DistillCommand, LocalRuntime, RayRuntime, RunConfig, runtime_config
from amiagent.config import check_keys, load_config, suggestions, typed
from amiagent.errors import ConfigError


def _main(capsys, *args: str) -> tuple[int, str]:
    """`amiagent ARGS` in this process: the exit status and what it printed."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.parametrize(("args", "message"), [
    (["run", "+episode=3"], "unknown key 'episode', did you mean 'episodes'?"),
    (["eval", "+seeds=3"], "unknown key 'seeds', did you mean 'seed'?"),
    (["run", "+agent.loop.rate=5"], "unknown key 'agent.loop.rate', did you mean 'agent.loop.rate_hz'?"),
    (["run", "+runtime.placment=pod"], "unknown key 'runtime.placment', did you mean 'runtime.placement'"),
    (["run", "runtime=local", "+runtime.torch_thread=2"],
     "unknown key 'runtime.torch_thread', did you mean 'runtime.torch_threads'?"),
    (["collect", "+episode=3"], "unknown key 'episode', did you mean 'episodes'?"),
    (["train", "data=x.h5", "+world_model.train.stepz=3"],
     "unknown key 'world_model.train.stepz', did you mean 'world_model.train.steps'?"),
    (["train", "data=x.h5", "+world_model.model.latent=3"],
     "unknown key 'world_model.model.latent', did you mean 'world_model.model.latent_dim'?"),
    (["distill", "+distill.epoch=3"], "unknown key 'distill.epoch', did you mean 'distill.epochs'?"),
    (["distill", "+out_dir=x"], "unknown key 'out_dir', did you mean 'out'?"),
])
def test_an_unknown_key_is_refused_with_the_closest_dotted_path(capsys, args, message):
    code, out = _main(capsys, *args)
    assert code == 2 and message in out, out


@pytest.mark.parametrize(("override", "message"), [
    # Hydra would advise `+rate_hz=inf`, which adds a key nothing reads: the suggestion is the key's real path
    ("rate_hz=inf", "unknown key 'rate_hz', did you mean 'agent.loop.rate_hz'?"),
    ("agent.loop.rate=5", "unknown key 'agent.loop.rate', did you mean 'agent.loop.rate_hz'?"),
    ("world.params.n_zone=3", "unknown key 'world.params.n_zone', did you mean 'world.params.n_zones'?"),
])
def test_an_override_of_a_missing_key_names_where_the_key_is(capsys, override, message):
    code, out = _main(capsys, "run", override)
    assert code == 2 and message in out, out
    assert "To append to your config use" not in out


def test_every_unknown_override_is_named_at_once():
    with pytest.raises(ConfigError) as refused:
        load_config(["seeds=3", "runtime=local", "ratehz=2"])
    text = str(refused.value)
    assert "unknown key 'seeds', did you mean 'seed'?" in text
    assert "unknown key 'ratehz', did you mean 'agent.loop.rate_hz'?" in text


@pytest.mark.parametrize(("args", "message"), [
    (["run", "episodes=abc"], "episodes must be an integer, got 'abc'"),
    (["eval", "runtime=local", "episodes=0"], "episodes must be an integer >= 1, got 0"),
    (["run", "seed=-1"], "seed must be an integer >= 0, got -1"),
    (["run", "realtime=maybe"], "realtime must be true or false, got 'maybe'"),
    (["run", "runtime.torch_threads=-1"], "runtime.torch_threads must be an integer >= 0, got -1"),
    (["run", "runtime.ray_logs=3"], "runtime.ray_logs must be true or false, got 3"),
    (["run", "runtime.name=moon"], "unknown runtime 'moon'; choose runtime=ray (the default) or runtime=local"),
    (["run", "agent.loop.deadline_s=5"], "agent.loop.deadline_s must be > 0 and at most one control period"),
    (["run", "agent.loop.plan_validity=x"], "agent.loop.plan_validity must be an integer, got 'x'"),
    (["collect", "steps=0"], "steps must be an integer >= 1, got 0"),
    (["train", "data=x.h5", "world_model.train.steps=abc"], "world_model.train.steps must be an integer, got 'abc'"),
    (["train", "data=x.h5", "world_model.model.channels=[16,x]"],
     "world_model.model.channels[1] must be an integer, got 'x'"),
    (["train"], "amiagent train needs data=PATH"),
    (["distill", "episodes=0"], "episodes must be an integer >= 1, got 0"),
    (["distill", "distill.keep=3"], "distill.keep must be a string, got 3"),
])
def test_a_wrong_type_or_range_is_refused_naming_its_path(capsys, args, message):
    code, out = _main(capsys, *args)
    assert code == 2 and message in out, out


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_an_infinite_control_rate_is_refused_before_ray_or_any_process_starts(capsys):
    import ray

    ray_before, children_before = ray.is_initialized(), _descendants()
    code, out = _main(capsys, "run", "agent.loop.rate_hz=inf")  # runtime=ray is the default
    assert code == 2 and "agent.loop.rate_hz must be a finite number > 0, got inf" in out, out
    assert ray.is_initialized() == ray_before  # False when this test runs alone: no Ray was started
    assert not _descendants() - children_before  # nor any process (Ray's would outlive main())


def test_the_installed_script_exits_non_zero_on_an_unknown_key():
    script = Path(sys.executable).parent / "amiagent"
    proc = subprocess.run([str(script), "run", "+episode=3"], capture_output=True, text=True, timeout=120,
                          env={"COLUMNS": "200", "PATH": str(script.parent)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "unknown key 'episode', did you mean 'episodes'?" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_check_keys_suggests_the_dotted_path_and_keeps_its_format():
    allowed = {"rate_hz", "deadline_s", "plan_validity", "lockstep"}
    with pytest.raises(ConfigError, match=r"agent.loop: unknown key\(s\) \['rat_hz'\]; did you mean 'agent.loop.rate_hz'\? "
                                          r"valid keys: \['deadline_s', 'lockstep', 'plan_validity', 'rate_hz'\]"):
        check_keys("agent.loop", {"rat_hz": 10}, allowed)
    with pytest.raises(ConfigError, match=r"did you mean 'agent.loop.deadline_s' for 'deadlin', "
                                          r"'agent.loop.rate_hz' for 'rat_hz'\?"):
        check_keys("agent.loop", {"rat_hz": 10, "deadlin": 1, "zzz": 0}, allowed)
    with pytest.raises(ConfigError, match=r"agent.loop: unknown key\(s\) \['zzz'\]; valid keys"):
        check_keys("agent.loop", {"zzz": 0}, allowed)
    assert check_keys("agent.loop", {"rate_hz": 5}, allowed) == {"rate_hz": 5}
    assert check_keys("agent.loop", None, allowed) == {}


def test_suggestions_prefer_the_same_name_elsewhere_then_siblings_then_any_close_name():
    root = {"seed": 0, "episodes": 1, "agent": {"loop": {"rate_hz": 10.0}}, "world": {"params": {"n_zones": 2}}}
    assert suggestions("rate_hz", root, root) == ["agent.loop.rate_hz"]
    assert suggestions("episode", root, root) == ["episodes"]
    assert suggestions("world.params.nzones", root["world"]["params"], root) == ["world.params.n_zones"]
    assert suggestions("agent.loop.ratehz", (), root) == ["agent.loop.rate_hz"]
    assert suggestions("xyzzy", root, root) == []


@dataclass(frozen=True)
class _Inner:
    gain: float = 1.0
    dims: tuple[int, ...] = (0, 1)


@dataclass(frozen=True)
class _Outer:
    mode: Literal["fast", "safe"] = "safe"
    limit: int | None = None
    inner: _Inner = field(default_factory=_Inner)
    names: list[str] = field(default_factory=list)
    required: str = "x"

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 0:
            raise ConfigError(f"limit must be >= 0, got {self.limit}")


def test_typed_checks_annotations_nested_paths_and_post_init():
    built = typed(_Outer, {"mode": "fast", "limit": 3, "inner": {"gain": 2, "dims": [2, 3]}, "names": ["a"]})
    assert built == _Outer("fast", 3, _Inner(2.0, (2, 3)), ["a"])
    assert isinstance(built.inner.gain, float) and isinstance(built.inner.dims, tuple)
    assert typed(_Outer, None) == _Outer()
    for data, message in [
        ({"mode": "slow"}, "cfg.mode must be one of 'fast', 'safe', got 'slow'"),
        ({"limit": True}, "cfg.limit must be an integer or null, got True"),
        ({"limit": -1}, "limit must be >= 0"),
        ({"inner": {"gain": "high"}}, "cfg.inner.gain must be a number, got 'high'"),
        ({"inner": {"dims": [0, 1.5]}}, r"cfg.inner.dims\[1\] must be an integer, got 1.5"),
        ({"inner": 3}, "cfg.inner must be a mapping, got 3"),
        ({"inner": {"gian": 1}}, "unknown key 'cfg.inner.gian', did you mean 'cfg.inner.gain'?"),
        ({"names": "a"}, "cfg.names must be a list of strings, got 'a'"),
        ({"section": 3}, r"cfg.section must be a mapping \(a config section\), got 3"),
    ]:
        with pytest.raises(ConfigError, match=message):
            typed(_Outer, data, "cfg", sections=("section",))


def test_typed_refuses_a_missing_required_field():
    @dataclass(frozen=True)
    class Needs:
        data: str

    with pytest.raises(ConfigError, match=r"data is required \(set data=...\)"):
        typed(Needs, {})


@pytest.mark.parametrize(("key", "value", "message"), [
    ("episodes", 0, "episodes must be an integer >= 1"),
    ("episodes", "abc", "episodes must be an integer, got 'abc'"),
    ("seed", -5, "seed must be an integer >= 0"),
    ("seed", 1.5, "seed must be an integer, got 1.5"),
    ("realtime", "maybe", "realtime must be true or false"),
    ("run_dir", 3, "run_dir must be a string or null, got 3"),
    ("agent", 3, r"agent must be a mapping \(a config section\)"),
])
def test_run_settings_are_checked(key, value, message):
    cfg = {"agent": {}, "world": {}, "runtime": {"name": "local"}, key: value}
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_config(cfg)


def test_shipped_configs_build_their_schemas():
    """Every command's shipped config passes its own schema (so a schema never refuses a default)."""
    cfg = load_config(["runtime=local"])
    assert RunConfig.from_config(cfg) == RunConfig()
    assert runtime_config(cfg["runtime"]) == LocalRuntime()
    ray_cfg = load_config()
    ray_runtime = runtime_config(ray_cfg["runtime"])
    assert isinstance(ray_runtime, RayRuntime) and ray_runtime.placement == "pod" and ray_runtime.torch_threads == 1
    distill_cfg = load_config(config_name="distill")
    assert typed(DistillCommand, distill_cfg, sections=DistillCommand.SECTIONS).episodes == distill_cfg["episodes"]
