"""The training plot: loss curves, collapse diagnostics and probe error against steps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_training(history: list[dict], path: Path) -> Path:
    """Three panels from the metric history: losses, per-dim std and effective rank, probe RMSE."""
    steps = [row["step"] for row in history]

    def series(key: str) -> list[float]:
        return [row.get(key, float("nan")) for row in history]

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    for key, label in (("train_prediction", "train prediction"), ("val_prediction", "val prediction"),
                       ("val_copy_baseline", "val copy-last baseline"), ("train_regularizer", "regulariser")):
        ax.plot(steps, series(key), label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("losses")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.plot(steps, series("val_std_min"), label="min per-dim std")
    ax.plot(steps, series("val_std_median"), label="median per-dim std")
    ax.set_xlabel("step")
    ax.set_title("collapse diagnostics")
    twin = ax.twinx()
    twin.plot(steps, series("val_effective_rank"), color="k", ls="--", label="effective rank")
    twin.set_ylabel("effective rank")
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="lower right", fontsize=8)
    ax = axes[2]
    ax.plot(steps, series("val_probe_position_rmse"), label="position (m)")
    ax.plot(steps, series("val_probe_velocity_rmse"), label="velocity (m/s)")
    ax.set_xlabel("step")
    ax.set_title("probe RMSE (held-out)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
