"""The README's quick start, pasted into a shell as written, against a dev server of the suite.

The block is the one after the ``quick-start`` marker. The only change made to
it is the server's address: the README's ``127.0.0.1:8200`` may be taken on
this machine, so the test's own dev server (with the README's root token)
listens on a free port instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from secretinit_vault.testing import DevServer

from conftest import PROCESS_TIMEOUT

README = Path(__file__).resolve().parents[1] / "README.md"
README_ADDRESS = "http://127.0.0.1:8200"


def quick_start() -> str:
    text = README.read_text()
    match = re.search(r"<!-- quick-start:[^>]*-->\n```sh\n(.*?)```", text, re.DOTALL)
    assert match, "the quick start block is gone from the README"
    return match.group(1)


def test_the_quick_start_works_as_written(tmp_path: Path) -> None:
    block = quick_start()
    token = re.search(r"^export VAULT_TOKEN=(\S+)$", block, re.MULTILINE)
    assert token and README_ADDRESS in block
    server = DevServer(tmp_path / "bao")
    server.root_token = token.group(1)  # the token the README shows
    with server:
        env = {
            # The shell finds secretinit and bao where this environment installed them.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(tmp_path),
            # Where secretinit writes: the default (/run/secretinit on a tmpfs)
            # would be shared with everything else on this machine.
            "SECRETINIT_DIR": str(tmp_path / "secrets"),
        }
        script = block.replace(README_ADDRESS, server.address)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    written = tmp_path / "secrets" / "DB_PASSWORD"
    assert f"the app reads {written}: 21 bytes" in result.stdout
    assert written.read_text() == "correct-horse-battery"
    assert "correct-horse-battery" not in result.stdout + result.stderr
