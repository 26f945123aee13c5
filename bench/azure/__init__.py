"""Benchmark of the azure-kv provider: see __main__.py."""
