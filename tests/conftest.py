"""Shared fixtures. Tests use real pybullet, ZeroMQ, msgpack and torch: no mocks of them."""

from __future__ import annotations

import pytest
import torch

from amiagent.config import load_config


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    # the runtime's default: planning batches are small, one thread is fastest and steadiest
    torch.set_num_threads(1)


@pytest.fixture
def navigator_config():
    """The shipped navigator config in open_field, as plain containers."""
    return load_config(["agent=navigator", "world=open_field", "runtime=local"])
