"""Runtimes place an agent's modules: `local` runs them all in one process."""

RUNTIMES = ("local",)
