"""Benchmarks that put Bevan's throughput beside published FHIR server figures.

Each scenario starts a real `bevan serve` subprocess, drives it with an asyncio client,
and measures a plain-SQLite baseline in the same run, so every figure is printed as a
ratio against work this machine did a moment ago. Run `python -m benchmarks --help`.
"""
