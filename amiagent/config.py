"""Loading launch configs with Hydra's compose API.

The configs ship inside the package (`amiagent.agents`); overrides use Hydra's
syntax (`agent=navigator world.params.n_zones=3`). What leaves this module is
plain containers, never OmegaConf objects, so it can cross process boundaries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from amiagent.errors import ConfigError

CONFIG_MODULE = "amiagent.agents"


def check_keys(where: str, value: Any, allowed: set[str]) -> dict:
    """`value` as a dict (None: empty) whose keys are all in `allowed`; ConfigError naming `where` otherwise."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(allowed)}")
    return dict(value)


def check_number(where: str, value: Any, minimum: float = 0.0) -> float:
    """`value` as a float, if it is a finite number >= `minimum` (never a bool); ConfigError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{where} must be a finite number >= {minimum:g}, got {value!r}")
    return float(value)

_resolvers_registered = False


def _register_resolvers() -> None:
    global _resolvers_registered
    if _resolvers_registered:
        return
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("div", lambda a, b: float(a) / float(b), replace=True)
    OmegaConf.register_new_resolver("mul", lambda a, b: float(a) * float(b), replace=True)
    # e.g. physics substeps per control step: 240 Hz * 0.1 s = 24
    OmegaConf.register_new_resolver("round_mul", lambda a, b: int(round(float(a) * float(b))), replace=True)
    _resolvers_registered = True


def load_config(overrides: Sequence[str] = (), config_name: str = "config") -> dict[str, Any]:
    """Compose the launch config with `overrides`; returns plain, resolved containers."""
    import yaml
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    _register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        return OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException, yaml.YAMLError) as exc:
        raise ConfigError(f"bad configuration: {exc}") from exc
    finally:
        GlobalHydra.instance().clear()


def to_yaml(cfg: dict[str, Any]) -> str:
    """The config as YAML text (for the run directory)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(cfg))
