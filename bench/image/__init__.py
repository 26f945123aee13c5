"""Image sizes per provider set and secretinit's start-up inside the container.

Run ``uv run python -m bench.image`` (root, podman; see tests/container/README.md).
"""
