"""Tests of `amiagent collect` and its scripted policies: real pybullet, real HDF5 files, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest

from amiagent import cli
from amiagent.learning.collect import FORMAT, collect_episode
from amiagent.learning.scripted import Arena, make_policy
from amiagent.sim.camera import TopCamera
from amiagent.sim.maze import Maze
from amiagent.sim.worlds import OpenField, TwoRooms

WORLDS = {"open_field": OpenField, "two_rooms": TwoRooms, "maze": Maze}


def run(*args: str) -> int:
    return cli.main(["collect", "progress=false", *args])


def episodes(path) -> dict[str, dict[str, np.ndarray]]:
    """Every complete episode in the file: name -> datasets."""
    with h5py.File(path, "r") as f:
        return {name: {k: g[k][()] for k in g} for name, g in f["episodes"].items() if g.attrs.get("complete")}


def robot_centroid(frame: np.ndarray) -> np.ndarray:
    r, g, b = (frame[..., k].astype(int) for k in range(3))
    rows, cols = np.nonzero((b > 180) & (r < 100) & (g < 150))
    return np.array([rows.mean(), cols.mean()])


def test_a_tiny_collection_writes_the_documented_format(tmp_path):
    path = tmp_path / "d.h5"
    assert run("world=open_field", "policy=random", "episodes=3", "steps=10", "seed=5", f"data={path}") == 0
    with h5py.File(path, "r") as f:
        a = f.attrs
        assert a["format"] == FORMAT and a["format_version"] == 1
        assert a["world"] == "open_field" and a["policy"] == "random"
        world_params = json.loads(a["world_params"])
        assert world_params["camera"] is True and world_params["image_size"] == 64 and world_params["n_zones"] == 2
        assert json.loads(a["policy_params"]) == {"drag": 0.5, "hold_max": 5, "hold_min": 1, "margin": 1.0}
        assert (a["seed"], a["episodes_requested"], a["steps"], a["image_size"]) == (5, 3, 10, 64)
        assert a["image_key"] == "top" and a["control_dt"] == pytest.approx(0.1)
        np.testing.assert_array_equal(a["action_low"], [-2.0, -2.0])
        np.testing.assert_array_equal(a["action_high"], [2.0, 2.0])
        assert a["action_low"].dtype == np.float64
        assert list(a["state_names"]) == ["x", "y", "vx", "vy"]
        assert a["created"].startswith("20") and a["amiagent_version"]
        assert sorted(f["episodes"]) == ["000000", "000001", "000002"]
        camera = TopCamera(((-5.0, 5.0), (-5.0, 5.0)), 64)
        for i, (name, g) in enumerate(sorted(f["episodes"].items())):
            assert g.attrs["complete"] and g.attrs["seed"] == 5 + i and g.attrs["steps"] == 10
            assert g.attrs["goal"].dtype == np.float64 and g.attrs["goal"].shape == (2,)
            assert set(json.loads(g.attrs["violations"])) == {"keep_out", "wall_contact", "speed", "bounds"}
            frames, states, actions = g["frames"], g["states"][()], g["actions"][()]
            assert frames.shape == (11, 64, 64, 3) and frames.dtype == np.uint8
            assert frames.chunks == (11, 64, 64, 3) and frames.compression == "gzip"
            assert states.shape == (11, 4) and states.dtype == np.float32
            assert actions.shape == (10, 2) and actions.dtype == np.float32
            assert np.all(np.abs(actions) <= 2.0)
            # actions[t] takes states[t] to states[t+1]: a free double integrator in the open field
            np.testing.assert_allclose(states[1:, 2:], states[:-1, 2:] + 0.1 * actions, atol=1e-5)
            assert np.all(states[0, 2:] == 0.0)  # each episode starts at rest
            # and frames[t] shows the robot at states[t]
            for frame, s in zip(frames[()], states):
                np.testing.assert_allclose(robot_centroid(frame), camera.pixel(s[0], s[1]), atol=0.8)


def test_frames_are_chunked_sixteen_at_a_time_for_longer_episodes(tmp_path):
    path = tmp_path / "d.h5"
    assert run("world=two_rooms", "policy=noisy_expert", "episodes=1", "steps=40",
               "world.params.image_size=32", f"data={path}") == 0
    with h5py.File(path, "r") as f:
        assert f.attrs["image_size"] == 32 and json.loads(f.attrs["world_params"])["image_size"] == 32
        assert f["episodes/000000/frames"].shape == (41, 32, 32, 3)
        assert f["episodes/000000/frames"].chunks == (16, 32, 32, 3)


def test_same_seeds_give_the_same_data_and_a_partial_episode_is_redone(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    args = ("world=two_rooms", "policy=noisy_expert", "episodes=3", "steps=12")
    assert run(*args, f"data={a}") == 0
    assert run(*args, f"data={b}") == 0
    with h5py.File(b, "a") as f:  # as if killed while writing episode 1
        g = f["episodes/000001"]
        del g.attrs["complete"], g["actions"]
    assert sorted(episodes(b)) == ["000000", "000002"]
    assert run(*args, f"data={b}") == 0
    ref, got = episodes(a), episodes(b)
    assert sorted(got) == ["000000", "000001", "000002"]
    for name in ref:
        for key in ("frames", "states", "actions"):
            np.testing.assert_array_equal(got[name][key], ref[name][key])


def test_a_file_of_other_settings_is_refused_unless_overwritten(tmp_path, capsys):
    path = tmp_path / "d.h5"
    assert run("episodes=2", "steps=10", f"data={path}") == 0
    capsys.readouterr()
    for change, named in (("policy.params.drag=1.0", "drag=0.5 (now 1.0)"), ("steps=11", "steps=10"), ("policy=noisy_expert", "policy='random'"),
                          ("world.params.n_zones=1", "n_zones=2 (now 1)"), ("world=two_rooms", "world='open_field'"),
                          ("world.params.image_size=32", "image_size=64 (now 32)"), ("seed=1", "seed=0")):
        assert run("episodes=2", "steps=10", f"data={path}", change) == 2
        out = capsys.readouterr().out
        assert named in out and "overwrite=true" in out and "data=" in out, out
    assert run("episodes=2", "steps=11", "overwrite=true", f"data={path}") == 0
    with h5py.File(path, "r") as f:
        assert f.attrs["steps"] == 11 and len(f["episodes"]) == 2
    (tmp_path / "junk.h5").write_text("not hdf5")
    assert run(f"data={tmp_path / 'junk.h5'}") == 2
    assert "overwrite=true" in capsys.readouterr().out


def test_a_file_from_before_camera_supersample_resumes_as_collected_with_one_sample(tmp_path, capsys):
    path = tmp_path / "d.h5"
    assert run("episodes=1", "steps=10", f"data={path}") == 0
    with h5py.File(path, "r+") as f:  # as written before the setting existed
        params = json.loads(f.attrs["world_params"])
        del params["camera_supersample"]
        f.attrs["world_params"] = json.dumps(params)
    assert run("episodes=2", "steps=10", f"data={path}") == 0
    capsys.readouterr()
    assert run("episodes=2", "steps=10", f"data={path}", "world.params.camera_supersample=2") == 2
    assert "camera_supersample=1 (now 2)" in capsys.readouterr().out


def test_bad_options_are_clear_errors(tmp_path, capsys):
    for args, expected in ((["world=workcell"], "point-robot world"), (["policy.params.drag=-1"], "drag"),
                           (["episodes=0"], "episodes"), (["policy.params.hold_max=0"], "hold_max")):
        assert run(*args, f"data={tmp_path / 'x.h5'}") == 2
        assert expected in capsys.readouterr().out


FIRST_SEED = 3
INTERRUPTED = ("world=two_rooms", "policy=random", "episodes=6", "steps=10", f"seed={FIRST_SEED}")
HELD_EPISODE = 3
"""The episode an interrupted collection is signalled in: the child holds at its start until the signal came."""

# `amiagent collect` itself, with one thing added: before episode HELD_EPISODE it says "holding" and waits
# for its stdin to close. The test signals it then, so the signal always lands while that episode is being
# collected, never after the last one however loaded the machine; stdin is closed after the signal, so a
# signal that did nothing lets the collection finish (and the test fail) instead of hanging.
HOLDING_CHILD = """
import sys
import amiagent.learning.collect as collect
collect_episode = collect.collect_episode
def held(world, policy, seed, steps):
    if seed == {seed}:
        print("holding", file=sys.stderr, flush=True)
        sys.stdin.read()
    return collect_episode(world, policy, seed, steps)
collect.collect_episode = held
from amiagent.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The episodes of `INTERRUPTED` collected in one go: what every interrupted and resumed run must equal."""
    ref = tmp_path_factory.mktemp("uninterrupted") / "ref.h5"
    assert run(*INTERRUPTED, f"data={ref}") == 0
    return episodes(ref)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_collection_keeps_its_episodes_and_resumes_to_the_same_data(tmp_path, signum, uninterrupted):
    path = tmp_path / "d.h5"
    args = list(INTERRUPTED)
    cmd = [sys.executable, "-c", HOLDING_CHILD.format(seed=FIRST_SEED + HELD_EPISODE), "-v", "collect", "progress=false", *args,
           f"data={path}"]
    # a shell may start tests with SIGINT ignored, which a child inherits: give it the default back
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        logged = []
        for line in proc.stderr:  # episodes are logged once written and flushed
            logged.append(line)
            if line.strip() == "holding":
                break
        else:
            pytest.fail(f"the collection ended without reaching episode {HELD_EPISODE}: {''.join(logged)}")
        proc.send_signal(signum)
        proc.stdin.close()
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 130, rest  # interrupted, cleanly
    finally:
        proc.kill()
    assert sum("complete (seed" in line for line in logged) == HELD_EPISODE
    kept = episodes(path)  # readable as is: the episodes written before the signal, and not the one it cut short
    assert sorted(kept) == [f"{i:06d}" for i in range(HELD_EPISODE)]
    assert run(*args, f"data={path}") == 0  # resume
    got, want = episodes(path), uninterrupted
    assert sorted(got) == sorted(want) == [f"{i:06d}" for i in range(6)]
    for name in want:
        for key in ("frames", "states", "actions"):
            np.testing.assert_array_equal(got[name][key], want[name][key])


@pytest.mark.slow
@pytest.mark.parametrize("world_name", WORLDS)
@pytest.mark.parametrize("policy_name", ["random", "noisy_expert"])
def test_policies_stay_in_the_arena(world_name, policy_name):
    cls = WORLDS[world_name]
    world = cls(cls.Params(camera=True))
    policy = make_policy({"name": policy_name})
    try:
        crossings = 0
        for seed in range(4):
            ep = collect_episode(world, policy, seed, 100)
            (xmin, xmax), (ymin, ymax) = world.layout().bounds
            x, y = ep["states"][:, 0], ep["states"][:, 1]
            r = world.params.robot_radius
            assert np.all((x >= xmin + r - 1e-3) & (x <= xmax - r + 1e-3)), f"seed {seed} left the arena in x"
            assert np.all((y >= ymin + r - 1e-3) & (y <= ymax - r + 1e-3)), f"seed {seed} left the arena in y"
            assert json.loads(ep["attrs"]["violations"])["bounds"] == 0
            crossings += int(np.sum(np.diff(np.sign(x)) != 0))
        if world_name == "two_rooms" and policy_name == "noisy_expert":
            assert crossings >= 1, "the expert never went through the door"
    finally:
        world.close()


def test_episodes_start_all_over_the_free_arena():
    world = TwoRooms(TwoRooms.Params(camera=True))
    policy = make_policy({"name": "random"})
    try:
        starts = np.array([collect_episode(world, policy, seed, 1)["states"][0] for seed in range(48)])
        np.testing.assert_array_equal(starts[:, 2:], 0.0)  # at rest
        arena = Arena.of(world)
        assert all(arena.clear(x, y, 0.1) for x, y in starts[:, :2].astype(float))  # never in a wall
        counts, _, _ = np.histogram2d(starts[:, 0], starts[:, 1], bins=2, range=[[-5, 5], [-3, 3]])
        assert counts.min() >= 5, counts  # both rooms, top and bottom
        rng = np.random.default_rng(0)
        points = np.array([arena.free_point(rng) for _ in range(400)])
        counts, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=4, range=[[-5, 5], [-3, 3]])
        assert counts.min() > 5, counts  # uniform over the arena
    finally:
        world.close()
