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


@pytest.fixture(scope="session")
def ray_cluster():
    """One real two-node Ray cluster for the whole session: a head with 2 CPUs offering `node_a`, and a
    node offering `node_b`, labelled zone=lab.

    Started only when a test asks for it (about 12 s here); modules take no CPU,
    so every agent fits on the head's two cores.
    """
    from ray.cluster_utils import Cluster

    from amiagent.runtime.ray import RaySession

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"node_a": 1},
                                                                "include_dashboard": False})
    cluster.add_node(num_cpus=0, resources={"node_b": 1}, labels={"zone": "lab"})
    cluster.wait_for_nodes()
    session = RaySession(cluster.address)
    yield cluster
    session.close()
    cluster.shutdown()
