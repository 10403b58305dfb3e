"""The README's main command: `doow-otel demo` runs every path against the local server;
with `--keep-serving` it leaves the server and its page up until Ctrl-C or SIGTERM."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

DEMO = [sys.executable, "-m", "doow_otel_testing.cli", "demo"]


def summary_rows(out: str) -> set[tuple[str, ...]]:
    return {tuple(line.split()) for line in out.splitlines() if line.startswith("   ")}


def test_demo_runs_every_example_and_reports_exact_totals() -> None:
    result = subprocess.run(DEMO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "skipped" not in out  # the dev extra has every runtime the demo drives
    rows = summary_rows(out)
    # Vercel's two requests flush after their responses (waitUntil): one window when the
    # second request comes before the first's flush sealed it, else one each
    vercel = {
        row[0]: int(row[4]) for row in rows if row[1:4] in {("lic_hooli", "6", "vercel"),
                                                            ("lic_hooli", "2", "vercel")}
    }  # fmt: skip
    assert set(vercel) == {"words", "api_calls"} and set(vercel.values()) <= {1, 2}, out
    for row in [
        ("words", "lic_initech", "6", "lambda", "3", "USAGE"),
        ("words", "lic_stark", "5", "azure", "1", "USAGE"),
        ("exports", "lic_umbrella", "300", "client", "300", "USAGE"),
        # the correction is its own row, not netted into the 300
        ("exports", "lic_umbrella", "-20", "client", "1", "ADJUSTMENT"),
        ("pages_rendered", "lic_globex", "15", "otel-sdk", "2", "USAGE"),
        ("api_calls", "lic_acme", "3", "process", "1", "USAGE"),
    ]:
        assert row in rows, out
    # exactly the two events refused on purpose, with Doow's reasons
    accepted = 313 + vercel["words"] + vercel["api_calls"]
    assert re.search(rf"accepted {accepted}, rejected 2;", out), out
    assert "measurements[0].quantity: must be an int or float, got str" in out
    assert "license_id: must be a non-empty string" in out
    assert "--keep-serving" in out  # says how to keep the page up
    assert "at most 1,000 a minute per key" in out  # under Doow's event budget
    assert result.stderr == ""  # the story is told once, on stdout, with no stray log lines


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_keep_serving_leaves_the_page_up_until_stopped(
    stop: signal.Signals, tmp_path: Path
) -> None:
    demo = subprocess.Popen(
        [*DEMO, "--keep-serving"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        out = ""
        while "Stop with Ctrl-C" not in out:
            line = lines.get(timeout=300)
            assert line is not None, f"the demo ended instead of serving:\n{out}"
            out += line
        found = re.search(r"The page: (http://[\d.:]+)/#key=(dk_\S+)", out)
        assert found, out
        url, key = found.groups()
        assert f"kill {demo.pid}" in out

        # after the demo, the server still answers, with everything the demo stored
        page = httpx.get(url + "/")
        assert page.status_code == 200 and "Received usage" in page.text
        stats = httpx.get(url + "/api/stats", headers={"Authorization": f"Bearer {key}"})
        printed_accepted = re.search(r"accepted (\d+), rejected", out)
        assert printed_accepted, out
        assert stats.json()["accepted"] == int(printed_accepted.group(1)) > 0
        assert demo.poll() is None

        # the follow-up command works as printed, from a shell without the virtualenv
        printed = out.split("Send more with:\n", 1)[1].splitlines()[0].strip()
        assert "doow-otel test-event" in printed
        shell = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOOW_SPOOL_DIR": str(tmp_path)}
        sent = subprocess.run(
            printed, shell=True, env=shell, capture_output=True, text=True, timeout=60
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert sent.stdout.startswith("arrived: api_calls 1 for lic_demo")

        demo.send_signal(stop)
        assert demo.wait(timeout=30) == 0
        rest = ""
        while (line := lines.get(timeout=30)) is not None:
            rest += line
        assert "stopped" in rest
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/", timeout=2)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
