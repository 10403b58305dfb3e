"""SIGTERM during a flush (issue 9, item 14): the process exits, and usage tracked before
the signal is delivered or spooled; no deadlock on the SDK's export lock. The app runs
as a real process against a slow local server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from doow_otel import DoowClient
from doow_otel_testing import LocalDoow

APP = textwrap.dedent(
    """
    import os, threading, time
    from doow_otel import DoowTracker

    meter = DoowTracker(os.environ["KEY"], endpoint=os.environ["URL"], spool=os.environ["SPOOL"],
                        flush_interval=3600, timeout=float(os.environ["TIMEOUT"]))
    for i in range(10):
        meter.track(metric="api_calls", quantity=1, license_id="lic_a")

    def track_during_the_flush():
        while meter.client.stats()["requests"] < 1:  # the flush's request is under way
            time.sleep(0.005)
        meter.track(metric="api_calls", quantity=5, license_id="lic_b")
        print("tracked", flush=True)

    if os.environ["FLUSH_ON"] == "thread":
        threading.Thread(target=meter.flush).start()
        track_during_the_flush()
    else:
        threading.Thread(target=track_during_the_flush).start()
        meter.flush()  # on the main thread: the signal lands in here
    threading.Event().wait()  # idle until SIGTERM
    """
)


def _sigterm_mid_flush(local_doow: LocalDoow, tmp_path: Path, flush_on: str) -> None:
    local_doow.faults.latency(1.0)
    script = tmp_path / "app.py"
    script.write_text(APP)
    env = {
        **os.environ,
        "KEY": local_doow.api_key,
        "URL": local_doow.url,
        "SPOOL": str(tmp_path / "spool"),
        "TIMEOUT": "5",
        "FLUSH_ON": flush_on,
    }
    app = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert app.stdout is not None
        assert app.stdout.readline() == b"tracked\n"  # during the flush's (slow) request
        app.send_signal(signal.SIGTERM)
        app.wait(timeout=60)  # a deadlock on the export lock never gets here
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    assert app.returncode == -signal.SIGTERM, app.stderr.read() if app.stderr else ""
    local_doow.faults.clear()
    # Whatever did not arrive is in the spool: replaying it completes the totals exactly.
    with DoowClient(local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "spool") as c:
        c.flush_spool(timeout=10)
    assert local_doow.total("api_calls", "lic_a") == 10
    assert local_doow.total("api_calls", "lic_b") == 5


def test_sigterm_during_a_flush_on_the_main_thread(local_doow: LocalDoow, tmp_path: Path) -> None:
    _sigterm_mid_flush(local_doow, tmp_path, "main")


def test_sigterm_while_another_thread_flushes(local_doow: LocalDoow, tmp_path: Path) -> None:
    _sigterm_mid_flush(local_doow, tmp_path, "thread")


BUSY_APP = textwrap.dedent(
    """
    import os
    from doow_otel import DoowTracker

    meter = DoowTracker(os.environ["KEY"], endpoint=os.environ["URL"], spool=os.environ["SPOOL"],
                        flush_interval=3600, timeout=5)
    tracked = 0
    while True:  # the signal lands inside track(), maybe holding the SDK's aggregation lock
        meter.track(metric="api_calls", quantity=1, license_id=f"lic_{tracked % 50}")
        tracked += 1
        if tracked % 2000 == 0:
            print(tracked, flush=True)
    """
)


def test_sigterm_while_the_main_thread_tracks(local_doow: LocalDoow, tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(BUSY_APP)
    env = {**os.environ, "KEY": local_doow.api_key, "URL": local_doow.url}
    env["SPOOL"] = str(tmp_path / "spool")
    app = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE)
    try:
        assert app.stdout is not None
        before = int(app.stdout.readline())
        app.send_signal(signal.SIGTERM)
        app.wait(timeout=60)  # a deadlock on the aggregation lock never gets here
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    assert app.returncode == -signal.SIGTERM
    with DoowClient(local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "spool") as c:
        c.flush_spool(timeout=10)
    total = local_doow.total("api_calls")
    assert total >= before  # everything tracked before the signal
