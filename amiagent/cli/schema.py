"""The typed settings of each command's own config, built once at launch with `amiagent.config.typed`.

Each schema holds a command's top-level keys (agents/config.yaml for run and eval, collect.yaml's are
`amiagent.learning.collect.CollectConfig`, train.yaml, distill.yaml) and the `runtime` section; the sections that
describe an agent, a world, a policy or a model are checked by their own builders, named as `SECTIONS`.
Types come from the annotations (checked by `typed`), ranges from `__post_init__`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from amiagent.config import typed
from amiagent.errors import ConfigError


def _at_least(obj: Any, where: str = "", **minimums: int) -> None:
    """Each named integer field of `obj` must be >= its minimum (None passes where the field allows it)."""
    for name, minimum in minimums.items():
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            path = f"{where}.{name}" if where else name
            raise ConfigError(f"{path} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class RunConfig:
    """Top-level settings of `amiagent run` and `amiagent eval` (agents/config.yaml).

    `seed`: seed of the first episode (episode i uses seed + i). `episodes`: how many. `realtime`: pace
    cycles to the control rate. `progress`: progress bar. `run_dir`: where results go (None: a new
    directory under runs/). `plot`: write the plot. `lockstep`: wait for every plan however late.
    """

    SECTIONS: ClassVar[tuple[str, ...]] = ("agent", "world", "runtime")

    seed: int = 0
    episodes: int = 1
    realtime: bool = False
    progress: bool = True
    run_dir: str | None = None
    plot: bool = True
    lockstep: bool = False

    def __post_init__(self) -> None:
        _at_least(self, seed=0, episodes=1)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> RunConfig:
        """The run settings of a composed config; an unknown top-level key is refused."""
        return typed(cls, cfg, sections=cls.SECTIONS)


@dataclass(frozen=True)
class LocalRuntime:
    """`runtime=local`: every module in this process, called directly.

    `torch_threads`: torch intra-op threads (None or 0: torch's default). `telemetry`: bus endpoint that
    publishes every cycle (None: off). `control`: endpoint of `amiagent swap` (None: none; port 0: any free).
    """

    name: Literal["local"] = "local"
    torch_threads: int | None = 1
    telemetry: str | None = None
    control: str | None = "tcp://127.0.0.1:0"

    def __post_init__(self) -> None:
        if self.torch_threads is not None:
            _at_least(self, "runtime", torch_threads=0)


@dataclass(frozen=True)
class RayRuntime(LocalRuntime):
    """`runtime=ray`: every module in a supervised Ray actor (agents/runtime/ray.yaml says what each key
    does). Placement, actors and supervision are checked by `amiagent.runtime.ray.check_runtime_config`."""

    name: Literal["ray"] = "ray"
    address: str | None = None
    namespace: str = "amiagent"
    placement: str | dict[str, Any] = "pod"
    placements: dict[str, Any] | None = None
    actors: dict[str, Any] | None = None
    supervision: dict[str, Any] | None = None
    state_dir: str | None = None
    ray_logs: bool = False


RUNTIMES: dict[str, type[LocalRuntime]] = {"local": LocalRuntime, "ray": RayRuntime}


def runtime_config(section: Any, root: Mapping | None = None) -> LocalRuntime:
    """The typed `runtime` section of a composed config (`root`, for suggestions)."""
    name = section.get("name") if isinstance(section, Mapping) else None
    if name not in RUNTIMES:
        raise ConfigError(f"runtime.name: unknown runtime {name!r}; choose runtime=ray (the default) or "
                          "runtime=local")
    return typed(RUNTIMES[name], section, "runtime", root=root)


@dataclass(frozen=True)
class TrainCommand:
    """Top-level settings of `amiagent train` (agents/train.yaml): `data`, the HDF5 file from `amiagent
    collect`; `out`, the checkpoint; `resume` it if it exists; `progress` bar. The `world_model` section is
    a `WorldModelSection`."""

    SECTIONS: ClassVar[tuple[str, ...]] = ("world_model",)

    data: str = "???"
    out: str = "models/model.pt"
    resume: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.data in ("", "???"):
            raise ConfigError("amiagent train needs data=PATH: an HDF5 file from `amiagent collect`")


@dataclass(frozen=True)
class WorldModelSection:
    """`world_model` of `amiagent train`: which model (`name`); its `model` settings are a JEPAConfig and
    its `train` settings a TrainConfig (amiagent.learning), built by `typed` in the command."""

    SECTIONS: ClassVar[tuple[str, ...]] = ("model", "train")

    name: str = "jepa"

    def __post_init__(self) -> None:
        if self.name != "jepa":
            raise ConfigError(f"amiagent train knows world_model=jepa only, got {self.name!r}")


@dataclass(frozen=True)
class DistillCommand:
    """Top-level settings of `amiagent distill` (agents/distill.yaml): `seed` of the first recorded
    episode, `episodes` recorded, `out` checkpoint, `progress` bars, `torch_threads` (None or 0: torch's
    default). The `distill` section is a `amiagent.learning.distill.DistillConfig`."""

    SECTIONS: ClassVar[tuple[str, ...]] = ("agent", "world", "distill")

    seed: int = 1000
    episodes: int = 40
    out: str = "models/mode1.pt"
    progress: bool = True
    torch_threads: int | None = 1

    def __post_init__(self) -> None:
        _at_least(self, seed=0, episodes=1)
        if self.torch_threads is not None:
            _at_least(self, torch_threads=0)
