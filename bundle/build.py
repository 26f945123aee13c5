"""Build the self-contained ``/opt/secretinit`` of the Dockerfile's bundle target.

    python3 bundle/build.py DEST PACKAGE...

DEST becomes one directory that runs in any glibc x86-64 image, Python or
not: the build's own CPython interpreter and its standard library under
``DEST/runtime`` (CPython finds its library relative to its executable, so
the copy runs from there), the shared libraries that it and every extension
module link to beyond glibc (``DEST/runtime/lib``, found through an
``$ORIGIN`` run path set with patchelf), and a virtual environment on it in
DEST holding the PACKAGES (the core and the chosen providers, with their
entry-point metadata) as compiled bytecode. ``DEST/secretinit`` is the
command: a script whose ``#!`` line names the bundled interpreter with
``-I``, so that no ``PYTHON*`` variable of the application's image reaches
it. The resident supervisor is the same ``python -I -S -B _supervisor.pyc``
as in the Python image.

bench/bundle compares this form with PyInstaller and Nuitka, which is how it
was chosen; the README ("Use in any image") says where it runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

# Parts of the standard library that nothing in secretinit or its providers'
# SDKs imports: tests, GUIs, development tools, the static libpython.
STDLIB_TRIM = frozenset(
    {
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "turtle.py",
        "lib2to3",
        "ensurepip",
        "venv",
        "distutils",
        "pydoc_data",
        "sqlite3",
        "curses",
        "dbm",
        "site-packages",
        "dist-packages",
        "__pycache__",
    }
)
STDLIB_TRIM_PREFIXES = ("config-",)
# Extension modules left out, and with them the libraries only they need
# (ncurses, readline, Berkeley DB, sqlite, Kerberos, libcrypt).
DYNLOAD_TRIM_PREFIXES = (
    "_test",
    "_xx",
    "xxlimited",
    "_ctypes_test",
    "_curses",
    "_dbm",
    "_gdbm",
    "_sqlite3",
    "readline",
    "nis",
    "ossaudiodev",
    "audioop",
    "_crypt",
    "_tkinter",
)
# What every glibc system has, so what the bundle must not carry: glibc
# itself and the GCC runtime that glibc loads for unwinding (the manylinux
# policy's system libraries, less those of no use here).
SYSTEM_LIBRARIES = frozenset(
    {
        "linux-vdso.so.1",
        "ld-linux-x86-64.so.2",
        "libc.so.6",
        "libm.so.6",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libutil.so.1",
        "libresolv.so.2",
        "libgcc_s.so.1",
        "libstdc++.so.6",
    }
)
ELF_MAGIC = b"\x7fELF"


def run(*command: str | Path) -> str:
    """Run a build step; its output, or exit with its error."""
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, command))}: status {done.returncode}\n{done.stderr}")
    return done.stdout


def copy_interpreter(runtime: Path) -> Path:
    """The running interpreter and its trimmed standard library into ``runtime``."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    executable = runtime / "bin" / version
    executable.parent.mkdir(parents=True)
    shutil.copy2(os.path.realpath(sys.executable), executable)
    # The base installation's, also when this runs in a virtual environment.
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dynload = Path(sysconfig.get_config_var("DESTSHARED"))

    def ignored(directory: str, names: list[str]) -> set[str]:
        top = Path(directory) == stdlib
        return {
            name
            for name in names
            if name == "__pycache__"
            or (top and (name in STDLIB_TRIM or name.startswith(STDLIB_TRIM_PREFIXES)))
            or (Path(directory) == dynload and name.startswith(DYNLOAD_TRIM_PREFIXES))
        }

    target = runtime / "lib" / version
    shutil.copytree(stdlib, target, symlinks=False, ignore=ignored)
    if not (target / "lib-dynload").is_dir():  # a build that keeps it elsewhere
        shutil.copytree(dynload, target / "lib-dynload", ignore=ignored)
    return executable


def make_environment(dest: Path, executable: Path, packages: list[str]) -> None:
    """A virtual environment on the bundled interpreter, with ``packages``, without pip."""
    # The build's own interpreter makes it (the bundled one has no venv
    # module), pointed at the bundled one: pyvenv.cfg's home is its directory.
    run(sys.executable, "-m", "venv", "--without-pip", dest)
    for link in ("python", "python3", executable.name):
        path = dest / "bin" / link
        path.unlink(missing_ok=True)
        path.symlink_to(os.path.relpath(executable, path.parent))
    config = dest / "pyvenv.cfg"
    lines = [
        f"home = {executable.parent}" if line.startswith("home =") else line
        for line in config.read_text().splitlines()
        if not line.startswith(("executable =", "command ="))
    ]
    config.write_text("\n".join(lines) + "\n")
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        dest / "bin" / "python3",
        "install",
        "--no-cache-dir",
        "--no-compile",
        *packages,
    )
    for leftover in dest.glob("bin/*"):
        if not leftover.name.startswith("python"):
            leftover.unlink()  # activate scripts, pip's console scripts: no shell here


def is_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == ELF_MAGIC


def needed_libraries(path: Path) -> dict[str, Path]:
    """The shared libraries ``path`` loads (by ldd), beyond the system's."""
    found: dict[str, Path] = {}
    listed = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
    for line in listed.stdout.splitlines():  # nothing for a static executable
        name, arrow, rest = line.strip().partition(" => ")
        if not arrow or name in SYSTEM_LIBRARIES:
            continue
        location = rest.split(" (")[0].strip()
        if location == "not found":
            sys.exit(f"{path} needs {name}, which this build machine does not have")
        found[name] = Path(location)
    return found


def bundle_libraries(dest: Path, libraries: Path) -> None:
    """Copy what every ELF file in ``dest`` links to into ``libraries``; set run paths."""
    libraries.mkdir(exist_ok=True)
    elves = [p for p in sorted(dest.rglob("*")) if p.is_file() and not p.is_symlink()]
    elves = [p for p in elves if is_elf(p)]
    pending = list(elves)
    while pending:
        path = pending.pop()
        needed = needed_libraries(path)
        for name, location in needed.items():
            copy = libraries / name
            if location.is_relative_to(dest) or copy.exists():
                continue
            shutil.copy2(location, copy)
            copy.chmod(0o755)
            pending.append(copy)
            elves.append(copy)
        if needed and not any(location.is_relative_to(dest) for location in needed.values()):
            relative = os.path.relpath(libraries, path.parent)
            origin = "$ORIGIN" if relative == "." else f"$ORIGIN/{relative}"
            run("patchelf", "--set-rpath", origin, path)


def compile_sourceless(dest: Path, executable: Path) -> None:
    """Every module as bytecode beside where its source was; no source kept."""
    run(executable, "-I", "-m", "compileall", "-q", "-b", "-j", "0", dest)
    for source in dest.rglob("*.py"):
        if source.with_suffix(".pyc").exists():
            source.unlink()
    for cache in [p for p in dest.rglob("__pycache__") if p.is_dir()]:
        shutil.rmtree(cache)


def write_command(dest: Path) -> Path:
    """``DEST/secretinit``: the CLI on the bundled interpreter, isolated from PYTHON*."""
    command = dest / "secretinit"
    command.write_text(
        f"#!{dest}/bin/python3 -I\n"
        '"""secretinit, self-contained (bundle/build.py)."""\n'
        "from secretinit._cli import main\n\n"
        "main()\n"
    )
    command.chmod(0o755)
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bundle/build.py", description=__doc__)
    parser.add_argument("dest", type=Path, help="the bundle's directory (/opt/secretinit)")
    parser.add_argument("packages", nargs="+", help="what to install: the core, providers")
    args = parser.parse_args(argv)
    dest: Path = args.dest.resolve()
    if dest.exists():
        sys.exit(f"{dest} exists: the bundle is built into a new directory")
    executable = copy_interpreter(dest / "runtime")
    make_environment(dest, executable, args.packages)
    bundle_libraries(dest, dest / "runtime" / "lib")
    command = write_command(dest)
    compile_sourceless(dest, executable)
    sys.stdout.write(run(command, "--version"))
    sys.stdout.write(run(command, "providers"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
