"""Benchmarks: ``uv run python -m bench.NAME`` (see each module's docstring).

Importing this package compiles the environment's and the project's Python
files to bytecode first. A production image has bytecode (pip writes it at
install time); a machine with ``PYTHONDONTWRITEBYTECODE=1``, or a fresh uv
environment, may not, and every start would then pay for compiling click and
the SDKs from source: that would measure the machine, not secretinit.
"""

import compileall
import site
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
for _directory in [
    *site.getsitepackages(),
    str(_ROOT / "secretinit"),
    *map(str, _ROOT.glob("providers/*/")),
]:
    compileall.compile_dir(_directory, quiet=1, workers=0, legacy=False, force=False)
del _directory
