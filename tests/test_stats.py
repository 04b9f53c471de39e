"""EpisodeStats: one definition of success, infeasible and violation, and run, eval and bench agree on it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amiagent.bench.hierarchy import error_row, summary
from amiagent.evaluation.evaluate import episode_row, summarize
from amiagent.evaluation.report import aggregate
from amiagent.runtime.local import Episode
from amiagent.evaluation.stats import ERROR, REACHED, STATUSES, EpisodeStats, Tally, wilson

ENDINGS = [s for s in STATUSES if s != ERROR]  # how an episode that ran can end

episodes = st.builds(
    lambda seed, status, steps, feasible, keep_out, contact, reports, missed, replans, filtered: Episode(
        seed=seed, status=status, steps=steps, goal_feasible=feasible,
        violations={"keep_out": keep_out, "wall_contact": contact}, final_distance=1.0, min_clearance=0.5,
        missed_deadlines=missed, filtered=filtered, planner_errors=0, sources={}, wall_s=0.1,
        infeasible_reports=reports, replans=replans),
    st.integers(0, 10_000), st.sampled_from(ENDINGS), st.integers(0, 600), st.booleans(),
    st.integers(0, 5), st.integers(0, 3), st.integers(0, 4), st.integers(0, 4), st.integers(0, 9), st.integers(0, 9),
)


@settings(deadline=None)  # no timed asserts: a loaded machine is not a failure
@given(st.lists(episodes, max_size=12))
def test_run_eval_and_bench_count_the_same_episodes_the_same_way(eps):
    run, evaluation = aggregate(eps), summarize(eps)
    bench = summary([episode_row(e) for e in eps], [], [])
    n = len(eps)
    wins = sum(e.status == REACHED for e in eps)
    violated = sum(e.violations["keep_out"] + e.violations["wall_contact"] > 0 for e in eps)
    for figures in (run, evaluation, bench):
        assert figures["episodes"] == n
        assert figures["success_rate"] == (wins / n if n else 0.0)
        assert figures["episodes_with_violations"] == violated
        assert figures["total_violations"] == sum(sum(e.violations.values()) for e in eps)
        assert figures["missed_deadlines"] == sum(e.missed_deadlines for e in eps)
        assert figures["steps_mean"] == pytest.approx(sum(e.steps for e in eps) / n if n else 0.0, rel=1e-12)
    infeasible = sum(not e.goal_feasible for e in eps)
    assert run["infeasible_goals_reported"] == evaluation["goals_infeasible"] == infeasible
    assert evaluation["success_rate_95ci"] == bench["success_rate_95ci"] == [round(v, 4) for v in wilson(wins, n)]
    assert evaluation["infeasible_reports"] == bench["infeasible_reports"] == sum(e.infeasible_reports for e in eps)
    assert run["safety_filtered"] == sum(e.filtered for e in eps)
    assert bench["failures"] == sorted(e.seed for e in eps if e.status != REACHED)


def test_infeasible_is_the_agents_verdict_not_how_the_episode_ended():
    # told infeasible, the episode ran out of steps before the body came to rest: still an infeasible goal
    timed_out = EpisodeStats(seed=1, status="timeout", goal_feasible=False)
    rested = EpisodeStats(seed=2, status="infeasible_goal", goal_feasible=False)
    assert timed_out.infeasible and rested.infeasible and not timed_out.success
    assert Tally.of([timed_out, rested, EpisodeStats(seed=3, status=REACHED)]).infeasible == 2


@settings(deadline=None)  # no timed asserts: a loaded machine is not a failure
@given(st.builds(EpisodeStats, seed=st.integers(0, 99), status=st.sampled_from(STATUSES), steps=st.integers(0, 50),
                 goal_feasible=st.booleans(),
                 violations=st.dictionaries(st.sampled_from(["keep_out", "speed", "bounds"]), st.integers(0, 9)),
                 infeasible_reports=st.integers(0, 3), missed_deadlines=st.integers(0, 3)))
def test_a_row_reads_back_as_the_same_statistics(stats):
    back = EpisodeStats.from_row(stats.row())
    assert (back.success, back.infeasible, back.violated, back.ran) == (stats.success, stats.infeasible,
                                                                       stats.violated, stats.ran)
    assert back.violations == stats.violations and back.total_violations == stats.total_violations
    assert (back.seed, back.status, back.steps, back.infeasible_reports, back.missed_deadlines) == (
        stats.seed, stats.status, stats.steps, stats.infeasible_reports, stats.missed_deadlines)


def test_an_episode_that_raised_is_a_failure_with_its_steps_left_out():
    rows = [error_row(4, RuntimeError("no camera")), EpisodeStats(5, REACHED, steps=30).row()]
    s = summary(rows, [], [])
    assert s["failures"] == [4] and s["errors"] == {4: "RuntimeError: no camera"}
    assert s["success_rate"] == 0.5 and s["steps_mean"] == 30.0 and s["total_violations"] == 0
    assert Tally.of([]).steps_mean == 0.0 and Tally.of([]).success_rate_95ci == [0.0, 0.0]


def test_a_status_nobody_counts_is_refused():
    with pytest.raises(ValueError, match="reached"):
        EpisodeStats(seed=0, status="arrived")


def test_progress_line():
    tally = Tally.of([EpisodeStats(0, REACHED), EpisodeStats(1, "timeout", violations={"speed": 2})])
    assert tally.progress() == "success 1/2, with violations 1"
