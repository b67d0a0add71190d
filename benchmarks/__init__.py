"""Benchmarks of hotcv-train: `python benchmarks/run.py [--smoke]` (see benchmarks/README.md)."""
