"""Run directories: summary.json, a trajectory log and a top-down plot of each episode."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from amiagent.contracts import WorldLayout
from amiagent.runtime.local import Episode
from amiagent.evaluation.stats import EpisodeStats, Tally

TRAJECTORY_FIELDS = (
    "episode", "cycle", "t", "x", "y", "vx", "vy", "ax", "ay", "source", "filtered",
    "missed_deadline", "plan_ms", "cycle_ms", "cost", "predicted_violation",
)


def aggregate(episodes: Sequence[Episode]) -> dict[str, Any]:
    """Figures over all episodes of a run."""
    ms = np.concatenate([e.cycle_ms() for e in episodes]) if episodes else np.zeros(0)
    tally = Tally.of([EpisodeStats.of(e) for e in episodes])
    return {
        "episodes": tally.episodes,
        "success_rate": tally.success_rate,
        "infeasible_goals_reported": tally.infeasible,
        "episodes_with_violations": tally.episodes_with_violations,
        "total_violations": tally.total_violations,
        "steps_mean": tally.steps_mean,
        "cycle_ms_p50": float(np.percentile(ms, 50)) if len(ms) else None,
        "cycle_ms_p99": float(np.percentile(ms, 99)) if len(ms) else None,
        "missed_deadlines": tally.missed_deadlines,
        "safety_filtered": tally.safety_filtered,
    }


def new_run_dir(root: Path, label: str) -> Path:
    """A fresh directory `root/<date>-<time>-<label>`, suffixed -2, -3... if that exists."""
    import time

    base = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{label}"
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


def write_run(run_dir: Path, config_yaml: str, episodes: Sequence[Episode],
              layouts: Sequence[WorldLayout], plot: bool = True) -> dict[str, Any]:
    """Write the run directory; returns the summary written to summary.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config_yaml)
    summary = {"aggregate": aggregate(episodes), "episodes": [e.summary() for e in episodes]}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    with open(run_dir / "trajectory.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(TRAJECTORY_FIELDS)
        for i, episode in enumerate(episodes):
            for c in episode.cycles:
                writer.writerow([
                    i, c.index, round(c.t, 4), *(round(v, 5) for v in c.state[:4]),
                    *(round(v, 5) for v in c.action[:2]), c.source, int(c.filtered), int(c.missed_deadline),
                    _r(c.plan_ms), _r(c.cycle_ms), _r(c.cost), _r(c.predicted_violation),
                ])
    if plot:
        for i, (episode, layout) in enumerate(zip(episodes, layouts)):
            name = "path.png" if len(episodes) == 1 else f"path_{i:03d}.png"
            plot_path(layout, episode, run_dir / name)
    return summary


def _r(value: float) -> float | str:
    return "" if math.isnan(value) else round(value, 4)


def plot_path(layout: WorldLayout, episode: Episode, path: Path) -> None:
    """Top-down PNG: walls, keep-out zones, start, goal and the driven path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    (x0, x1), (y0, y1) = layout.bounds
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.5, ec="black"))
    for cx, cy, hx, hy in layout.walls:
        ax.add_patch(Rectangle((cx - hx, cy - hy), 2 * hx, 2 * hy, color="dimgray"))
    for cx, cy, r in layout.circles:
        ax.add_patch(Circle((cx, cy), r, color="red", alpha=0.35, label="keep-out"))
    for cx, cy, hx, hy in layout.boxes:
        ax.add_patch(Rectangle((cx - hx, cy - hy), 2 * hx, 2 * hy, color="red", alpha=0.35))
    xy = np.array([c.state[:2] for c in episode.cycles]) if episode.cycles else np.zeros((0, 2))
    if len(xy):
        ax.plot(xy[:, 0], xy[:, 1], "-", color="tab:blue", lw=1.5, label="path")
        filtered = np.array([c.filtered for c in episode.cycles])
        if filtered.any():
            ax.plot(xy[filtered, 0], xy[filtered, 1], "x", color="orange", ms=5, label="safety filter")
    ax.plot(*layout.start, "o", color="tab:green", ms=9, label="start")
    ax.plot(*layout.goal, "*", color="gold", mec="black", ms=15, label="goal")
    ax.set_xlim(x0 - 0.3, x1 + 0.3)
    ax.set_ylim(y0 - 0.3, y1 + 0.3)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    verdict = f"{episode.status}, {episode.steps} steps, {episode.total_violations} violations"
    ax.set_title(f"seed {episode.seed}: {verdict}")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
