"""Run the local Doow-compatible server in its own process, so that a benchmark's CPU
figures are the client's alone."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

KEY = "dk_bench_0123456789"


def server_command(db: str = ":memory:", events_per_minute: int = 0) -> list[str]:
    """`doow-local serve` on a port of its choosing (it prints its URL first).
    Benchmarks measure throughput and CPU, sending far more than Doow's 1,000 events a
    minute: no event budget unless one asks for it (`events_per_minute=1000` is Doow's)."""
    return [
        sys.executable,
        "-m",
        "doow_otel_testing.cli",
        "serve",
        "--port",
        "0",
        "--db",
        db,
        "--key",
        KEY,
        "--events-per-minute",
        str(events_per_minute),
    ]


ANNOUNCED = re.compile(rb"http://127\.0\.0\.1:(\d+)")


@contextmanager
def serving(command: list[str]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run a server process that binds a port of its choosing (port 0) and prints its URL
    first, until it answers there. (A port picked here and handed over could be taken by
    another benchmark's server in between, and the answer would then be that server's:
    bench_budget's groups, started together, once shared one that way.)"""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    try:
        found = None
        for line in process.stdout:  # its first lines, until it says where it listens
            found = ANNOUNCED.search(line)
            if found:
                break
        if found is None:
            raise RuntimeError(f"the server did not say where it listens: {command}")
        url = f"http://127.0.0.1:{int(found[1])}"
        drain = threading.Thread(target=process.stdout.read, daemon=True)  # never blocks it
        drain.start()
        for _ in range(400):
            try:
                httpx.get(
                    f"{url}/api/stats", timeout=0.5, headers={"Authorization": f"Bearer {KEY}"}
                )
                break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"the server did not start: {command}")
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)


UNPACED = 10**7
"""Events a minute for a client whose budget pacing is lifted (a non-default setting):
for the benchmarks whose subject is the cost of sending, not the event budget (the
local server's budget is off too). At Doow's budget, 1,000 events go a minute
(docs/budget.md, bench_budget.py)."""


@contextmanager
def local_server(db: str = ":memory:") -> Iterator[str]:
    """The local Doow-compatible server in its own process: a benchmark's CPU figures
    are then the client's alone."""
    with serving(server_command(db)) as (url, _):
        yield url


def usage_total(url: str, metric: str) -> float:
    """What the server stored for `metric`: every benchmark checks delivery, not just speed."""
    answer = httpx.get(
        f"{url}/api/usage", params={"metric": metric}, headers={"Authorization": f"Bearer {KEY}"}
    )
    answer.raise_for_status()
    return sum(float(row["total"]) for row in answer.json()["usage"])


def stats(url: str) -> dict[str, Any]:
    """The server's counters (accepted, rejected, duplicates, ...)."""
    answer = httpx.get(f"{url}/api/stats", headers={"Authorization": f"Bearer {KEY}"})
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
