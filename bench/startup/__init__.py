"""Start-up and resident cost of secretinit: ``python -m bench.startup`` (see __main__)."""
