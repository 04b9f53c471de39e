"""Silence what pybullet's C code prints (its build time, `argv[0]=`).

Those lines come from C `printf`, so `contextlib.redirect_stdout` cannot catch
them; file descriptors 1 and 2 point at /dev/null for the duration of the
block. Python exceptions raised inside still propagate and are printed later.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def c_output_silenced():
    """Redirect fds 1 and 2 to /dev/null inside the block; streams without a descriptor are left alone."""
    saved: list[tuple[int, int]] = []
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                fd = stream.fileno()
            except (AttributeError, OSError, ValueError):  # e.g. pytest's capture or a StringIO
                continue
            stream.flush()
            saved.append((fd, os.dup(fd)))
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), fd)
        yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
