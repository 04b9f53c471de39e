"""Loading launch configs with Hydra's compose API.

The configs ship inside the package (`amiagent.agents`); overrides use Hydra's
syntax (`agent=navigator world.params.n_zones=3`). What leaves this module is
plain containers, never OmegaConf objects, so it can cross process boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from amiagent.errors import ConfigError

CONFIG_MODULE = "amiagent.agents"

_resolvers_registered = False


def _register_resolvers() -> None:
    global _resolvers_registered
    if _resolvers_registered:
        return
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("div", lambda a, b: float(a) / float(b), replace=True)
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
