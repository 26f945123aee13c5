"""The start's import diet: what a start and the resident supervisor load (issue 11).

Not timed: each test runs the real code in a child process and reads that
child's ``sys.modules``. An env-file or docker-secret start loads no cloud SDK
and no HTTP stack, nor the standard modules the start path was cut free of;
the supervisor loads nothing beyond the interpreter's own start but itself
and what it runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import secretinit

PACKAGE = Path(secretinit.__file__).resolve().parent
# Top-level packages of the SDKs and their HTTP stacks.
SDKS = {
    "hvac", "requests", "urllib3", "certifi", "charset_normalizer", "idna",
    "boto3", "botocore", "s3transfer", "jmespath", "dateutil",
    "azure", "msal", "cryptography", "google", "grpc", "httpx", "aiohttp",
}  # fmt: skip
# Standard modules a start that fetches nothing over the network never needs,
# and those its path was cut free of (each costs more than the work itself).
STANDARD = {
    "http", "http.client", "ssl", "socket", "urllib.request", "email",
    "logging", "dataclasses", "pathlib", "dotenv.main", "json", "ctypes",
}  # fmt: skip

# Runs secretinit's CLI, and when it would exec (the supervisor, or the
# command with --exec) prints the modules loaded by then instead.
MAIN_PROBE = """
import os, sys
def report(*_args):
    sys.stdout.write(" ".join(sorted(sys.modules)))
    sys.stdout.flush()
    os._exit(0)
os.execve = os.execvpe = report
sys.argv = ["secretinit", *sys.argv[1:]]
from secretinit._cli import main
main()
"""


def modules_of_start(args: list[str], env: dict[str, str], cwd: Path) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", MAIN_PROBE, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def forbidden(modules: set[str]) -> set[str]:
    return {m for m in modules if m.partition(".")[0] in SDKS or m in STANDARD}


@pytest.mark.parametrize("exec_", [False, True], ids=["supervised", "exec"])
def test_an_env_file_start_loads_no_sdk_and_no_http_stack(tmp_path: Path, exec_: bool) -> None:
    (tmp_path / "dev.env").write_text("DB_PASSWORD=canary-imports-1\n")
    env = {"PATH": "/usr/bin:/bin", "DB_PASSWORD": "env-file://dev.env#DB_PASSWORD"}
    args = ["run", "--dir", str(tmp_path / "out"), *(["--exec"] if exec_ else []), "--", "true"]
    modules = modules_of_start(args, env, tmp_path)
    assert "secretinit._env_file" in modules  # the probe did reach the start's end
    assert forbidden(modules) == set()


def test_a_docker_secret_start_loads_no_sdk_and_no_http_stack(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "db").write_text("canary-imports-2")  # no #KEY: no JSON to read
    env = {
        "PATH": "/usr/bin:/bin",
        "DB_PASSWORD": "docker-secret://db",
        "SECRETINIT_DOCKER_SECRETS_DIR": str(tmp_path / "secrets"),
    }
    modules = modules_of_start(["run", "--dir", str(tmp_path / "out"), "--", "true"], env, tmp_path)
    assert "secretinit._docker_secret" in modules
    assert forbidden(modules) == set()


# Runs the supervisor as _supervisor_main.py does, in a child that is not
# PID 1 (so it becomes a subreaper), supervising `true`; then prints what it
# loaded beyond the interpreter's own start.
SUPERVISOR_PROBE = """
import os, sys
started = set(sys.modules)
sys.path.append(sys.argv[1])
try:
    __import__("_supervisor").main(sys.argv[2:])
except SystemExit as exit:
    print(" ".join(sorted(set(sys.modules) - started)), exit.code)
"""


def loaded_beyond_start(code: str, *args: str) -> tuple[set[str], str]:
    """What ``python -I -S -c code`` loads beyond the interpreter's start, and what it printed."""
    probe = f"import sys\nstarted = set(sys.modules)\n{code}"
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", probe, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    *loaded, said = result.stdout.split(" ")
    return set(loaded), said.strip()


# Runs the supervisor as _supervisor_main.py does, in a child that is not
# PID 1 (so it becomes a subreaper), supervising `true`.
SUPERVISOR_PROBE = """
sys.path.append(sys.argv[1])
try:
    __import__("_supervisor").main(sys.argv[2:])
except SystemExit as exit:
    print(*sorted(set(sys.modules) - started), exit.code)
"""


SUPERVISOR = {
    "_supervisor", "__future__", "_ctypes",
    "os", "os.path", "posixpath", "genericpath", "stat", "_stat", "_collections_abc",
}  # fmt: skip


def test_the_supervisor_loads_only_what_it_runs() -> None:
    loaded, status = loaded_beyond_start(SUPERVISOR_PROBE, str(PACKAGE), "--", "true")
    assert status == "0"
    # Itself, os (which the interpreter loads only with site) and the
    # __future__ import its annotations need, and, as it is not PID 1, the C
    # module of ctypes for one prctl(2): nothing else.
    assert loaded == SUPERVISOR


def test_the_supervisor_loads_json_only_for_json_lines() -> None:
    json_modules, _ = loaded_beyond_start("import json\nprint(*(set(sys.modules) - started), 0)")
    args = (str(PACKAGE), "--log-format", "json", "--", "true")
    loaded, status = loaded_beyond_start(SUPERVISOR_PROBE, *args)
    assert status == "0"
    assert loaded == SUPERVISOR | json_modules


def test_the_status_probe_loads_neither_the_cli_nor_the_provider_interface(tmp_path: Path) -> None:
    """``secretinit status`` runs every few seconds for a container's life: kept small."""
    probe = (
        "import sys; sys.argv = ['secretinit', 'status', '--dir', sys.argv[1]]\n"
        "from secretinit.__main__ import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write(' '.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.startswith("not ready"), result.stdout + result.stderr
    modules = set(result.stderr.split())
    assert "secretinit._health" in modules
    assert {"click", "typing", "threading", "re", "secretinit._errors"} & modules == set()
