"""Learning: JEPA world models trained on reward-free episodes, probes, critics and Mode-1 policies.

`data` reads the episodes `amiagent collect` writes; `jepa` holds the networks
and losses; `train` runs the training loop with checkpoints and diagnostics.
Importing this package imports torch but no simulator.
"""
