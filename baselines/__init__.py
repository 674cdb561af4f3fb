"""Baseline adapters (installed as ``asva_bench.baselines``)."""
