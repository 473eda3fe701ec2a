"""Benchmarks for syncbridge: loopback only, each bounded in time and requests. See docs/BENCHMARKS.md."""
