"""Usage is durable from the moment track() returns (issue 20): a process killed at any
instant (SIGKILL, an OOM kill, os._exit, a Lambda timeout) loses nothing that track()
returned, and the next process on the same spool delivers it exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from doow_otel_testing import LocalDoow
from doow_otel_testing.lambda_runtime import LambdaRuntime
from helpers import child_env, wait_for

APP = textwrap.dedent(
    """
    import os, sys, threading, time
    from doow_otel import DoowTracker

    meter = DoowTracker(flush_interval=3600, handle_sigterm=False)
    mode, count = sys.argv[1], int(sys.argv[2])
    if mode == "recover":  # a successor process: it records nothing new
        print("flushed", meter.flush(timeout=10), flush=True)
        meter.shutdown()
        sys.exit(0)
    if mode == "threads":  # 8 threads tracking at once, each `count` calls
        def calls(t):
            for i in range(count):
                meter.track(metric="api_calls", quantity=1, license_id=f"lic_{(t + i) % 3}")
        threads = [threading.Thread(target=calls, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        count = 0
    for i in range(count):
        if mode == "record":
            meter.track(metric="tokens", quantity=5, license_id="lic_rec", idempotency_key=f"k{i}")
        else:
            meter.track(metric="api_calls", quantity=1, license_id=f"lic_{i % 3}")
        print("tracked", i + 1, flush=True)
    if mode == "flush":
        print("flushing", flush=True)
        meter.flush(timeout=30)
    print("done", flush=True)
    if mode == "exit":
        os._exit(0)  # no atexit, no flush
    time.sleep(3600)  # killed here, before any export
    """
)

LOAD = textwrap.dedent(
    """
    import sys
    from doow_otel import DoowTracker

    meter = DoowTracker(flush_interval=3600, handle_sigterm=False)
    i = 0
    while True:  # killed at a random moment, under load
        meter.track(metric="api_calls", quantity=1, license_id=f"lic_{i % 7}",
                    attribution={"route": f"/r/{i % 5}"})
        i += 1
        sys.stdout.write(f"{i}\\n")
        sys.stdout.flush()
    """
)


def _start(
    script: str, doow: LocalDoow, spool: Path, tmp_path: Path, *args: str
) -> subprocess.Popen[str]:
    path = tmp_path / "app.py"
    path.write_text(script)
    env = child_env(
        {
            "DOOW_TRACK_API_KEY": doow.api_key,
            "DOOW_TRACK_ENDPOINT": doow.url,
            "DOOW_SPOOL_DIR": str(spool),
        }
    )
    return subprocess.Popen(
        [sys.executable, str(path), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines_until(process: subprocess.Popen[str], wanted: str) -> list[str]:
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.strip())
        if line.startswith(wanted):
            return lines
    error = process.stderr.read() if process.stderr else ""
    raise AssertionError(f"the process ended before {wanted!r}: {error}")


def _recover(doow: LocalDoow, spool: Path, tmp_path: Path) -> None:
    successor = _start(APP, doow, spool, tmp_path, "recover", "0")
    out, err = successor.communicate(timeout=60)
    assert successor.returncode == 0, err
    assert "flushed True" in out, out + err


@pytest.mark.parametrize("how", ["SIGKILL", "os._exit"])
def test_killed_before_any_export_the_successor_delivers_exactly_what_was_tracked(
    local_doow: LocalDoow, tmp_path: Path, how: str
) -> None:
    """The issue's scenario: 10 track() calls, killed 2 seconds later before its export,
    then the next process on the same spool flushes: 10 of 10, not 0."""
    spool = tmp_path / "spool"
    mode = "exit" if how == "os._exit" else "plain"
    process = _start(APP, local_doow, spool, tmp_path, mode, "10")
    _lines_until(process, "done")
    if how == "SIGKILL":
        process.kill()
    assert process.wait(timeout=30) == (-signal.SIGKILL if how == "SIGKILL" else 0)
    assert local_doow.total("api_calls") == 0
    _recover(local_doow, spool, tmp_path)
    assert local_doow.total("api_calls") == 10
    assert {local_doow.total("api_calls", f"lic_{i}") for i in range(3)} == {3, 4}
    _recover(local_doow, spool, tmp_path)  # a second successor finds nothing more to bill
    assert local_doow.total("api_calls") == 10


def test_threads_tracking_at_once_then_killed_two_successors_bill_it_exactly_once(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """8 threads x 500 track() calls at once, the process killed before any export, then
    two successors on the same spool recovering at the same moment: 4,000, once."""
    spool = tmp_path / "spool"
    process = _start(APP, local_doow, spool, tmp_path, "threads", "500")
    _lines_until(process, "done")
    process.kill()
    process.wait()
    places = [tmp_path / name for name in ("one", "other")]
    for place in places:
        place.mkdir()
    successors = [_start(APP, local_doow, spool, place, "recover", "0") for place in places]
    for successor in successors:
        out, err = successor.communicate(timeout=60)
        assert successor.returncode == 0 and "flushed True" in out, out + err
    assert local_doow.total("api_calls") == 4000
    assert [local_doow.total("api_calls", f"lic_{i}") for i in range(3)] == [1333, 1334, 1333]


def test_usage_records_survive_the_kill_with_their_ids(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    process = _start(APP, local_doow, spool, tmp_path, "record", "4")
    _lines_until(process, "done")
    process.kill()
    process.wait()
    _recover(local_doow, spool, tmp_path)
    assert local_doow.total("tokens", "lic_rec") == 20
    assert len(local_doow.events(license_id="lic_rec")) == 4


def test_killed_during_an_export_the_successor_bills_it_once(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """Killed while the sealed window's request is in flight (the server stored it and had
    not answered): the successor seals the same window again, with the same ids."""
    spool = tmp_path / "spool"
    local_doow.faults.latency(30, when="after_body")
    process = _start(APP, local_doow, spool, tmp_path, "flush", "9")
    _lines_until(process, "flushing")
    assert wait_for(lambda: local_doow.total("api_calls") == 9, 20)  # stored, unanswered
    process.kill()
    process.wait()
    local_doow.faults.clear()
    _recover(local_doow, spool, tmp_path)
    assert local_doow.total("api_calls") == 9
    assert local_doow.stats()["accepted"] == 3  # one event per license, each once


def test_killed_under_load_and_again_nothing_returned_is_lost_nothing_counted_twice(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """An OOM-style kill at a random instant of a tight loop, twice over (kill, restart,
    kill again): every track() that returned is billed once; the one in flight at the kill
    may or may not be (it had not returned)."""
    spool = tmp_path / "spool"
    returned = 0
    for delay in (0.7, 1.1):
        process = _start(LOAD, local_doow, spool, tmp_path)
        time.sleep(delay)
        process.kill()
        out, _ = process.communicate(timeout=30)
        counts = [int(line) for line in out.split()]
        assert counts, "the process tracked nothing before the kill"
        returned += counts[-1]
    _recover(local_doow, spool, tmp_path)
    total = local_doow.total("api_calls")
    assert returned <= total <= returned + 2, (returned, total)


HANDLER = textwrap.dedent(
    """
    import os, time
    from doow_otel import DoowTracker

    meter = DoowTracker(handle_sigterm=False)

    @meter.with_lambda
    def handler(event, context):
        meter.track(metric="llm_tokens", quantity=event["tokens"], license_id="lic_fn")
        if event.get("hang"):  # the tokens were spent; the handler never returns
            time.sleep(60)
        return {"ok": True}
    """
)


def test_a_lambda_timeout_after_track_loses_nothing(local_doow: LocalDoow, tmp_path: Path) -> None:
    """The handler hits its timeout after track(): Lambda kills the runtime and starts a new
    one in the same environment (its /tmp); that one delivers the killed one's usage."""
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(HANDLER)
    env = {
        "DOOW_TRACK_API_KEY": local_doow.api_key,
        "DOOW_TRACK_ENDPOINT": local_doow.url,
        "DOOW_SPOOL_DIR": str(tmp_path / "tmp" / "doow-spool"),
    }
    with LambdaRuntime(
        "app.handler", task_root=tmp_path / "fn", env=env, kill_at_deadline=True
    ) as runtime:
        assert runtime.invoke({"tokens": 7}, timeout=3.0).ok
        timed_out = runtime.invoke({"tokens": 100, "hang": True}, timeout=1.0)
        assert not timed_out.ok and runtime.timeouts == 1
        assert local_doow.total("llm_tokens") == 7
        assert runtime.invoke({"tokens": 1}, timeout=5.0).ok  # the new runtime, same /tmp
    assert local_doow.total("llm_tokens", "lic_fn") == 108
