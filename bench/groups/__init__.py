"""Benchmark entry groups, one module each (see bench.registry)."""
