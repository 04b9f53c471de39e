"""Reward-free data: camera frames, proprioception and actions of scripted policies, in one HDF5 file.

`collect(world, policy, config)` runs `config.episodes` episodes of
`config.steps` control steps in a point-robot world with its camera on, and
writes them to `config.data` (format below). The policies are scripted,
reward-free explorers (`amiagent.learning.scripted`). Episode i is seeded `seed + i`:
`world.reset(seed + i)`, then the robot is put at rest at a free point drawn
uniformly over the arena and the policy is reset, both from a generator
seeded by the same number, so the same seeds give the same data.

Format (`format="amiagent.episodes"`, `format_version=1`). Root attributes:
`format`, `format_version`, `world` (name), `world_params` (JSON of the world's
params), `policy`, `policy_params` (JSON), `seed` (first seed),
`episodes_requested` (the most any run asked for), `steps` (control steps per
episode), `image_key` ("top"), `image_size` (pixels), `control_dt` (s),
`action_low`, `action_high` (float64, m/s^2), `state_names`, `created` (ISO
time), `amiagent_version`. Group
`episodes` holds one group per episode named `f"{i:06d}"` with datasets

* `frames`: (T+1, H, W, 3) uint8, top-down frames (chunks of 16 frames, gzip);
* `states`: (T+1, S) float32, the body's state at each frame (x, y, vx, vy);
* `actions`: (T, A) float32, the action the body applied (after its clipping)
  between frame t and frame t+1;

and attributes `seed`, `steps` (T), `goal` (float64), `violations` (JSON of the
world's ground-truth counts; scripted policies may bump walls) and
`complete=True`, written last. An episode group without `complete` is partial.

Resuming: collecting into an existing file skips complete episodes and redoes
partial ones; the file must come from the same world, world params, policy,
policy params, seed, steps and image size. SIGINT and SIGTERM wait until the
episode being written is whole, and the file is flushed after every episode.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from amiagent.errors import AmiagentError, ConfigError
from amiagent.learning.scripted import POLICIES, Arena, Policy, make_policy

__all__ = ["POLICIES", "CollectConfig", "Collected", "collect", "collect_episode", "make_policy",
           "supports_collect"]

log = logging.getLogger(__name__)

FORMAT = "amiagent.episodes"
FORMAT_VERSION = 1
IMAGE_KEY = "top"  # the camera frame's name in Observation.images (amiagent.sim.worlds.IMAGE_KEY)
STATE_NAMES = ("x", "y", "vx", "vy")
CHUNK_FRAMES = 16
START_CLEARANCE = 0.1
"""Metres between the robot disc at its drawn start and any wall or arena edge."""
POLICY_STREAM = 0x636F6C6C
"""Mixed into each episode's seed for its start and policy draws, apart from the world's own draws."""
MUST_MATCH = ("world", "world_params", "policy", "policy_params", "seed", "steps", "image_size")
"""Root attributes a resumed file must share with the collection (world_params without `gui`)."""


@dataclass(frozen=True)
class CollectConfig:
    """Top-level settings of `amiagent collect`, checked at launch.

    `seed`: seed of episode 0 (episode i uses seed + i). `episodes`: episodes
    the file must hold. `steps`: control steps per episode. `data`: the HDF5
    file. `overwrite`: start the file afresh instead of resuming. `progress`:
    progress bar on the terminal.
    """

    seed: int = 0
    episodes: int = 100
    steps: int = 100
    data: str = "data/episodes.h5"
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name, minimum in (("seed", 0), ("episodes", 1), ("steps", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
        for name in ("overwrite", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.data, str) or not self.data:
            raise ConfigError(f"data must be a file path, got {self.data!r}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> CollectConfig:
        """The collect settings of a composed config (its other sections are ignored)."""
        return cls(**{f.name: cfg[f.name] for f in dataclasses.fields(cls) if f.name in cfg})


@dataclass(frozen=True)
class Collected:
    """What a collection did: `episodes` complete in the file, `new` of them collected now, `frames` written
    now, `seconds` it took, `path` and `bytes` of the file."""

    episodes: int
    new: int
    frames: int
    seconds: float
    path: Path
    bytes: int


def _header(world: Any, policy: Policy, config: CollectConfig) -> dict[str, Any]:
    import amiagent

    prm = world.params
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "world": world.name, "world_params": json.dumps(dataclasses.asdict(prm), sort_keys=True),
        "policy": policy.name, "policy_params": json.dumps(dataclasses.asdict(policy.params), sort_keys=True),
        "seed": config.seed, "episodes_requested": config.episodes, "steps": config.steps,
        "image_key": IMAGE_KEY, "image_size": int(prm.image_size), "control_dt": float(world.dt),
        "action_low": np.asarray(world.body.action_low, dtype=np.float64),
        "action_high": np.asarray(world.body.action_high, dtype=np.float64),
        "state_names": list(STATE_NAMES),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "amiagent_version": amiagent.__version__,
    }


ADDED_WORLD_PARAMS = {"camera_supersample": 1}
"""World settings newer than some data files, with the value those files were collected with."""


def _comparable(key: str, value: Any) -> Any:
    if key.endswith("_params"):
        params = json.loads(value)
        if key == "world_params":
            params.pop("gui", None)  # the GUI shows the same episodes
            params = {**ADDED_WORLD_PARAMS, **params}
        return params
    return value.item() if isinstance(value, np.generic) else value


def _mismatch(key: str, had: Any, want: Any) -> str:
    if isinstance(had, dict) and isinstance(want, dict):
        diffs = [f"{k}={had.get(k)!r} (now {want.get(k)!r})" for k in sorted(set(had) | set(want))
                 if had.get(k) != want.get(k)]
        return f"other {key}: {', '.join(diffs)}"
    return f"{key}={had!r}, this collection has {key}={want!r}"


def _open(path: Path, header: dict[str, Any], overwrite: bool):
    """The file at `path`, created with `header` or, when it exists, checked against it for resuming."""
    import h5py

    if overwrite:
        path.unlink(missing_ok=True)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        f = h5py.File(path, "w")
        f.attrs.update(header)
        f.create_group("episodes")
        f.flush()
        return f
    advice = "pass another data= path, or overwrite=true to start it afresh"
    try:
        f = h5py.File(path, "a")
    except OSError as exc:
        raise AmiagentError(f"cannot open {path} as an HDF5 file ({exc}); {advice}") from exc
    try:
        if f.attrs.get("format") != FORMAT or "episodes" not in f:
            raise AmiagentError(f"{path} is not an {FORMAT} file; {advice}")
        if int(f.attrs["format_version"]) != FORMAT_VERSION:
            raise AmiagentError(f"{path} has format_version {f.attrs['format_version']}, this amiagent writes "
                                f"{FORMAT_VERSION}; {advice}")
        for key in MUST_MATCH:
            had, want = _comparable(key, f.attrs[key]), _comparable(key, header[key])
            if had != want:
                raise AmiagentError(f"{path} was collected with {_mismatch(key, had, want)}; {advice}")
        f.attrs["episodes_requested"] = max(int(f.attrs["episodes_requested"]), header["episodes_requested"])
    except BaseException:
        f.close()
        raise
    return f


@contextlib.contextmanager
def _whole() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done (main thread only), so an episode is written whole."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    kinds = (signal.SIGINT, signal.SIGTERM)
    before = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in kinds}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        if caught:
            signal.raise_signal(caught[0])


def collect_episode(world: Any, policy: Policy, seed: int, steps: int) -> dict[str, Any]:
    """Episode `seed` as written to the file: `frames`, `states`, `actions` and `attrs` (see the module docstring).

    After `world.reset(seed)` the robot is put at rest at a free point drawn
    from `seed`, then the world is stepped as the runtime does it.
    """
    task = world.reset(seed)
    rng = np.random.default_rng([POLICY_STREAM, seed])
    arena = Arena.of(world)
    world.place(*arena.free_point(rng, START_CLEARANCE))
    policy.reset(arena, rng)
    body = world.body
    obs = body.observe()
    frames, states, actions = [obs.images[IMAGE_KEY]], [obs.state], []
    for _ in range(steps):  # as the runtime does: observe, command, advance
        body.command(policy.act(obs, rng))
        actions.append(body.held_command)
        world.advance(world.dt)
        obs = body.observe()
        frames.append(obs.images[IMAGE_KEY])
        states.append(obs.state)
    return {
        "frames": np.stack(frames), "states": np.asarray(states, dtype=np.float32),
        "actions": np.asarray(actions, dtype=np.float32),
        "attrs": {"seed": seed, "steps": steps, "goal": np.asarray(task.goal, dtype=np.float64),
                  "violations": json.dumps(dict(world.violations()), sort_keys=True)},
    }


def _write(group: Any, episode: dict[str, Any]) -> None:
    frames = episode["frames"]
    group.create_dataset("frames", data=frames, chunks=(min(CHUNK_FRAMES, len(frames)), *frames.shape[1:]),
                         compression="gzip")
    group.create_dataset("states", data=episode["states"])
    group.create_dataset("actions", data=episode["actions"])
    group.attrs.update(episode["attrs"])
    group.attrs["complete"] = True  # last: a group without it is partial


@runtime_checkable
class Placeable(Protocol):
    """A world whose body can be put anywhere (collection starts episodes from spread-out places)."""

    def place(self, x: float, y: float) -> None: ...


def supports_collect(world_cls: type) -> bool:
    """Whether a world class can be collected from: params (every plugin's dataclass) with a `camera`
    switch, and `place(x, y)`."""
    return "camera" in {f.name for f in dataclasses.fields(world_cls.Params)} and issubclass(world_cls, Placeable)


def collect(world: Any, policy: Policy, config: CollectConfig,
            on_episode: Callable[[int, int], None] | None = None) -> Collected:
    """Fill `config.data` with `config.episodes` complete episodes of `policy` in `world` (camera on).

    Complete episodes already in the file are kept; partial ones are redone.
    `on_episode(done, total)` is called after each episode with the number
    complete so far. Raises AmiagentError when the file was collected with
    other settings (see MUST_MATCH) or is not readable.
    """
    if not (supports_collect(type(world)) and world.params.camera):
        raise AmiagentError(f"collecting needs a point-robot world with its camera on (world.params.camera=true); "
                            f"{world.name!r} has none")
    started = time.perf_counter()
    path = Path(config.data)
    new = 0
    with _open(path, _header(world, policy, config), config.overwrite) as f:
        groups = f["episodes"]
        todo = [i for i in range(config.episodes)
                if not (f"{i:06d}" in groups and groups[f"{i:06d}"].attrs.get("complete", False))]
        done = config.episodes - len(todo)
        if on_episode is not None:
            on_episode(done, config.episodes)
        for i in todo:
            episode = collect_episode(world, policy, config.seed + i, config.steps)
            with _whole():
                name = f"{i:06d}"
                if name in groups:
                    log.info("redoing partial episode %s", name)
                    del groups[name]
                _write(groups.create_group(name), episode)
                f.flush()
            log.info("%s: episode %s complete (seed %d)", path, name, config.seed + i)
            new += 1
            done += 1
            if on_episode is not None:
                on_episode(done, config.episodes)
        complete = sum(1 for g in groups.values() if g.attrs.get("complete", False))
    return Collected(episodes=complete, new=new, frames=new * (config.steps + 1),
                     seconds=time.perf_counter() - started, path=path, bytes=path.stat().st_size)
