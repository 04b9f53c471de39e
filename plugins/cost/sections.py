"""What settings a guardrail reads: it declares them, and reads them only through `read`.

Each guardrail (and each cost term that reads zones or limits) names the
sections of `settings.guardrails` it reads in a class attribute, `reads =
("keep_out",)`: the keys the task's constraints must carry for it to act. A
section it did not declare cannot be read, so the declaration is the whole
truth about what the guardrail depends on, for whoever hands settings to it or
checks that a world's tasks feed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from amiagent.contracts import Settings
from amiagent.errors import ConfigError, ContractError


def read(settings: Settings, owner: Any, name: str | None = None) -> Mapping[str, Any] | None:
    """Section `name` (default: the first one `owner` declares in `reads`) of `settings.guardrails`.

    None when the settings carry no such section. ConfigError when it is not a
    mapping; ContractError when `owner` did not declare it.
    """
    reads = type(owner).reads
    name = reads[0] if name is None else name
    if name not in reads:
        raise ContractError(f"{type(owner).__name__} reads settings.guardrails[{name!r}] but declares only "
                            f"reads = {reads}: add it there")
    section = settings.guardrails.get(name)
    if section is not None and not isinstance(section, Mapping):
        raise ConfigError(f"settings.guardrails[{name!r}] must be a mapping, got {section!r}")
    return section
