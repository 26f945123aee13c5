"""No secret value in any output: planted values are searched for everywhere.

Every command runs with debug JSON logging, with successes and failures,
including a buggy third-party provider whose errors echo a value and an
internal error with a traceback; stdout, stderr, log records and argv are
searched for the planted values.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import assert_no_leak, run_secretinit
from secretinit._cli import cli
from secretinit._log import LOGGER
from tests.processes import Running

PLANTED = {
    "DB_PASSWORD": "canary-db-9f8e7d6c",
    "API_TOKEN": "canary-token-1a2b3c4d",
    "TLS_KEY": "canary-tls-5e6f7a8b",
}
ECHOED = "canary-echoed-0c0ffee0"


@pytest.fixture
def planted(tmp_path: Path) -> dict[str, str]:
    """A config, an env file, a docker secret and a leaky provider, all with canaries."""
    env_file = tmp_path / "dev.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in PLANTED.items()))
    secrets_dir = tmp_path / "run-secrets"
    secrets_dir.mkdir()
    (secrets_dir / "tls").write_text('{{"key": "{}"}}'.format(PLANTED["TLS_KEY"]))
    # A buggy provider that puts the value it read into its error messages,
    # and one that crashes with the value in its exception.
    (tmp_path / "leaky_provider.py").write_text(
        "from secretinit import Provider, NotFound\n"
        f"VALUE = {ECHOED!r}\n"
        "class Leaky(Provider):\n"
        "    def fetch(self, refs, timeout):\n"
        "        out = {}\n"
        "        for ref in refs:\n"
        "            good = ref.location == 'good'\n"
        "            out[ref] = VALUE.encode() if good else NotFound('saw ' + VALUE)\n"
        "        return out\n"
        "class Crashing(Provider):\n"
        "    def fetch(self, refs, timeout):\n"
        "        raise RuntimeError('crashed holding ' + VALUE)\n"
    )
    dist = tmp_path / "leaky_provider-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: leaky-provider\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[secretinit.providers]\nleaky = leaky_provider:Leaky\ncrashing = leaky_provider:Crashing\n"
    )
    good = tmp_path / "good.toml"
    good.write_text(
        f'[secrets.DB_PASSWORD]\nfrom = "env-file://{env_file}#DB_PASSWORD"\n'
        f'[secrets.API_TOKEN]\nfrom = "env-file://{env_file}#API_TOKEN"\nexport = "none"\n'
        '[secrets.TLS_KEY]\nfrom = "docker-secret://tls#key"\n'
        '[secrets.URL]\ntemplate = "https://u:${API_TOKEN}@host"\n'
        '[secrets.ECHO]\nfrom = "leaky://good"\n'
    )
    bad = tmp_path / "bad.toml"
    bad.write_text(
        good.read_text()
        + f'[secrets.MISSING]\nfrom = "env-file://{env_file}#MISSING"\n'
        + '[secrets.NO_KEY]\nfrom = "docker-secret://tls#nokey"\n'
        + '[secrets.LEAKY_FAIL]\nfrom = "leaky://bad"\n'
        + '[secrets.CRASH]\nfrom = "crashing://x"\n'
        + '[secrets.BAD_TEMPLATE]\ntemplate = "${MISSING}-${DB_PASSWORD}"\n'
    )
    return {
        "good": str(good),
        "bad": str(bad),
        "env_file": str(env_file),
        "PYTHONPATH": str(tmp_path),
        "SECRETINIT_DOCKER_SECRETS_DIR": str(secrets_dir),
        "dir": str(tmp_path / "out"),
    }


def values() -> list[str]:
    return [*PLANTED.values(), ECHOED]


COMMANDS = [
    ["run", "--config", "{good}", "--dir", "{dir}", "--", "true"],
    ["run", "--config", "{bad}", "--dir", "{dir}", "--", "true"],
    ["run", "--config", "{good}", "--env-file", "{env_file}", "--", "sh", "-c", "exit 3"],
    ["run", "--config", "{good}", "--dir", "{dir}", "--exec", "--", "true"],
    ["fetch", "--config", "{good}", "--dir", "{dir}"],
    ["fetch", "--config", "{bad}", "--dir", "{dir}"],
    ["check", "--config", "{good}"],
    ["check", "--config", "{bad}"],
    ["check", "--config", "{bad}", "--env-file", "{env_file}"],
    ["providers"],
    ["run", "--config", "{good}", "--dir", "{dir}", "--refresh", "1", "--", "sleep", "2.5"],
    ["fetch", "--config", "{bad}", "--dir", "{dir}", "--refresh", "1"],
    ["status", "--dir", "{dir}"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_no_value_in_stdout_or_stderr(planted: dict[str, str], command: list[str]) -> None:
    args = [part.format(**planted) for part in command]
    env = {
        "PYTHONPATH": planted["PYTHONPATH"],
        "SECRETINIT_DOCKER_SECRETS_DIR": planted["SECRETINIT_DOCKER_SECRETS_DIR"],
        "SECRETINIT_LOG_FORMAT": "json",
        "SECRETINIT_LOG_LEVEL": "debug",
    }
    result = run_secretinit(args, env)
    assert result.returncode in (0, 1, 3, 69), result.stderr
    assert result.stderr or result.stdout  # something was said, and searched
    assert_no_leak(values(), result.stdout, result.stderr)
    if "{bad}" in command and "--env-file" not in command:
        assert "crashed holding [redacted]" in result.stderr or "[redacted]" in result.stdout


def test_no_value_in_log_records(planted: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(planted["PYTHONPATH"])
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(level=logging.DEBUG)
    env = {"SECRETINIT_DOCKER_SECRETS_DIR": planted["SECRETINIT_DOCKER_SECRETS_DIR"]}
    try:
        for config in ("good", "bad"):
            # configure_logging replaces the handlers at each invocation: add ours after it.
            monkeypatch.setattr(
                "secretinit._cli.configure_logging",
                lambda fmt, level: _configure_and_keep(fmt, level, keep),
            )
            result = CliRunner().invoke(
                cli,
                [
                    "check",
                    "--config",
                    planted[config],
                    "--log-level",
                    "debug",
                    "--log-format",
                    "json",
                ],
                env=env,
            )
            assert result.exit_code in (0, 69), result.output
            assert_no_leak(values(), result.stdout, result.stderr)
    finally:
        LOGGER.removeHandler(keep)
    assert records
    for record in records:
        assert_no_leak(values(), record.getMessage(), repr(getattr(record, "fields", {})))


def _configure_and_keep(log_format: str, level: str, keep: logging.Handler) -> None:
    from secretinit._log import configure_logging

    configure_logging(log_format, level)
    LOGGER.addHandler(keep)


def test_no_value_in_argv_or_supervisor_environment(planted: dict[str, str]) -> None:
    running = Running(
        [
            "run",
            "--config",
            planted["good"],
            "--dir",
            planted["dir"],
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 60",
        ],
        {
            "SECRETINIT_DOCKER_SECRETS_DIR": planted["SECRETINIT_DOCKER_SECRETS_DIR"],
            "PYTHONPATH": planted["PYTHONPATH"],
        },
    )
    try:
        running.expect("ready")
        supervisor = Path(f"/proc/{running.pid}")
        child = Path(f"/proc/{running.pid}/task/{running.pid}/children").read_text().split()[0]
        for pid_dir in (supervisor, Path(f"/proc/{child}")):
            assert_no_leak(
                values(), (pid_dir / "cmdline").read_bytes(), (pid_dir / "environ").read_bytes()
            )
        running.send(signal.SIGTERM)
        running.wait()
    finally:
        running.kill()


def test_no_value_in_the_state_a_refresh_keeps(planted: dict[str, str]) -> None:
    """The start record holds references and credentials, never a fetched value."""
    env = {
        "SECRETINIT_DOCKER_SECRETS_DIR": planted["SECRETINIT_DOCKER_SECRETS_DIR"],
        "PYTHONPATH": planted["PYTHONPATH"],
        "SECRETINIT_LOG_LEVEL": "debug",
    }
    args = ["run", "--config", planted["good"], "--dir", planted["dir"], "--refresh", "1"]
    result = run_secretinit([*args, "--", "sleep", "1.5"], env)
    assert result.returncode == 0, result.stderr
    assert "refresh_done" in result.stderr or "refreshed" in result.stderr
    state = Path(planted["dir"]) / "..secretinit"
    assert sorted(p.name for p in state.iterdir()) == ["health", "start.json"]
    assert_no_leak(
        values(), result.stdout, result.stderr, *(p.read_bytes() for p in state.iterdir())
    )
