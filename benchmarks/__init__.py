"""Benchmarks: ``python -m benchmarks [chapter ...]`` (or ``make bench``)."""
