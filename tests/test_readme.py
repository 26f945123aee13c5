"""The README's examples, run as written: what a new user pastes must do what it says.

The demo and its output, the config file example (valid, and `check`ed), the
problem report it documents, the `.env` flow of examples/README.md and the
exit-status table. Commands run with the environment's ``bin`` first on PATH,
as ``uv run`` (the README's way) runs them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, secretinit_executable
from secretinit import _errors

README = (ROOT / "README.md").read_text()
EXAMPLES_README = (ROOT / "examples" / "README.md").read_text()
BIN = str(Path(sys.executable).parent)
PASSWD_APP = "app:x:10001:10001::/home/app:/bin/sh\n"
GROUP_APP = "app:x:10001:\n"


def blocks(text: str, language: str = "") -> list[str]:
    """The fenced code blocks of ``text`` in ``language`` ("" for a bare fence)."""
    found: list[str] = []
    current: list[str] | None = None
    opened = ""
    for line in text.splitlines():
        if current is None and line.startswith("```"):
            current, opened = [], line[3:].strip()
        elif current is not None and line == "```":
            if opened == language:
                found.append("\n".join(current) + "\n")
            current = None
        elif current is not None:
            current.append(line)
    return found


def section(text: str, heading: str) -> str:
    """The text of the ``## heading`` section."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def shell(command: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    """``command`` through sh, as pasted, stderr merged into stdout in the order written."""
    return subprocess.run(
        ["sh", "-c", command],
        cwd=cwd,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        check=False,
    )


def pattern_of(line: str) -> str:
    """A documented output line as a regex: the run's own directory, pid, ids and time vary."""
    text = re.escape(line)
    text = re.sub(r"/dev/shm/secretinit\\-[a-z0-9_]+", r"/\\S+", text)
    text = re.sub(r"(uid|gid|pid)\\? \d+", r"\1 \\d+", text)
    return re.sub(r"in\\ 0\\.\d+\\ s", r"in\\ [\\d.]+\\ s", text)


def test_the_demo_prints_what_the_readme_shows() -> None:
    """Issue 14, item 15: the documented lines, in the order the program prints them."""
    (install_block,) = [b for b in blocks(README, "sh") if "examples/app.py" in b]
    (demo,) = [line for line in install_block.splitlines() if "examples/app.py" in line]
    command = demo.split("uv run --frozen --no-dev ", 1)[1]  # what `uv run` executes
    result = shell(command)
    assert result.returncode == 0, result.stdout
    documented = blocks(README.split("\n## ", 1)[0])[0]  # the introduction's output block
    expected = [pattern_of(line) for line in documented.splitlines()]
    actual = result.stdout.splitlines()
    assert len(actual) == len(expected), result.stdout
    for pattern, line in zip(expected, actual, strict=True):
        assert re.fullmatch(pattern, line), (pattern, line)


def config_example() -> str:
    (example,) = blocks(section(README, "The config file"), "toml")
    return example


@pytest.mark.usefixtures("require_root")
def test_the_config_file_example_is_valid_and_checks(tmp_path: Path) -> None:
    """Run `check` on the example as written, where its user and group `app` exist.

    A private mount namespace gives this test a passwd and group file with
    ``app`` (as the image has) without touching the machine's.
    """
    config = tmp_path / "secretinit.toml"
    config.write_text(config_example())
    (tmp_path / "dev.env").write_text(
        "DB_PASSWORD=pw\nTLS_KEY=key\nFEATURE_TOKEN=token\n"  # every secret, by name
    )
    for name, extra in (("passwd", PASSWD_APP), ("group", GROUP_APP)):
        (tmp_path / name).write_text(Path(f"/etc/{name}").read_text() + extra)
    script = (
        f"mount --bind {tmp_path}/passwd /etc/passwd && mount --bind {tmp_path}/group /etc/group"
        f" && exec {secretinit_executable()} check --config secretinit.toml --env-file dev.env"
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "DB_PASSWORD",
        "TLS_KEY",
        "DATABASE_URL",
        "FEATURE_TOKEN",
        "directory",
    ]
    assert all(line.split()[-2:] != ["FAILED"] for line in lines)


def test_the_documented_problem_report(tmp_path: Path) -> None:
    """The report the config section shows, for the example with `form` on its line 13."""
    example = config_example().splitlines()
    assert example[12].startswith("from = ")
    example[12] = "form" + example[12][4:]
    (tmp_path / "secretinit.toml").write_text("\n".join(example) + "\n")
    documented = blocks(section(README, "The config file"))[0].splitlines()
    result = shell("secretinit check --config secretinit.toml", cwd=tmp_path)
    assert result.returncode == 78
    # The documented lines come first; the machine may add its own (no user `app`).
    assert result.stdout.splitlines()[: len(documented)] == documented, result.stdout


def test_the_env_file_flow_of_the_examples() -> None:
    """examples/README.md: the `.env` flow, each command as written."""
    (commands,) = [b for b in blocks(EXAMPLES_README, "sh") if "check --config" in b]
    for command in commands.splitlines():
        result = shell(command)
        assert result.returncode == 0, (command, result.stdout)
    (output,) = [b for b in blocks(EXAMPLES_README) if b.startswith("$ secretinit check")]
    prompt, *documented = output.splitlines()
    result = subprocess.run(
        ["sh", "-c", prompt.removeprefix("$ ")],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    actual = result.stdout.replace(str(ROOT), "/src/secretinit").splitlines()
    assert actual[:-1] == documented[:-1]
    assert actual[-1].startswith("directory ")  # which one depends on the machine's mounts
    (single,) = [b for b in blocks(EXAMPLES_README, "sh") if b.startswith("DB_PASSWORD=")]
    result = shell(single.strip())
    assert result.returncode == 0, result.stdout
    assert "\ndev-db-password-123secretinit: info: sh exited" in result.stdout  # dev.env, no secret


def test_the_exit_status_table_matches_the_code() -> None:
    """Issue 9, item 4: the documented table, the constants and the --help texts agree."""
    table = section(README, "Exit statuses")
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, flags=re.MULTILINE)}
    constants = {
        value
        for name, value in vars(_errors).items()
        if name.startswith("EXIT_") and isinstance(value, int)
    }
    assert documented == constants
    assert _errors.EXIT_USAGE == 2 and _errors.EXIT_CONFIG == 78
