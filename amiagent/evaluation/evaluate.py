"""`amiagent eval`: seeded episodes summarised as a table, CSV, JSON and a plot.

One row per episode (`EVAL_FIELDS`), an aggregate over all of them, both
written to the run directory as `eval.csv` and `eval.json`, and `eval.png`
showing success and ground-truth violations per seed. Under `runtime=local`
with `lockstep` (the eval default) every figure but the timings depends on the
seeds only.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from amiagent.runtime.local import Episode
from amiagent.evaluation.stats import EpisodeStats, Tally

EVAL_FIELDS = (
    "seed", "status", "success", "steps", "goal_feasible", "infeasible_reports", "violations",
    "final_distance_m", "plan_ms_p50", "plan_ms_p99", "cycle_ms_p50", "cycle_ms_p99", "missed_deadlines",
    "safety_filtered", "replans", "wall_s",
)


def episode_row(episode: Episode) -> dict[str, Any]:
    """The eval figures of one episode (plain values; violations per kind as `violations.<kind>` too)."""
    stats = EpisodeStats.of(episode)
    plan, cycle = episode.planning_ms(), episode.cycle_ms()
    figures = {
        **stats.row(),
        "final_distance_m": round(episode.final_distance, 4),
        "plan_ms_p50": _pct(plan, 50),
        "plan_ms_p99": _pct(plan, 99),
        "cycle_ms_p50": _pct(cycle, 50),
        "cycle_ms_p99": _pct(cycle, 99),
        "safety_filtered": stats.safety_filtered,
        "replans": stats.replans,
        "wall_s": round(episode.wall_s, 3),
    }
    kinds = {k: v for k, v in figures.items() if k not in EVAL_FIELDS}  # violations.<kind>, after the fields
    return {**{k: figures[k] for k in EVAL_FIELDS}, **kinds}


def summarize(episodes: Sequence[Episode]) -> dict[str, Any]:
    """Aggregate figures: success rate (with a 95% Wilson interval), violations, planning time percentiles."""
    n = len(episodes)
    tally = Tally.of([EpisodeStats.of(e) for e in episodes])
    plan = np.concatenate([e.planning_ms() for e in episodes]) if n else np.zeros(0)
    cycle = np.concatenate([e.cycle_ms() for e in episodes]) if n else np.zeros(0)
    steps = np.concatenate([e.model_steps() for e in episodes]) if n else np.zeros(0)
    return {
        "episodes": n,
        "successes": tally.successes,
        "success_rate": tally.success_rate,
        "success_rate_95ci": tally.success_rate_95ci,
        "statuses": tally.statuses,
        "episodes_with_violations": tally.episodes_with_violations,
        "total_violations": tally.total_violations,
        "goals_infeasible": tally.infeasible,
        "infeasible_reports": tally.infeasible_reports,
        "steps_mean": tally.steps_mean,
        "plan_ms_p50": _pct(plan, 50),
        "plan_ms_p99": _pct(plan, 99),
        "cycle_ms_p50": _pct(cycle, 50),
        "cycle_ms_p99": _pct(cycle, 99),
        "missed_deadlines": tally.missed_deadlines,
        "replans": tally.replans,
        "model_steps_per_cycle": round(float(np.mean(steps)), 1) if len(steps) else None,
    }


def write_eval(run_dir: Path, config_yaml: str, episodes: Sequence[Episode], label: str,
               json_path: Path | None = None, plot: bool = True) -> dict[str, Any]:
    """Write config.yaml, eval.csv, eval.json (and `json_path`) and eval.png; returns the JSON written."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config_yaml)
    rows = [episode_row(e) for e in episodes]
    kinds = sorted({k for r in rows for k in r if k.startswith("violations.")})
    with open(run_dir / "eval.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*EVAL_FIELDS, *kinds], restval=0)
        writer.writeheader()
        writer.writerows(rows)
    result = {"label": label, "aggregate": summarize(episodes), "episodes": rows}
    text = json.dumps(result, indent=2)
    (run_dir / "eval.json").write_text(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text)
    if plot and episodes:
        plot_eval(episodes, label, run_dir / "eval.png")
    return result


def plot_eval(episodes: Sequence[Episode], label: str, path: Path) -> None:
    """Two panels over the seeds: success (with the running success rate) and ground-truth violations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = np.array([e.seed for e in episodes])
    success = np.array([e.success for e in episodes], dtype=float)
    violations = np.array([e.total_violations for e in episodes])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), dpi=100, sharex=True)
    top.bar(seeds, success, width=1.0, color=np.where(success > 0, "tab:green", "tab:red"), alpha=0.6)
    top.plot(seeds, np.cumsum(success) / np.arange(1, len(seeds) + 1), color="black", lw=1.5,
             label="success rate so far")
    top.set_ylim(0, 1.05)
    top.set_ylabel("success")
    top.legend(loc="lower left", fontsize=8)
    top.set_title(f"{label}: {success.mean():.1%} success, {int(violations.sum())} violations over "
                  f"{len(episodes)} episodes")
    bottom.bar(seeds, violations, width=1.0, color="tab:red")
    bottom.set_ylabel("violations (substeps)")
    bottom.set_xlabel("seed")
    bottom.set_ylim(0, max(1, int(violations.max())) * 1.1)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None
