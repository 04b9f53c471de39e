"""Evaluating agents: seeded episodes, one definition of their statistics, run directories and reports."""
