"""``python -m secretinit``: the same as the ``secretinit`` command."""

from secretinit._cli import main

main()
