"""Throughput benchmarks: each stage against a baseline run side by side in the same command."""
