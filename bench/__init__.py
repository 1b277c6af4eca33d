"""A benchmark of the real taskgrant-operator process against the in-process API emulator.

Run it with `python -m bench` (or `make bench`); docs/performance.md describes the method and results.
"""
