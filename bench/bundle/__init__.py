"""Self-contained bundle forms compared: relocated interpreter, PyInstaller, Nuitka."""
