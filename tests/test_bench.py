"""`amiagent bench` at toy size: every figure in the JSON is finite and every comparison is computed from
the figures it names (recomputed here). Speed is the benchmarks' business, not these tests': nothing here
asserts a time, only how the reported figures relate. `bench jepa` is tested apart (it trains a model).
Also the Wilson interval behind every success rate's 95% CI, against textbook values."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from amiagent.cli import main
from amiagent.evaluation.stats import wilson


def _report(path: Path) -> dict[str, Any]:
    """The bench's JSON, parsed strictly: a bare NaN or Infinity (which `json.dump` writes by default) fails."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{path.name} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _leaves(value: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in _leaves(item, (*path, key))]
    if isinstance(value, list):
        return [leaf for i, item in enumerate(value) for leaf in _leaves(item, (*path, i))]
    return [(path, value)]


def _assert_finite(report: dict[str, Any], nulls: set[tuple] = frozenset()) -> None:
    """Every number in `report` is finite, and exactly the paths in `nulls` are null."""
    leaves = _leaves(report)
    numbers = [(p, v) for p, v in leaves if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert numbers, "the report holds no figures"
    assert [p for p, v in numbers if not math.isfinite(v)] == []  # e.g. 1e999 parses to inf
    assert {p for p, v in leaves if v is None} == set(nulls)


def _ratio(a: float, b: float) -> Any:
    # recomputed from the same two floats the bench divided: equal to the last bit; approx only to print both
    return pytest.approx(a / b, rel=1e-12)


# --------------------------------------------------------------------------- bench plan


def test_bench_plan_reports_the_actor_against_the_bare_loop(tmp_path):
    out = tmp_path / "plan.json"
    threads = torch.get_num_threads()
    assert main(["bench", "plan", "--rounds", "2", "--per-round", "2", "--threads", "2", "--json", str(out)]) == 0
    assert torch.get_num_threads() == threads  # in-process, the bench leaves the caller's thread count alone
    report = _report(out)
    _assert_finite(report)
    actor, bare = report["figures"]["amiagent MPC actor (CEM)"], report["figures"]["bare inline torch CEM"]
    assert actor["plans"] == bare["plans"] == 2 * 2 and report["threads"] == 2
    for side in (actor, bare):
        assert 0 < side["p50_ms"] <= side["p99_ms"]
    assert report["ratio_p50"] == _ratio(actor["p50_ms"], bare["p50_ms"])
    targets = report["targets"]
    assert targets["ratio_met"] == (report["ratio_p50"] <= targets["ratio_p50_max"])
    assert targets["time_met"] == (actor["p50_ms"] < targets["p50_ms_max"])


def test_bench_plan_refuses_an_empty_run(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "plan", "--rounds", "0"])
    assert exit_.value.code == 2 and "--rounds, --per-round and --threads must be >= 1" in capsys.readouterr().err


# --------------------------------------------------------------------------- bench bus


@pytest.mark.timeout(240)  # the session's Ray cluster may start here (7 s measured on 2 shared cores); the bench ~2 s
def test_bench_bus_reports_every_transport_and_the_ray_section_against_its_reference(tmp_path, ray_cluster):
    from amiagent.bench import bus

    out = tmp_path / "bus.json"
    assert main(["bench", "bus", "--n", "20", "--size", "64", "--address", ray_cluster.address,
                 "--json", str(out)]) == 0
    report = _report(out)
    _assert_finite(report)
    results = report["results"]
    assert set(results) == ({f"{t}/{v}" for t in bus.TRANSPORTS for v in bus.VARIANTS}
                            | {f"{bus.RAY}/{v}" for v in bus.RAY_VARIANTS})
    for name, row in results.items():
        transport, variant = name.split("/")
        reference = bus.RAY_REFERENCE if transport == bus.RAY else bus.REFERENCE
        assert 0 < row["p50_us"] <= row["p99_us"], name
        if variant == reference:
            assert "ratio_p50" not in row and "ratio_p99" not in row, name
        else:  # each ratio is to the reference of its own transport
            ref = results[f"{transport}/{reference}"]
            assert row["ratio_p50"] == _ratio(row["p50_us"], ref["p50_us"]), name
            assert row["ratio_p99"] == _ratio(row["p99_us"], ref["p99_us"]), name
    ray_bus = results[f"{bus.RAY}/ray-bus"]
    assert report["ray_bus_over_raw"] == {"p50": ray_bus["ratio_p50"], "p99": ray_bus["ratio_p99"]}
    assert (report["n"], report["size"]) == (20, 64)


# --------------------------------------------------------------------------- bench loop

LOOP_STEPS = 4
"""Cycles per episode: open_field's start is metres from its goal, so every variant runs all of them."""


@pytest.mark.slow
@pytest.mark.timeout(300)  # starts 14 Ray actors (ray separate: one per module): 22 s measured on 2 shared cores
def test_bench_loop_reports_every_variant_against_the_monolithic_loop(tmp_path, ray_cluster):
    from amiagent.bench import loop

    out = tmp_path / "loop.json"
    level = logging.getLogger("amiagent").level
    # lockstep: every plan is waited for, so every cycle uses a fresh plan whatever the machine's load
    assert main(["bench", "loop", "--rounds", "1", "--fleet", "1", "--address", ray_cluster.address,
                 "--json", str(out), f"world.params.max_steps={LOOP_STEPS}", "+agent.loop.lockstep=true"]) == 0
    assert logging.getLogger("amiagent").level == level  # in-process, the bench leaves the caller's logging alone
    report = _report(out)
    _assert_finite(report)
    figures = report["figures"]
    assert tuple(figures) == loop.VARIANTS
    ref = figures[loop.REFERENCE]
    for variant, f in figures.items():
        assert (f["episodes"], f["cycles"], f["fresh_plan_share"]) == (1, LOOP_STEPS, 1.0), variant
        assert f["violations"] == 0, variant
        assert 0 < f["p50_ms"] <= f["p99_ms"] and f["plan_p50_ms"] > 0 and f["peak_pss_mib"] > 0, variant
        assert f["rate_hz"] == pytest.approx(1e3 / f["mean_ms"], rel=1e-12), variant
        assert f["added_p50_ms"] == pytest.approx(f["p50_ms"] - ref["p50_ms"], rel=1e-12, abs=1e-12), variant
        assert f["ratio_p50"] == _ratio(f["p50_ms"], ref["p50_ms"]), variant
    # bus requests are counted, not timed: none in one process; in the separate placement every CEM
    # iteration crosses processes (30.4 a cycle measured, against 6.4 for the pod)
    calls = {variant: f["cross_process_calls_per_cycle"] for variant, f in figures.items()}
    assert calls["monolithic"] == calls["local"] == 0
    assert 0 < calls["ray pod"] < calls["ray separate"]
    assert set(report["targets"]) == set(loop.TARGETS)
    for variant, (kind, bound) in loop.TARGETS.items():
        value = figures[variant]["ratio_p50" if kind == "ratio" else "added_p50_ms"]
        assert report["targets"][variant] == {kind: value, "bound": bound, "met": value <= bound}
    fleet = report["fleet"]
    assert (fleet["size"], fleet["violations"]) == (1, 0) and fleet["peak_pss_mib"] > 0
    assert fleet["met"] == (fleet["peak_pss_mib"] < fleet["target_gib"] * 1024)


def test_bench_loop_refuses_no_rounds(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "loop", "--rounds", "0"])
    assert exit_.value.code == 2 and "--rounds must be >= 1" in capsys.readouterr().err


# --------------------------------------------------------------------------- bench hierarchy

HIERARCHY_STEPS = 6
"""Steps per episode: far too few to arrive anywhere, enough to plan, climb a level and filter."""


def test_bench_hierarchy_reports_every_suite_and_the_hierarchy_against_flat(tmp_path):
    from amiagent.bench import hierarchy

    out = tmp_path / "hierarchy.json"
    worlds = ("two_rooms", "maze", "workcell", "open_field")
    assert main(["bench", "hierarchy", "--episodes", "2", "--jobs", "1", "--worlds", ",".join(worlds),
                 "--json", str(out), f"world.params.max_steps={HIERARCHY_STEPS}"]) == 0
    report = _report(out)
    flat = {f"{w}/flat" for w in worlds if "flat" in hierarchy.SUITES[w]}
    _assert_finite(report, nulls={("results", key, field) for key in flat for field in ("target", "target_met")})
    results = report["results"]
    assert set(results) == {f"{w}/{a}" for w in worlds for a in hierarchy.SUITES[w]}
    for key, s in results.items():
        world, agent = key.split("/")
        assert s["episodes"] == 2 and s["errors"] == {}, key
        assert (s["total_violations"], s["steps_mean"]) == (0, HIERARCHY_STEPS), key
        assert s["model_steps_per_cycle"] > 0 and 0 < s["plan_ms_p50"] <= s["plan_ms_p99"], key
        wins = 2 - len(s["failures"])
        assert s["success_rate"] == wins / 2, key
        assert s["success_rate_95ci"] == [round(x, 4) for x in wilson(wins, 2)], key
        target = hierarchy.TARGETS.get((world, agent))
        assert s["target"] == target, key
        met = None if target is None else s["success_rate"] >= target and s["episodes_with_violations"] == 0
        assert s["target_met"] == met, key
    for world in ("two_rooms", "maze"):
        hier, ref = results[f"{world}/hierarchical"], results[f"{world}/flat"]
        assert hier["against_flat"] == {
            "success_rate_delta": pytest.approx(hier["success_rate"] - ref["success_rate"], abs=1e-12),
            "model_steps_ratio": _ratio(hier["model_steps_per_cycle"], ref["model_steps_per_cycle"]),
            "plan_ms_p50_ratio": _ratio(hier["plan_ms_p50"], ref["plan_ms_p50"]),
        }


# --------------------------------------------------------------------------- the Wilson interval


@pytest.mark.parametrize(("wins", "n", "low", "high"), [
    # by hand, z = 1.96 (z^2 = 3.8416), p = 0.9, n = 100:
    #   centre = (p + z^2/2n) / (1 + z^2/n) = 0.919208 / 1.038416 = 0.88520
    #   half   = z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n) = 1.96 * 0.031560 / 1.038416 = 0.05957
    #   -> 0.8256 .. 0.9448: the README's "90% (82.6-94.5%)"
    (90, 100, 0.8256, 0.9448),
    # Newcombe (1998), Stat. Med. 17:857, Table I, method 3 (score, no continuity correction)
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (1, 29, 0.0061, 0.1718),
    # none won: p = 0, so half = centre and low = 0; high = 2 centre = (z^2/n)/(1 + z^2/n) = z^2/(n + z^2)
    (0, 20, 0.0, 0.1611),  # 3.8416 / 23.8416
    (0, 1, 0.0, 0.7935),  # 3.8416 / 4.8416
    # all won: the mirror image, low = n/(n + z^2), high = 1
    (20, 20, 0.8389, 1.0),  # 20 / 23.8416
    (1, 1, 0.2065, 1.0),  # 1 / 4.8416
])
def test_wilson_interval_matches_textbook_values(wins, n, low, high):
    got = wilson(wins, n)
    assert got == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))  # the values are given to 4 places


def test_wilson_interval_edges():
    assert wilson(0, 0) == (0.0, 0.0)  # no episodes: nothing known, reported as 0-0
    assert wilson(0, 50)[0] == 0.0 and wilson(50, 50)[1] == 1.0  # clipped exactly, not 1e-17 outside [0, 1]
    low, high = wilson(7, 30)
    mirror_low, mirror_high = wilson(23, 30)  # k of n won is n - k of n lost
    assert (low, high) == (pytest.approx(1 - mirror_high, abs=1e-12), pytest.approx(1 - mirror_low, abs=1e-12))
