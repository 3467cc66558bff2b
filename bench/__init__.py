"""Benchmarks: each script runs the product beside baselines in one run and prints ratios."""
