"""The analytic point-mass model against the pybullet body it models, and under two threads."""

from __future__ import annotations

import threading

import numpy as np
import torch

from amiagent import registry
from amiagent.sim.worlds import OpenField


def test_predictions_match_pybullet():
    world = OpenField(OpenField.Params(n_zones=0))
    model = registry.create("world_model", "point_mass", {"dt": world.dt, "substeps": world.substeps})
    try:
        world.reset(4)
        rng = np.random.default_rng(0)
        actions = rng.uniform(-2.0, 2.0, size=(12, 2))
        start = torch.tensor(world.body.observe().state, dtype=torch.float32).view(1, 4)
        predicted = model.rollout(start, torch.tensor(actions, dtype=torch.float32).unsqueeze(0))[0]
        measured = []
        for action in actions:
            world.body.command(action)
            world.advance(world.dt)
            measured.append(world.body.observe().state)
        assert np.abs(predicted.numpy() - np.array(measured)).max() < 1e-4  # float32 over 12 steps
    finally:
        world.close()


def test_brake_action_stops_in_a_straight_line():
    model = registry.create("world_model", "point_mass")
    state = torch.tensor([[0.0, 0.0, 1.2, -0.6]])
    states = [state]
    for _ in range(10):
        state = model.rollout(state, model.brake_action(state).unsqueeze(1))[:, 0]
        states.append(state)
    path = torch.cat(states)
    assert float(path[-1, 2:].abs().max()) < 1e-6  # at rest
    direction = path[1:, :2] - path[:-1, :2]
    moving = direction.norm(dim=1) > 1e-6
    cross = direction[moving, 0] * -0.6 - direction[moving, 1] * 1.2
    assert float(cross.abs().max()) < 1e-5  # every displacement along the initial velocity


def test_rollout_is_safe_from_two_threads():
    # a late plan (horizon 16) can still run while the cycle checks an action (horizon 1)
    model = registry.create("world_model", "point_mass")
    start = torch.tensor([[0.5, -0.5, 0.2, 0.1]])
    long_actions = torch.rand(64, 16, 2)
    short_actions = torch.rand(8, 1, 2)
    expected_long = model.rollout(start, long_actions).clone()
    expected_short = model.rollout(start, short_actions).clone()
    errors = []

    def hammer(actions, expected):
        try:
            for _ in range(300):
                model._kernels.clear()  # force rebuilds, the window where threads could mix kernels
                assert torch.equal(model.rollout(start, actions), expected)
        except Exception as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=args)
               for args in ((long_actions, expected_long), (short_actions, expected_short))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
