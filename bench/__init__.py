"""Benchmarks for the broker; run them with ``python -m bench <name>`` (see ``bench.__main__``)."""
