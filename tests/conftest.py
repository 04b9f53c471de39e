"""Shared fixtures. Tests use real pybullet, ZeroMQ, msgpack and torch: no mocks of them."""

from __future__ import annotations

import copy

import pytest
import torch

from amiagent.config import load_config


def _order_line(config: pytest.Config) -> str | None:
    seed = getattr(config.option, "randomly_seed", None)
    if seed is None or not config.pluginmanager.has_plugin("randomly"):
        return None
    return f"tests in random order: rerun this order with `pytest --randomly-seed={seed}`"


def pytest_sessionstart(session: pytest.Session) -> None:
    # pytest-randomly names its seed in the header, which -q (make test) hides: say it here and at the end
    line = _order_line(session.config)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if line and reporter is not None:
        reporter.write_line(line)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    line = _order_line(config)
    if line:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    # the runtime's default: planning batches are small, one thread is fastest and steadiest
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def _navigator_composed():
    # composing through Hydra takes a noticeable fraction of a second; some ninety tests ask for this config
    return load_config(["agent=navigator", "world=open_field", "runtime=local"])


@pytest.fixture
def navigator_config(_navigator_composed):
    """The shipped navigator config in open_field, as plain containers: a fresh copy per test, which may edit it."""
    return copy.deepcopy(_navigator_composed)


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


TINY_MODEL = {"latent_dim": 8, "channels": (8, 8), "keypoints": 8, "hidden": 32, "horizon": 2}
"""A JEPA small enough to train in seconds: for tests of the machinery, not of planning quality."""


@pytest.fixture(scope="session")
def tiny_episodes(tmp_path_factory):
    """12 reward-free episodes of 40 steps in open_field, collected with the real camera (about 1 s)."""
    from amiagent.build import build_world
    from amiagent.learning.collect import CollectConfig, collect, make_policy

    path = tmp_path_factory.mktemp("episodes") / "open_field.h5"
    world = build_world({"name": "open_field", "params": {"camera": True}})
    try:
        collect(world, make_policy({"name": "noisy_expert"}),
                CollectConfig(episodes=12, steps=40, data=str(path), progress=False))
    finally:
        world.close()
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_episodes, tmp_path_factory):
    """A tiny JEPA trained for 20 steps on `tiny_episodes`."""
    from amiagent.learning.jepa import JEPAConfig
    from amiagent.learning.train import TrainConfig, train

    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    train(tiny_episodes, path, JEPAConfig(**TINY_MODEL),
          TrainConfig(steps=20, batch=16, eval_every=10, checkpoint_every=10, probe_steps=20))
    return path


TINY_POLICY = {"episodes": 3, "dagger_rounds": 1, "dagger_episodes": 1, "seed": 1000, "hidden": 32, "epochs": 40,
               "batch": 64}
"""A Mode-1 policy distilled in seconds from 3 navigator episodes and one DAgger episode: for tests of the
machinery, not of the policy's quality."""


@pytest.fixture(scope="session")
def tiny_distill(tmp_path_factory):
    """The DistillResult of `TINY_POLICY` (navigator in open_field, seeds 1000-1003, at most 80 steps each)."""
    from amiagent.learning.distill import DistillConfig, distill

    cfg = load_config(["agent=navigator", "world=open_field", "runtime=local", "world.params.max_steps=80"])
    path = tmp_path_factory.mktemp("mode1") / "tiny_policy.pt"
    return distill(cfg["agent"], cfg["world"], DistillConfig(**TINY_POLICY), path)


@pytest.fixture(scope="session")
def tiny_policy(tiny_distill):
    """The checkpoint of `tiny_distill`."""
    return tiny_distill.checkpoint
