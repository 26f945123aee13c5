"""``--refresh`` against the Key Vault fake: a new version reaches the application."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from secretinit_azure.testing import FakeKeyVault

from conftest import assert_no_leak
from tests.refreshing import LogFile, files_line, refreshing

pytestmark = pytest.mark.usefixtures("azure_env")


def test_a_new_version_reaches_the_application(
    fake_vault: FakeKeyVault, tmp_path: Path, secrets_dir: Path, refresh_log: LogFile
) -> None:
    first, second = "kv-canary-v1-3b7e", "kv-canary-v2-4c8f"
    fake_vault.set_secret("db-password", first)
    pinned = fake_vault.set_secret("api-key", "kv-canary-pinned-5d9a")
    config = tmp_path / "secretinit.toml"
    config.write_text("[providers.azure]\nverify_challenge_resource = false\n")
    env = {
        "DB_PASSWORD": f"azure-kv://{fake_vault.host}/db-password",
        "API_KEY": f"azure-kv://{fake_vault.host}/api-key/{pinned}",
    }
    options = ["--config", str(config), "--dir", str(secrets_dir), "--refresh", "1"]
    running = refreshing(
        [*options, "--on-change", "signal:HUP"], env, ["DB_PASSWORD", "API_KEY"], refresh_log
    )
    try:
        expected = {"DB_PASSWORD": first, "API_KEY": "kv-canary-pinned-5d9a"}
        assert running.expect("files") == files_line(**expected)
        refresh_log.wait_for('"event": "refresh_unchanged"')
        fake_vault.set_secret("db-password", second)
        fake_vault.set_secret("api-key", "kv-canary-unpinned-6e0b")  # a pinned version stays
        assert running.expect("SIGHUP") == "SIGHUP"
        expected["DB_PASSWORD"] = second
        assert running.expect("files") == files_line(**expected)
        running.send(signal.SIGTERM)
        status, _, _ = running.wait()
    finally:
        running.kill()
    assert status == 0
    assert '"changed": ["DB_PASSWORD"]' in refresh_log.text()
    assert_no_leak(
        [
            first,
            second,
            "kv-canary-pinned-5d9a",
            "kv-canary-unpinned-6e0b",
            fake_vault.identity_header,
            *fake_vault.issued,
        ],
        refresh_log.text(),
        "\n".join(running.lines),
    )
