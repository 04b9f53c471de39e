"""Critic plugins: trainable estimates of the cost beyond the planning horizon."""
