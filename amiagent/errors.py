"""The typed error hierarchy. Every error amiagent raises derives from AmiagentError."""


class AmiagentError(Exception):
    """Base class of every error raised by amiagent."""


class ConfigError(AmiagentError):
    """A setting or configuration value is invalid; the message names it."""


class PluginError(AmiagentError):
    """A plugin is unknown, failed to import, or got invalid parameters."""


class ContractError(AmiagentError):
    """A plugin broke its module contract (shape, dtype, finiteness, bounds...)."""


class MessageError(AmiagentError):
    """A wire message is malformed: wrong type, shape, dtype, non-finite or too big."""


class BusError(AmiagentError):
    """A bus operation failed: timeout, closed socket, or an error reply from a peer."""


class BusTimeout(BusError):
    """A request got no reply within its timeout."""


class RemoteError(BusError):
    """The peer answered a request with an error reply."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.remote_message = message


class GuardrailError(AmiagentError):
    """A guardrail could not be honoured (e.g. no safe action exists)."""


class BodyError(AmiagentError):
    """A body refused a command or failed."""


class UnwrittenRecords(BusError):
    """Memory writes that were not acknowledged: `records` (MemoryRecords), oldest first, for the writer to
    keep and re-send."""

    def __init__(self, message: str, records: list):
        super().__init__(message)
        self.records = records
