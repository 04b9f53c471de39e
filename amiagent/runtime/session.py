"""Ray for this process: join a running instance or cluster, or start an embedded one, quietly."""

from __future__ import annotations

import logging
from typing import Any

import ray

from amiagent.errors import AmiagentError

log = logging.getLogger(__name__)


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail fast when nothing listens at a cluster address `host:port`."""
    import socket

    host_, _, port = address.rpartition(":")
    if not host_ or not port.isdigit():
        raise AmiagentError(f"runtime.address must be null, auto, host:port or ray://host:port, got {address!r}")
    try:
        socket.create_connection((host_, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise AmiagentError(f"no Ray cluster answers at runtime.address={address} ({exc}); start one there with "
                            "`ray start --head`, or leave runtime.address null for an embedded instance") from exc


def _route_ray_errors_to_log() -> None:
    """Send the error notices Ray's driver prints (e.g. "A worker died...") to this module's debug log.

    The supervisor reports a module's death itself; Ray's notice would be the
    raw version of the same news in the user's terminal. This replaces the
    printing function of Ray's driver-side error listener (a private API: if it
    is not there, Ray's notices simply stay as they are).
    """
    try:
        import ray._private.worker as worker
    except ImportError:
        return
    if getattr(getattr(worker, "print_to_stdstream", None), "amiagent_quiet", False) or \
            not hasattr(worker, "print_to_stdstream"):
        return

    def to_log(data: dict, ignore_prefix: bool = False) -> None:
        for line in data.get("lines", []):
            log.debug("ray (%s): %s", data.get("pid"), line)

    to_log.amiagent_quiet = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_log


class RaySession:
    """Ray for this process: joins the instance already initialised, a cluster (`address`), or starts
    an embedded local one. Ray's own logs stay out of the terminal unless `logs=True`.
    `close()` shuts Ray down only if this session started it."""

    def __init__(self, address: str | None = None, *, namespace: str = "amiagent", logs: bool = False,
                 num_cpus: int | None = None):
        self.started = False
        if not logs:
            # Ray's start-up notices (token auth, resources) go through the `ray` logger
            logging.getLogger("ray").setLevel(logging.ERROR)
            _route_ray_errors_to_log()
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"namespace": namespace, "include_dashboard": False, "log_to_driver": logs,
                                  "configure_logging": logs}
        if logs:
            kwargs["logging_level"] = logging.INFO
        if address is None:  # a private local instance, even when another process runs Ray here
            address, kwargs["num_cpus"] = "local", num_cpus
        elif address != "auto" and not address.startswith("ray://"):
            _check_reachable(address)  # Ray itself would retry for minutes, logging to the terminal
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if address == "auto":
                raise AmiagentError("runtime.address=auto: no running Ray cluster found on this machine; start "
                                    "one with `ray start --head`, or leave runtime.address null for an embedded "
                                    "instance") from exc
            where = "an embedded local instance" if address == "local" else f"the cluster at {address!r}"
            raise AmiagentError(f"cannot start or join Ray ({where}): {exc}") from exc
        self.started = True

    def close(self) -> None:
        """Shut Ray down if this session started it. Safe twice."""
        if self.started and ray.is_initialized():
            ray.shutdown()
        self.started = False

    def __enter__(self) -> RaySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
