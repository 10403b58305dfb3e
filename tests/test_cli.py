"""The pipe CLI: `doow-otel send` and `doow-otel test-event`, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture
def unmetered_doow() -> Iterator[LocalDoow]:
    """A local Doow with no event budget: for tests of line handling that send more than
    Doow's 1,000 events a minute in one burst (`send` sends each line as its own event)."""
    with LocalDoow(events_per_minute=0) as doow:
        yield doow


def test_send_delivers_every_good_line_and_names_the_bad_ones(
    unmetered_doow: LocalDoow, tmp_path: Path
) -> None:
    local_doow = unmetered_doow
    # two batches, within one minute of the client's budget (1,000 events a rolling minute)
    lines = [line(attribution={"function": "f"}) for _ in range(990)]
    lines[4] = '{"metric": "api_calls", "quantity": 0, "license_id": "lic_cli"}'
    lines[9] = "not json"
    lines[20] = line(quantity="three")
    result = run_cli(["send"], local_doow, tmp_path, "\n".join(lines) + "\n")
    assert result.returncode == 3  # every good line delivered, bad lines skipped
    assert "line 5: quantity: must be greater than 0" in result.stderr
    assert "line 10: not JSON" in result.stderr
    assert "line 21: quantity: must be an int or float" in result.stderr
    assert "delivered 987, rejected 0, failed 3" in result.stderr
    assert local_doow.total("api_calls", "lic_cli") == 987


def test_send_past_the_event_budget_keeps_the_rest_for_later(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    result = run_cli(
        ["send", "--timeout", "2"], local_doow, tmp_path, "\n".join(line() for _ in range(1200))
    )
    assert result.returncode == 1
    assert local_doow.total("api_calls") == 1000  # Doow's budget: 1,000 events a minute
    assert "kept in spool 200" in result.stderr
    assert result.stderr.count("rate limited") <= 1  # said once, however many batches


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


# --- test-event: one line, the one reason and its fix (issue 26) ---


def run_with(
    args: list[str], doow: LocalDoow, tmp_path: Path, *, key: str, endpoint: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DOOW_TRACK_API_KEY": key,
        "DOOW_TRACK_ENDPOINT": endpoint,
        "DOOW_SPOOL_DIR": str(tmp_path / "spool"),
    }
    return subprocess.run(
        [sys.executable, "-m", "doow_otel.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


TEST_EVENT = ["test-event", "--metric", "api_calls", "--license-id", "lic_te", "--timeout", "3"]


def test_test_event_says_in_one_line_that_it_arrived(local_doow: LocalDoow, tmp_path: Path) -> None:
    result = run_cli(TEST_EVENT, local_doow, tmp_path)
    assert result.returncode == 0
    (line_,) = result.stdout.splitlines()
    assert line_.startswith("arrived: api_calls 1 for lic_te (event ")
    assert line_.endswith(f"at {local_doow.url}; see it on {local_doow.url}/")
    assert result.stderr == ""


def test_test_event_with_a_wrong_key_names_the_cause_and_the_fix_once(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    result = run_with(
        TEST_EVENT, local_doow, tmp_path, key="dk_wrong_key_12345678", endpoint=local_doow.url
    )
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"not delivered: {local_doow.url} refused the API key (HTTP 401). Fix: set --api-key or "
        "DOOW_TRACK_API_KEY to a valid dk_ key (the local server prints its key when it starts)."
    ]
    assert result.stderr == ""
    assert "dk_wrong_key_12345678" not in result.stdout
    assert not (tmp_path / "spool").exists()  # a test event is never kept: nothing stranded
    (refusal,) = local_doow.refusals()
    assert (
        refusal["status"] == 401 and refusal["key_prefix"] == "dk_wron…"
    )  # 21 characters: 7 shown


def test_test_event_with_a_path_in_the_endpoint_says_to_drop_it(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    endpoint = local_doow.url + "/v1"
    result = run_with(TEST_EVENT, local_doow, tmp_path, key=local_doow.api_key, endpoint=endpoint)
    assert result.returncode == 1
    (line_,) = result.stdout.splitlines()
    assert line_ == (
        f"not delivered: {endpoint} is not Doow's ingest API (it answered HTTP 404). Fix: set "
        "--endpoint or DOOW_TRACK_ENDPOINT to the base URL alone, without a path: "
        "https://api.doow.co, or http://127.0.0.1:8787 for the local server."
    )
    (refusal,) = local_doow.refusals()
    assert refusal["path"] == "/v1/telemetry/events" and "extra path (/v1)" in refusal["fix"]


def test_test_event_without_a_server_says_so_once(tmp_path: Path) -> None:
    with LocalDoow() as doow:
        url, key = doow.url, doow.api_key
    result = run_with(TEST_EVENT, doow, tmp_path, key=key, endpoint=url)
    assert result.returncode == 1
    (line_,) = result.stdout.splitlines()
    assert line_.startswith(f"not delivered: could not reach {url} (")
    assert line_.endswith(
        "Fix: check the endpoint, and that the server is running "
        "(doow-local serve, for the local one)."
    )
    assert result.stderr == ""


# --- the spool: see it, adopt it, set it aside (issue 26) ---


def test_usage_sent_to_a_wrong_endpoint_is_listed_adopted_and_delivered(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    key, url = local_doow.api_key, local_doow.url
    wrong = run_with(
        ["send", "--timeout", "3"],
        local_doow,
        tmp_path,
        key=key,
        endpoint=url + "/v1",
        stdin=line(quantity=5),
    )
    assert wrong.returncode == 1
    assert wrong.stderr.count("is not Doow's ingest API") == 1
    assert "after the fix, doow-otel spool adopt sends it with the new settings" in wrong.stderr

    fixed = run_with(["send"], local_doow, tmp_path, key=key, endpoint=url, stdin=line(quantity=1))
    assert fixed.returncode == 0
    note = (
        "doow-otel: 1 batch of usage in {} was written with another endpoint or API key and "
        "will not be sent with this one."
    ).format(tmp_path / "spool")
    assert fixed.stderr.count(note) == 1
    assert fixed.stderr.index("delivered 1,") < fixed.stderr.index(note)  # after the news

    listed = run_with(["spool"], local_doow, tmp_path, key=key, endpoint=url)
    assert listed.returncode == 0
    assert f"{url}/v1, key {key[:10]}…: 1 batch, 1 event, oldest" in listed.stdout
    assert "written with another endpoint: not sent with the current settings" in listed.stdout
    assert "If it is yours: doow-otel spool adopt sends it" in listed.stdout
    assert key not in listed.stdout

    adopted = run_with(["spool", "adopt"], local_doow, tmp_path, key=key, endpoint=url)
    assert adopted.returncode == 0, adopted.stderr
    expected = f"Adopted 1 batch for {url} (key {key[:10]}…): 1 event delivered"
    assert adopted.stdout.strip() == expected
    assert local_doow.total("api_calls", "lic_cli") == 6

    after = run_with(["send"], local_doow, tmp_path, key=key, endpoint=url, stdin=line())
    assert after.returncode == 0 and "written with another endpoint" not in after.stderr


STOPPED = """
import os
from doow_otel import DoowTracker

meter = DoowTracker(flush_interval=3600, handle_sigterm=False, timeout=2)
meter.track(metric="api_calls", quantity=3, license_id="lic_cli")
meter.flush()  # refused at the wrong endpoint: into the spool
meter.track(metric="api_calls", quantity=4, license_id="lic_cli")
os._exit(0)  # stopped before its next export: the journal holds the 4
"""


def test_a_stopped_processs_journal_of_a_wrong_endpoint_is_listed_adopted_and_billed_once(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """Usage recorded by track() under a wrong endpoint, the process stopped before its
    window was sealed: its journal is listed with the spool, and adopted with it."""
    key, url = local_doow.api_key, local_doow.url
    env = {**os.environ, "DOOW_TRACK_API_KEY": key, "DOOW_TRACK_ENDPOINT": url + "/v1",
           "DOOW_SPOOL_DIR": str(tmp_path / "spool")}  # fmt: skip
    stopped = subprocess.run(
        [sys.executable, "-c", STOPPED], env=env, capture_output=True, text=True, timeout=60
    )
    assert stopped.returncode == 0, stopped.stderr
    listed = run_with(["spool"], local_doow, tmp_path, key=key, endpoint=url)
    assert f"{url}/v1, key {key[:10]}…: 1 batch, 1 event, 1 journal window" in listed.stdout
    adopted = run_with(["spool", "adopt"], local_doow, tmp_path, key=key, endpoint=url)
    assert adopted.returncode == 0, adopted.stderr
    assert adopted.stdout.startswith(f"Adopted 1 batch and 1 journal window for {url}")
    assert local_doow.total("api_calls", "lic_cli") == 7
    again = run_with(["spool", "adopt"], local_doow, tmp_path, key=key, endpoint=url)
    assert "Nothing of another endpoint or key waits" in again.stdout
    run_with(["send"], local_doow, tmp_path, key=key, endpoint=url, stdin="")
    assert local_doow.total("api_calls", "lic_cli") == 7  # once


def test_usage_of_another_key_can_be_set_aside(local_doow: LocalDoow, tmp_path: Path) -> None:
    key, url = local_doow.api_key, local_doow.url
    run_with(
        ["send", "--timeout", "3"],
        local_doow,
        tmp_path,
        key="dk_not_this_one_000",
        endpoint=url,
        stdin=line(),
    )
    listed = run_with(["spool"], local_doow, tmp_path, key=key, endpoint=url)
    assert "key dk_not…: 1 batch, 1 event" in listed.stdout
    assert "written with another API key" in listed.stdout
    moved = run_with(["spool", "set-aside"], local_doow, tmp_path, key=key, endpoint=url)
    assert moved.stdout.startswith("Set aside 1 batch in ")
    assert len(list((tmp_path / "spool" / "set-aside").glob("*.batch"))) == 1
    after = run_with(["send"], local_doow, tmp_path, key=key, endpoint=url, stdin=line())
    assert after.returncode == 0 and "another endpoint or API key" not in after.stderr
    assert local_doow.total("api_calls") == 1


def test_an_empty_spool_says_so(tmp_path: Path, local_doow: LocalDoow) -> None:
    listed = run_cli(["spool"], local_doow, tmp_path)
    assert listed.stdout.strip() == f"The spool {tmp_path / 'spool'} is empty: nothing waits."
