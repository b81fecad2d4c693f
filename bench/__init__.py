"""Benchmarks: engine throughput from order-flow files and end-to-end runs."""
