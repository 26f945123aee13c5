"""``python -I -S -B .../secretinit/_supervisor_main.py ARGS``: the resident supervisor.

A file run as a script is compiled from source at every start (only
imported modules keep their bytecode), and compiling the supervisor's
thousand lines cost twice the interpreter's own start-up. This script is two
lines; the supervisor (secretinit._supervisor) is imported from the bytecode
its installation compiled, as a top-level module of its own directory, so that
nothing of the package (and nothing outside the standard library) is imported.
"""

import os
import sys

# Appended, after the standard library: no module of it can be shadowed.
sys.path.append(os.path.dirname(__file__))
__import__("_supervisor").main(sys.argv[1:])
