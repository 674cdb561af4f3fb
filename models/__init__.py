"""Reference models (installed as ``asva_bench.models``)."""
