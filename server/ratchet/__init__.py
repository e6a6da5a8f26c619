"""Ratchet: the Karpathy loop — propose one edit, run it in a fixed budget, read one metric,
keep it if it beats the best or revert it — with a harness that can be trusted."""

__version__ = "0.1.0"
