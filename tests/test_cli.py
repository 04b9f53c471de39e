"""The command line: `amiagent run` end to end, `plugins`, `check`, and clear errors.

Whole runs go through a child process (`python -m amiagent.cli`, and the installed
script); the quick commands that only print or refuse call `main()` in this process,
which is the same code without a second import of torch (seconds a child here).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from amiagent.bus import Subscriber
from amiagent.cli import main

AMIAGENT = [sys.executable, "-m", "amiagent.cli"]
EVENT_TIMEOUT_S = 120.0
"""Longest wait for something a child run is sure to do (register, publish, exit, end its processes): not a
measurement, a guard that turns a hang into a failure naming what never came."""
RUN_MARKER = "AMIAGENT_TEST_RUN"
"""Set in a child run's environment, so the processes it started (Ray's, its workers) can be told from
any other Ray on this machine: they inherit it."""


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
    proc = _run("run", "agent=navigator", "world=open_field", "runtime=local", "seed=3", "lockstep=true",
                f"run_dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    # lockstep: the episode depends on the seed only, and seed 3 reaches its goal
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


def _child_env(tmp_path) -> dict[str, str]:
    """The environment of a child run: its own control registry, unbuffered output, and a marker of its own."""
    return {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1", "AMIAGENT_RUNTIME_DIR": str(tmp_path / "agents"),
            RUN_MARKER: uuid.uuid4().hex}


def _started_by(env: dict[str, str]) -> dict[int, str]:
    """pid -> command line of each live process carrying `env`'s marker: the child run and all it started."""
    import psutil

    found = {}
    for p in psutil.process_iter():
        try:
            if p.environ().get(RUN_MARKER) == env[RUN_MARKER] and p.status() != psutil.STATUS_ZOMBIE:
                found[p.pid] = " ".join(p.cmdline())
        except psutil.Error:  # gone meanwhile, or another user's
            continue
    return found


def _wait_all_ended(env: dict[str, str]) -> None:
    """Wait until no process of the child run is left (Ray's end theirs soon after the run, not at once)."""
    end = time.monotonic() + EVENT_TIMEOUT_S
    while left := _started_by(env):
        if time.monotonic() > end:
            pytest.fail(f"processes of the run still alive {EVENT_TIMEOUT_S:g} s after it exited: {left}")
        time.sleep(0.1)


@pytest.mark.slow
def test_run_defaults_to_ray_quietly_and_leaves_nothing_behind(tmp_path):
    env = _child_env(tmp_path)
    proc = subprocess.run([*AMIAGENT, "run", "seed=1", "lockstep=true", f"run_dir={tmp_path / 'run'}", "progress=false"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    # lockstep: the episode is the local one (test_runtime_ray), and seed 1 reaches its goal
    assert "ray runtime, placement pod" in proc.stdout and "success 100%" in proc.stdout
    output = proc.stdout + proc.stderr
    for noise in ("(raylet)", "Token authentication", "INFO worker", "Started a local Ray instance", "pid="):
        assert noise not in output
    assert not list((tmp_path / "agents").glob("*.json"))  # the control registration is gone with the run
    _wait_all_ended(env)  # Ray's processes and the module actors end with the run (ours only: not other Rays)


def _default_sigint() -> None:
    # a shell may start tests with SIGINT ignored, which a child inherits: give it the default back
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _telemetry_endpoint(run: subprocess.Popen) -> str:
    """Read the run's output until it says where it publishes telemetry (its control endpoint is registered by then)."""
    for line in run.stdout:
        if line.startswith("telemetry on "):
            return line.split()[2].rstrip(",")
    pytest.fail(f"the run ended before publishing telemetry: {run.wait()}, {run.stderr.read()}")


def _heard_until(listener: Subscriber, wanted) -> dict:
    """The first telemetry message `wanted(message)` accepts (the run publishes every cycle until interrupted)."""
    end = time.monotonic() + EVENT_TIMEOUT_S
    while time.monotonic() < end:
        got = listener.recv(timeout=1.0)
        if got is not None and wanted(got[1]):
            return got[1]
    pytest.fail(f"no such telemetry within {EVENT_TIMEOUT_S:g} s")


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["local", "ray"])
def test_swap_agents_and_telemetry_reach_a_running_agent(tmp_path, monkeypatch, capsys, runtime):
    env = _child_env(tmp_path)
    monkeypatch.setenv("AMIAGENT_RUNTIME_DIR", env["AMIAGENT_RUNTIME_DIR"])  # for `agents` and `swap` below
    # a thousand episodes: the run lasts until this test interrupts it, so nothing below races its end
    run = subprocess.Popen([*AMIAGENT, "run", f"runtime={runtime}", "lockstep=true", "episodes=1000",
                            "agent.name=swapper", "runtime.telemetry=tcp://127.0.0.1:0", "progress=false", "plot=false",
                            f"run_dir={tmp_path / 'run'}"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                           preexec_fn=_default_sigint)
    listener = None
    try:
        listener = Subscriber(_telemetry_endpoint(run), ["telemetry/"])
        heard = _heard_until(listener, lambda m: True)  # telemetry reaches a subscriber of `amiagent run`
        assert heard.kind == "telemetry" and heard["values"]["checked"] == 1.0
        code, out, err = _main(capsys, "agents")
        assert code == 0, out + err
        row = next(line for line in out.splitlines() if "swapper" in line)
        assert f" {runtime} " in row and "actor: mpc" in out
        code, out, err = _main(capsys, "swap", "swapper", "actor", "params.samples=120", "params.elites=12")
        assert code == 0, out + err
        assert "actor: mpc {" in out and "'samples': 120" in out and "'iterations': 10" in out
        assert "now running" in out  # applied at a cycle boundary within SWAP_WAIT_S (10 s; a cycle takes ~0.05 s)
        # the cycle that took the new actor says so, and planned with it (lockstep: the plan is waited for)
        swapped = _heard_until(listener, lambda m: any(e.startswith("swap actor: mpc") and "'samples': 120" in e
                                                       for e in m.get("events") or []))
        assert swapped["values"]["source.plan"] == 1.0 and swapped["values"]["checked"] == 1.0
        code, out, _ = _main(capsys, "swap", "actor", "name=mpcc")
        assert code == 2 and "swap refused" in out and "Did you mean 'mpc'" in out
        code, out, _ = _main(capsys, "swap", "nobody", "actor", "name=mpc")
        assert code == 2 and "no running agent named 'nobody'" in out
        if runtime == "ray":  # the marker finds the run's module actor (so its absence below means something)
            assert any("ray::ModuleHost" in cmd for cmd in _started_by(env).values())
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=EVENT_TIMEOUT_S)
    finally:
        if listener is not None:
            listener.close()
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 130 and "interrupted" in out, err
    assert "Traceback" not in err, err
    assert not list((tmp_path / "agents").glob("*.json"))  # unregistered on the way out
    _wait_all_ended(env)


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


def test_the_run_reports_each_restart_its_runtime_recorded(navigator_config, capsys):
    """What `run` and `eval` print after an episode about restarted module groups comes from the agent's
    runtime (here an in-process one carrying two recorded restarts; none happen in process)."""
    from rich.console import Console

    from amiagent.agent import InProcess
    from amiagent.build import build_agent
    from amiagent.cli.launch import report_recoveries
    from amiagent.runtime.supervisor import Recovery

    runtime = InProcess()
    agent = build_agent(navigator_config["agent"], runtime)
    try:
        out = Console(force_terminal=False, width=200)
        report_recoveries(agent, out)
        assert capsys.readouterr().out == ""
        runtime.recoveries += [Recovery("planner", ("actor",), 1.0, 1.5, 1), Recovery("pod", ("memory",), 2.0, 4.25, 2)]
        report_recoveries(agent, out)
        lines = capsys.readouterr().out.splitlines()
        assert lines == ["group planner (actor) restarted (restart 1): modules back after 0.50 s",
                         "group pod (memory) restarted (restart 2): modules back after 2.25 s"]
    finally:
        agent.close()
