"""A fleet starting at once against a rate-limited store: ``python -m bench.fleet``.

K ``secretinit fetch`` processes start together against a proxy that lets R
requests a second through to OpenBao (or moto) and answers the rest with the
store's own throttling response. See RESULTS.md for what is measured.
"""
