"""Structural model rewrites the structural stages use: channel pruning and low-rank
factorisation on one graph walker (no stage logic here)."""
