"""A fixture that builds sim worlds for a test and closes every one of them at its end."""

from __future__ import annotations

import pytest


def world_maker(cls: type | None = None):
    """The `make` fixture: `make(**params)` builds a `cls` world, or `make(World, **params)` without `cls`."""

    @pytest.fixture(name="make")
    def make():
        made = []

        def _make(*kind, **params):
            world_cls = kind[0] if kind else cls
            world = world_cls(world_cls.Params(**params))
            made.append(world)
            return world

        yield _make
        for world in made:
            world.close()

    return make
