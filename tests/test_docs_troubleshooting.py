"""docs/production.md's troubleshooting table, walked: every command in its "what to run"
column runs as written (with a local server's key, license and endpoint in place of the
placeholders), and every other name in it is a setting or an API that exists."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import doow_otel
from doow_otel.tracker import DoowTracker
from doow_otel_testing import LocalDoow

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ROOT / "docs" / "production.md"
SHELL = re.compile(r"^(DOOW_\w+=\S+ )*doow-otel ")
SETTING = re.compile(r"^(DOOW_[A-Z_]+)(=\S+)?$")
# names the column may give that are not commands: arguments, counters, fields
NAMES = {
    "flush_timeout",  # the serverless wrappers' option (doow_otel.serverless)
    "idempotency_key",
    "timestamp",
    "tracked",
    "sent",
    "spooled",
    "pending_in_spool",
    "abandoned",
    "ADJUSTMENT",
}


def table_rows() -> list[list[str]]:
    text = PRODUCTION.read_text()
    section = text.split("## Troubleshooting\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in row.strip("|").split(" | ")] for row in rows[2:]]
    assert len(cells) >= 10 and all(len(row) == 3 for row in cells), rows
    return cells


def to_run() -> list[str]:
    return [span for row in table_rows() for span in re.findall(r"`([^`]+)`", row[2])]


def settings_documented() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    return set(re.findall(r"`(DOOW_[A-Z_]+)`", readme)) | {"DOOW_TRACK_STRICT"}


@pytest.fixture
def meter(local_doow: LocalDoow, tmp_path: Path) -> Any:
    tracker = DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path / "spool",
        flush_interval=3600,
        handle_sigterm=False,
    )
    tracker.track(metric="api_calls", quantity=1, license_id="lic_doc")
    tracker.flush()
    yield tracker
    tracker.shutdown()


def test_the_table_names_only_commands_settings_and_apis_that_exist() -> None:
    documented = settings_documented()
    for span in to_run():
        if SHELL.match(span) or span.startswith("meter."):
            continue  # run by the tests below
        setting = SETTING.match(span)
        if setting:
            assert setting[1] in documented, f"{span}: not a documented setting"
        elif "." in span:  # SendResult.rejected and the like: an attribute of the API
            owner, attribute = span.split(".", 1)
            assert hasattr(getattr(doow_otel, owner), "__dataclass_fields__")
            assert attribute in getattr(doow_otel, owner).__dataclass_fields__, span
        elif span in NAMES or hasattr(doow_otel, span) or span == "track()":
            pass
        elif "=" in span and span.split("=")[0] in inspect.signature(DoowTracker).parameters:
            pass  # an argument of DoowTracker, say strict=True
        else:
            pytest.fail(f"{span!r} in the troubleshooting table is neither a command nor a name")


def test_every_shell_command_runs_as_written(local_doow: LocalDoow, tmp_path: Path) -> None:
    commands = [span for span in to_run() if SHELL.match(span)]
    assert any("spool adopt" in c for c in commands) and any("test-event" in c for c in commands)
    env = {
        **os.environ,
        "DOOW_TRACK_API_KEY": local_doow.api_key,
        "DOOW_TRACK_ENDPOINT": local_doow.url,
        "DOOW_SPOOL_DIR": str(tmp_path / "spool"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for command in commands:
        concrete = (
            command.replace("dk_...", local_doow.api_key)
            .replace("lic_...", "lic_doc")
            .replace("https://api.doow.co", local_doow.url)
        )
        done = subprocess.run(
            concrete, shell=True, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert local_doow.api_key not in done.stdout + done.stderr


def test_every_python_expression_runs_on_a_tracker(meter: DoowTracker) -> None:
    expressions = sorted({span for span in to_run() if span.startswith("meter.")})
    assert "meter.stats()" in expressions
    for expression in expressions:
        value = eval(expression, {"meter": meter})  # noqa: S307 - the doc's own text
        assert value is not None, expression
    assert meter.stats()["tracked"] == 1
