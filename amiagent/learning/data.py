"""Reading the reward-free episodes that `amiagent collect` writes (HDF5, see `amiagent.learning.collect`).

The whole data set is loaded into memory as torch tensors (a 64x64 frame is
12 KiB, so 100k frames take 1.2 GiB), and training windows are drawn from it:
K + 1 frames `stride` control steps apart, with the mean action over each
stride between them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from amiagent.errors import ConfigError

log = logging.getLogger(__name__)

FORMAT = "amiagent.episodes"


@dataclass
class Episodes:
    """Every complete episode of a data file, concatenated.

    `frames` (N, H, W, 3) uint8, `states` (N, S) float32, `actions` (N, A)
    float32 (row i: the action applied between frame i and i + 1; the last row
    of each episode is zero and never used), `starts` / `lengths`: each
    episode's first row and frame count. `meta`: the file's attributes.
    """

    frames: torch.Tensor
    states: torch.Tensor
    actions: torch.Tensor
    starts: np.ndarray
    lengths: np.ndarray
    meta: dict

    @property
    def count(self) -> int:
        return len(self.starts)

    def split(self, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """Episode indices for training and validation (the last episodes validate)."""
        n_val = int(round(self.count * val_fraction)) if self.count > 1 else 0
        n_val = min(max(n_val, 1 if val_fraction > 0 and self.count > 1 else 0), self.count - 1)
        order = np.arange(self.count)
        return order[: self.count - n_val], order[self.count - n_val:]

    def windows(self, episodes: np.ndarray, horizon: int, stride: int) -> np.ndarray:
        """First rows of every window of `horizon` model steps of `stride` control steps in `episodes`."""
        span = horizon * stride
        rows = [self.starts[e] + np.arange(self.lengths[e] - span) for e in episodes if self.lengths[e] > span]
        if not rows:
            raise ConfigError(f"no episode is longer than horizon x stride = {span} steps; collect longer episodes")
        return np.concatenate(rows)

    def batch(self, first: torch.Tensor, horizon: int, stride: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Windows starting at rows `first` (B,) -> frames (B, K+1, H, W, 3), states (B, K+1, S), actions (B, K, A)."""
        offsets = torch.arange(horizon + 1) * stride
        rows = first[:, None] + offsets                                   # (B, K+1)
        act_rows = first[:, None, None] + (torch.arange(horizon)[:, None] * stride + torch.arange(stride))  # (B,K,s)
        return self.frames[rows], self.states[rows], self.actions[act_rows].mean(dim=2)


def load_episodes(path: str | Path, max_episodes: int | None = None) -> Episodes:
    """Load the complete episodes of the data file at `path` (HDF5 written by `amiagent collect`)."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no data file at {path}: collect one with `amiagent collect world=... data={path}`")
    frames, states, actions, lengths = [], [], [], []
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ConfigError(f"{path} is not an amiagent episodes file (format attr {f.attrs.get('format')!r})")
        meta = {k: _plain(v) for k, v in f.attrs.items()}
        group = f.get("episodes")
        names = sorted(group) if group is not None else []
        for name in names:
            ep = group[name]
            if not ep.attrs.get("complete", False):
                log.warning("%s: skipping incomplete episode %s", path, name)
                continue
            fr, st, ac = ep["frames"][()], ep["states"][()], ep["actions"][()]
            if len(fr) != len(st) or len(ac) != len(fr) - 1:
                raise ConfigError(f"{path}: episode {name} has {len(fr)} frames, {len(st)} states and "
                                  f"{len(ac)} actions; expected T+1, T+1 and T")
            frames.append(fr)
            states.append(st.astype(np.float32))
            actions.append(np.concatenate([ac.astype(np.float32), np.zeros((1, ac.shape[1]), np.float32)]))
            lengths.append(len(fr))
            if max_episodes is not None and len(lengths) >= max_episodes:
                break
    if not lengths:
        raise ConfigError(f"{path} holds no complete episode")
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths_arr)[:-1]])
    return Episodes(torch.from_numpy(np.concatenate(frames)), torch.from_numpy(np.concatenate(states)),
                    torch.from_numpy(np.concatenate(actions)), starts, lengths_arr, meta)


def _plain(value):
    """An HDF5 attribute as a plain Python value (JSON strings stay strings)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def world_params(meta: dict) -> dict:
    """The world parameters the data was collected with."""
    raw = meta.get("world_params", "{}")
    return json.loads(raw) if isinstance(raw, str) else dict(raw)
