"""The pipe CLI: `doow-otel send` and `doow-otel test-event`, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from doow_otel_testing import LocalDoow


def run_cli(
    args: list[str], doow: LocalDoow, tmp_path: Path, stdin: str | bytes = ""
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DOOW_TRACK_API_KEY": doow.api_key,
        "DOOW_TRACK_ENDPOINT": doow.url,
        "DOOW_SPOOL_DIR": str(tmp_path / "spool"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "doow_otel.cli", *args],
        input=stdin.encode() if isinstance(stdin, str) else stdin,
        env=env,
        capture_output=True,
        timeout=120,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def line(**fields: object) -> str:
    return json.dumps({"metric": "api_calls", "quantity": 1, "license_id": "lic_cli", **fields})


def test_send_delivers_every_good_line_and_names_the_bad_ones(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    lines = [line(attribution={"function": "f"}) for _ in range(1100)]
    lines[4] = '{"metric": "api_calls", "quantity": 0, "license_id": "lic_cli"}'
    lines[9] = "not json"
    lines[20] = line(quantity="three")
    result = run_cli(["send"], local_doow, tmp_path, "\n".join(lines) + "\n")
    assert result.returncode == 3  # every good line delivered, bad lines skipped
    assert "line 5: quantity: must be greater than 0" in result.stderr
    assert "line 10: not JSON" in result.stderr
    assert "line 21: quantity: must be an int or float" in result.stderr
    assert "delivered 1097, rejected 0, failed 3" in result.stderr
    assert local_doow.total("api_calls", "lic_cli") == 1097


def test_send_exits_zero_when_everything_arrived(local_doow: LocalDoow, tmp_path: Path) -> None:
    result = run_cli(["send"], local_doow, tmp_path, "\n".join(line() for _ in range(3)))
    assert result.returncode == 0, result.stderr
    assert local_doow.total("api_calls") == 3


def test_send_keeps_what_the_server_would_not_take_and_the_next_run_delivers_it(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    local_doow.faults.fail_next(1000, 503)
    first = run_cli(["send", "--timeout", "1"], local_doow, tmp_path, line(quantity=5))
    assert first.returncode == 1
    assert "kept in spool 1" in first.stderr
    local_doow.faults.clear()
    second = run_cli(["send"], local_doow, tmp_path, line(quantity=2))
    assert second.returncode == 0, second.stderr
    assert local_doow.total("api_calls") == 7


def test_event_ids_in_the_input_make_reruns_safe(local_doow: LocalDoow, tmp_path: Path) -> None:
    text = line(event_id="6f1c2d7a-1b10-4c8e-9f0e-5b1d6f0e3c52")
    run_cli(["send"], local_doow, tmp_path, text)
    run_cli(["send"], local_doow, tmp_path, text)
    assert local_doow.total("api_calls") == 1


def test_test_event_reads_the_event_back(local_doow: LocalDoow, tmp_path: Path) -> None:
    result = run_cli(
        ["test-event", "--metric", "probe", "--license-id", "lic_probe"], local_doow, tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "arrived" in result.stdout
    assert local_doow.total("probe", "lic_probe") == 1


def test_missing_key_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOOW_")}
    result = subprocess.run(
        [sys.executable, "-m", "doow_otel.cli", "send"],
        input="",
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "api_key: no Doow API key" in result.stderr


def test_send_skips_each_bad_line_naming_it_and_sends_the_rest(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    bad = {
        2: (b"{not json", "line 2: not JSON"),
        3: (b"[1, 2]", "line 3: must be a JSON object"),
        4: (b'{"metric": "api_calls", "quantity": 1}', "line 4: license_id: is required"),
        5: (line(timestamp="0001-01-01T00:00:00+01:00").encode(), "line 5: timestamp"),
        6: (line(occurred_at="99999-01-01T00:00:00Z").encode(), "line 6: timestamp"),
        7: (line(occurred_at=1e300).encode(), "line 7: timestamp"),
        8: (b"[" * 100_000 + b"]" * 100_000, "line 8: not JSON"),
        9: (b'{"metric": "api_calls\xff", "quantity": 1}', "line 9: not UTF-8"),
        10: (line(quantity=2**63).encode(), "line 10: quantity"),
    }
    lines = [bad[n][0] if n in bad else line(quantity=n).encode() for n in range(1, 14)]
    result = run_cli(["send"], local_doow, tmp_path, b"\n".join(lines) + b"\n")
    assert result.returncode == 3, result.stderr
    for _, message in bad.values():
        assert message in result.stderr, (message, result.stderr)
    good = [n for n in range(1, 14) if n not in bad]
    assert local_doow.total("api_calls", "lic_cli") == sum(good)
    assert f"delivered {len(good)}," in result.stderr
