"""`amiagent bench jepa` at toy size (4 episodes of data, two models of 3 training steps, one 120-step episode each):
the JSON's figures are finite, the pooled figures, the spread over training seeds and the ratio to the
oracle are recomputed here from the per-model ones, and the same command run twice trains the same
models (identical held-out figures) and gets the same episodes. Nothing here measures how well a
JEPA plans: that is the full benchmark's job (README, "Learned world models")."""

from __future__ import annotations

import os
import statistics

import pytest

from amiagent.cli import main
from amiagent.evaluation.stats import wilson
from tests.test_bench import _assert_finite, _ratio, _report

TOY = ["bench", "jepa", "--world", "open_field", "--episodes", "1", "--train-seeds", "2", "--data-episodes", "4",
       "--data-steps", "20", "--train-steps", "3", "--max-steps", "120", "--jobs", "2"]
"""The oracle (navigator) reaches seed 1000's goal within 120 steps (seeds 1000-1001 took 65.5 steps on
average), so its success is not zero and the ratio to it is a number; the 3-step models reach nothing."""


def _bench(tmp_path, name: str, *extra: str) -> dict:
    out = tmp_path / f"{name}.json"
    assert main([*TOY, "--out", str(tmp_path / name), "--json", str(out), *extra]) == 0
    return _report(out)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_jepa_reports_each_model_their_spread_and_pool_and_repeats_itself(tmp_path):
    first = _bench(tmp_path, "a")
    _assert_finite(first, nulls={("results", "oracle", "target_met")})
    models, pooled, oracle = first["models"], first["results"]["jepa"], first["results"]["oracle"]
    assert [m["train_seed"] for m in models] == [0, 1]
    for m in models:
        assert m["train_steps"] == 3 and m["train_threads"] == first["train_settings"]["threads"] == 2
        assert m["train_stopped_by_time"] is False and first["train_settings"]["max_minutes"] == 0.0
        assert m["result"]["episodes"] == 1
    for s in (*[m["result"] for m in models], pooled, oracle):
        wins = round(s["success_rate"] * s["episodes"])
        assert s["success_rate_95ci"] == [round(v, 4) for v in wilson(wins, s["episodes"])]
    # the pool is the models' episodes together
    assert pooled["episodes"] == sum(m["result"]["episodes"] for m in models) == 2
    assert pooled["success_rate"] == pytest.approx(
        sum(m["result"]["success_rate"] * m["result"]["episodes"] for m in models) / 2, abs=1e-12)
    assert pooled["episodes_with_violations"] == sum(m["result"]["episodes_with_violations"] for m in models)
    assert sorted(pooled["failures"]) == sorted(f for m in models for f in m["result"]["failures"])
    assert pooled["target_met"] == (pooled["success_rate"] >= 0.95 and pooled["episodes_with_violations"] == 0)
    # the spread is over the models' rates
    rates = [m["result"]["success_rate"] for m in models]
    spread = first["spread"]
    assert spread["success_rates"] == rates and spread["train_seeds"] == [0, 1]
    assert (spread["success_rate_min"], spread["success_rate_max"]) == (min(rates), max(rates))
    assert spread["success_rate_mean"] == pytest.approx(statistics.mean(rates), abs=1e-12)
    assert spread["success_rate_std"] == pytest.approx(statistics.stdev(rates), abs=1e-12)
    assert oracle["success_rate"] > 0 and first["success_ratio_to_oracle"] == _ratio(pooled["success_rate"],
                                                                                     oracle["success_rate"])

    # the same command into another folder: the same models (held-out figures to the last bit), the same episodes
    second = _bench(tmp_path, "b")

    def episodes(result: dict) -> dict:  # all but the timings: planning ms, and plans late in lockstep
        return {k: v for k, v in result.items() if not k.startswith("plan_ms") and k != "missed_deadlines"}

    for a, b in zip(first["models"], second["models"], strict=True):
        assert a["train_final"] | {"seconds": 0} == b["train_final"] | {"seconds": 0}
        assert episodes(a["result"]) == episodes(b["result"])

    # --reuse evaluates the checkpoints as they are: nothing retrained, the recorded figures reported
    checkpoint = models[0]["checkpoint"]
    written = os.stat(checkpoint).st_mtime_ns
    reused = _bench(tmp_path, "a", "--reuse")
    assert os.stat(checkpoint).st_mtime_ns == written
    assert [m["train_final"] for m in reused["models"]] == [m["train_final"] for m in models]
    assert [m["train_s"] for m in reused["models"]] == [m["train_final"]["seconds"] for m in models]


def test_bench_jepa_refuses_empty_or_negative_settings(capsys):
    for bad in (["--train-seeds", "0"], ["--episodes", "0"], ["--train-minutes", "-1"], ["--max-steps", "0"]):
        with pytest.raises(SystemExit) as stopped:
            main(["bench", "jepa", *bad])
        assert stopped.value.code == 2
        assert bad[0] in capsys.readouterr().err
