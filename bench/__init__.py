"""Benchmarks: carelake across data scales, incremental runs and single-node baselines."""
