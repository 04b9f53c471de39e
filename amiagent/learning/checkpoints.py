"""Checkpoint files of the learned modules: written atomically, read without running code."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from amiagent.errors import ConfigError


def save_atomic(payload: dict, path: str | os.PathLike) -> Path:
    """`torch.save(payload)` to `path` through a temporary file, so a crash mid-write keeps the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_payload(path: str | os.PathLike, fmt: str, missing: str, wrong: str) -> dict:
    """The dict saved at `path` with `format == fmt`, read with `weights_only=True` (tensors and plain values).

    Raises ConfigError with `missing` when there is no file and `wrong` when it holds something else.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(missing)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != fmt:
        raise ConfigError(wrong)
    return saved
