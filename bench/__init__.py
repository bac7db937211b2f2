"""Tessera's benchmark: ``python -m bench [--quick] [--device cuda] [--out bench/results.json]``.

Every entry is a ratio (or a slope, or an error) against a reference measured in the same
run, because these machines are shared and noisy: medians over interleaved repetitions
after warm-up. Entry groups live in one module each (``bench/groups/``) and are listed in
:mod:`bench.registry`.
"""
