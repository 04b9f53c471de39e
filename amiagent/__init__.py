"""amiagent: objective-driven embodied agents.

Importing the package stays light: no torch, no simulator, no plugin is loaded
until the registry or the runtime asks for it.
"""

from amiagent.errors import (
    AmiagentError,
    BodyError,
    BusError,
    BusTimeout,
    ConfigError,
    ContractError,
    GuardrailError,
    MessageError,
    PluginError,
    RemoteError,
)

__version__ = "0.1.0"

__all__ = [
    "AmiagentError",
    "BodyError",
    "BusError",
    "BusTimeout",
    "ConfigError",
    "ContractError",
    "GuardrailError",
    "MessageError",
    "PluginError",
    "RemoteError",
    "__version__",
]
