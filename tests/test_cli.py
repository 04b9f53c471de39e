"""The command line: `amiagent run` end to end, `plugins`, `check`, and clear errors.

Whole runs go through a child process (`python -m amiagent.cli`, and the installed
script); the quick commands that only print or refuse call `main()` in this process,
which is the same code without a second import of torch (seconds a child here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from amiagent.cli import main

AMIAGENT = [sys.executable, "-m", "amiagent.cli"]


def _run(*args, cwd=None, timeout=300):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*AMIAGENT, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def _main(capsys, *args) -> tuple[int, str, str]:
    """`amiagent ARGS` in this process: the exit status and what it printed to stdout and stderr."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_run_writes_summary_trajectory_and_plot(tmp_path):
    run_dir = tmp_path / "run"
    proc = _run("run", "agent=navigator", "world=open_field", "runtime=local", "seed=3", f"run_dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    assert "navigator in open_field" in proc.stdout and "success 100%" in proc.stdout
    assert "cycle ms p50/p99" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    episode = summary["episodes"][0]
    assert episode["status"] == "reached" and episode["total_violations"] == 0
    assert episode["cycle_ms_p50"] > 0 and "missed_deadlines" in episode
    lines = (run_dir / "trajectory.csv").read_text().splitlines()
    assert lines[0].startswith("episode,cycle,t,x,y,vx,vy,ax,ay")
    assert len(lines) == episode["steps"] + 1
    png = (run_dir / "path.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "world:" in (run_dir / "config.yaml").read_text()


def test_run_cfg_prints_composed_config(capsys):
    code, out, err = _main(capsys, "run", "world=two_rooms", "agent.actor.params.samples=64", "--cfg")
    assert code == 0, err
    assert "name: two_rooms" in out and "samples: 64" in out


def test_unknown_config_option_is_a_clear_error(capsys):
    code, out, _ = _main(capsys, "run", "world=moon")
    assert code == 2
    assert "Could not find 'world/moon'" in out and "open_field" in out


def test_bad_plugin_parameter_is_a_clear_error(tmp_path, capsys):
    code, out, _ = _main(capsys, "run", "+agent.world_model.params.mass=3", f"run_dir={tmp_path}")
    assert code == 2
    assert "unknown parameter(s) mass" in out and "Valid parameters" in out


def test_plugins_lists_first_party_plugins(capsys):
    code, out, err = _main(capsys, "plugins")
    assert code == 0 and "Traceback" not in err
    rows = [line for line in out.splitlines() if "amiagent" in line and "│" in line]
    for name in ("point_mass", "keep_out", "speed_limit", "workspace_bounds", "open_field", "two_rooms", "mpc"):
        row = next(r for r in rows if f" {name} " in r)
        assert " ok " in row, row


def test_check_command_runs_the_contract_checker(capsys):
    code, out, _ = _main(capsys, "check", "world_model", "point_mass")
    assert code == 0, out
    assert "passes the world_model contract checks" in out
    code, out, _ = _main(capsys, "check", "world_model", "pointmass")
    assert code == 2 and "Did you mean 'point_mass'" in out


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "amiagent"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "run" in proc.stdout and "bench" in proc.stdout


def _ray_processes() -> set[int]:
    """Process ids of module actors (Ray names its workers `ray::ModuleHost...`)."""
    import psutil

    found = set()
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any("ray::ModuleHost" in part for part in p.info["cmdline"] or []):
                found.add(p.pid)
        except psutil.Error:
            continue
    return found


@pytest.mark.slow
def test_run_defaults_to_ray_quietly_and_leaves_nothing_behind(tmp_path):
    before = _ray_processes()
    env_dir = tmp_path / "agents"
    proc = subprocess.run([*AMIAGENT, "run", "seed=1", f"run_dir={tmp_path / 'run'}", "progress=false"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200", "AMIAGENT_RUNTIME_DIR": str(env_dir)})
    assert proc.returncode == 0, proc.stderr
    assert "ray runtime, placement pod" in proc.stdout and "success 100%" in proc.stdout
    output = proc.stdout + proc.stderr
    for noise in ("(raylet)", "Token authentication", "INFO worker", "Started a local Ray instance", "pid="):
        assert noise not in output
    assert not list(env_dir.glob("*.json"))  # the control registration is gone with the run
    assert _ray_processes() <= before  # no module actor outlives the run


@pytest.mark.slow
def test_swap_and_agents_reach_a_running_agent(tmp_path):
    env = {**os.environ, "COLUMNS": "200", "AMIAGENT_RUNTIME_DIR": str(tmp_path / "agents")}
    run = subprocess.Popen([*AMIAGENT, "run", "runtime=local", "realtime=true", "episodes=2", "agent.name=swapper",
                            f"run_dir={tmp_path / 'run'}", "progress=false"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(600):
            if list((tmp_path / "agents").glob("swapper.json")) or run.poll() is not None:
                break
            import time

            time.sleep(0.05)
        listed = subprocess.run([*AMIAGENT, "agents"], capture_output=True, text=True, env=env, timeout=60)
        assert listed.returncode == 0 and "swapper" in listed.stdout and "mpc" in listed.stdout
        swap = subprocess.run([*AMIAGENT, "swap", "swapper", "actor", "params.samples=120", "params.elites=12"],
                              capture_output=True, text=True, env=env, timeout=60)
        assert swap.returncode == 0, swap.stdout + swap.stderr
        assert "actor: mpc {" in swap.stdout and "'samples': 120" in swap.stdout and "'iterations': 10" in swap.stdout
        assert "now running" in swap.stdout
        bad = subprocess.run([*AMIAGENT, "swap", "actor", "name=mpcc"], capture_output=True, text=True, env=env,
                             timeout=60)
        assert bad.returncode == 2 and "swap refused" in bad.stdout and "Did you mean 'mpc'" in bad.stdout
        missing = subprocess.run([*AMIAGENT, "swap", "nobody", "actor", "name=mpc"], capture_output=True, text=True,
                                 env=env, timeout=60)
        assert missing.returncode == 2 and "no running agent named 'nobody'" in missing.stdout
        out, err = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    assert "success 100%" in out and "ground-truth violations 0" in out


TIMING_FIELDS = {"plan_ms_p50", "plan_ms_p99", "cycle_ms_p50", "cycle_ms_p99", "wall_s", "missed_deadlines"}


@pytest.mark.slow
def test_eval_writes_table_csv_json_plot_and_repeats_itself_under_the_same_seeds(tmp_path):
    results = []
    for i in range(2):
        run_dir, copy = tmp_path / f"eval{i}", tmp_path / f"copy{i}.json"
        proc = _run("eval", "agent=hierarchical", "world=two_rooms", "runtime=local", "episodes=2", "seed=4",
                    "world.params.max_steps=25", f"run_dir={run_dir}", "--json", str(copy))
        assert proc.returncode == 0, proc.stderr + proc.stdout
        assert "eval: hierarchical in two_rooms" in proc.stdout and "planning ms per cycle p50 / p99" in proc.stdout
        written = json.loads((run_dir / "eval.json").read_text())
        assert json.loads(copy.read_text()) == written
        rows = (run_dir / "eval.csv").read_text().splitlines()
        assert rows[0].startswith("seed,status,success,steps,goal_feasible,infeasible_reports,violations")
        assert len(rows) == 3
        assert (run_dir / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        agg = written["aggregate"]
        assert agg["episodes"] == 2 and agg["plan_ms_p50"] > 0 and agg["total_violations"] == 0
        assert agg["replans"] >= 2 and agg["model_steps_per_cycle"] > 0
        results.append([{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in written["episodes"]])
    assert results[0] == results[1]  # lockstep: the same seeds give the same episodes, step for step
    assert [row["seed"] for row in results[0]] == [4, 5]


def test_eval_rejects_bad_options_clearly(capsys):
    code, out, _ = _main(capsys, "eval", "episodes=0", "runtime=local")
    assert code == 2 and "episodes must be an integer >= 1" in out
