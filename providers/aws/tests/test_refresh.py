"""``--refresh`` against moto: a rotated secret and an overwritten parameter reach the
application, and a refresh costs the start's calls."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from conftest import assert_no_leak  # type: ignore[import-not-found]
from tests.refreshing import LogFile, files_line, refreshing


def test_a_rotated_secret_and_an_overwritten_parameter_reach_the_application(
    sm: Any, ssm: Any, aws_server: Any, unique: str, secrets_dir: Path, refresh_log: LogFile
) -> None:
    values = {
        "pw1": "pw1-Rf31-never-logged",
        "pw2": "pw2-Rf32-never-logged",
        "api1": "api1-Rf33-never-logged",
        "api2": "api2-Rf34-never-logged",
    }
    sm.create_secret(Name=f"{unique}/db", SecretString=json.dumps({"password": values["pw1"]}))
    ssm.put_parameter(Name=f"/{unique}/api", Value=values["api1"], Type="SecureString")
    env = {"DB": f"aws-sm://{unique}/db#password", "API": f"aws-ssm:///{unique}/api"}
    aws_server.reset()
    options = ["--dir", str(secrets_dir), "--refresh", "2", "--on-change", "signal:HUP"]
    running = refreshing(options, env, ["DB", "API"], refresh_log)
    try:
        assert running.expect("files") == files_line(DB=values["pw1"], API=values["api1"])
        refresh_log.wait_for('"event": "refresh_unchanged"')
        # The start and one refresh: the same calls each (one batch per store).
        assert aws_server.counted() == {"BatchGetSecretValue": 2, "GetParameters": 2}

        # A rotation stages the new version AWSPENDING first: nothing changes for
        # the application. Then a new version is staged AWSCURRENT. (A rotation
        # function moves the stage with UpdateSecretVersionStage, after which
        # moto keeps answering the old version, unlike AWS.)
        sm.put_secret_value(
            SecretId=f"{unique}/db",
            SecretString=json.dumps({"password": "pending-Rf35-never-logged"}),
            VersionStages=["AWSPENDING"],
        )
        refresh_log.wait_for('"event": "refresh_unchanged"')
        sm.put_secret_value(
            SecretId=f"{unique}/db", SecretString=json.dumps({"password": values["pw2"]})
        )
        assert running.expect("SIGHUP") == "SIGHUP"
        assert running.expect("files") == files_line(DB=values["pw2"], API=values["api1"])

        ssm.put_parameter(
            Name=f"/{unique}/api", Value=values["api2"], Type="SecureString", Overwrite=True
        )
        assert running.expect("SIGHUP") == "SIGHUP"
        assert running.expect("files") == files_line(DB=values["pw2"], API=values["api2"])
        running.send(signal.SIGTERM)
        status, _, _ = running.wait()
    finally:
        running.kill()
    assert status == 0
    changed = [
        json.loads(line)["changed"]
        for line in refresh_log.text().splitlines()
        if '"event": "refresh_changed"' in line
    ]
    assert changed == [["DB"], ["API"]]
    assert_no_leak(
        [*values.values(), "pending-Rf35-never-logged", os.environ["AWS_SECRET_ACCESS_KEY"]],
        refresh_log.text(),
        "\n".join(running.lines),
    )
