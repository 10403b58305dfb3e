"""Run the local Doow-compatible server in its own process, so that a benchmark's CPU
figures are the client's alone."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

KEY = "dk_bench_0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_server() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "doow_otel.cli",
            "serve",
            "--port",
            str(port),
            "--db",
            ":memory:",
            "--key",
            KEY,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(
                    f"{url}/api/stats", timeout=0.5, headers={"Authorization": f"Bearer {KEY}"}
                )
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            raise RuntimeError("the local server did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def usage_total(url: str, metric: str) -> float:
    """What the server stored for `metric`: every benchmark checks delivery, not just speed."""
    answer = httpx.get(
        f"{url}/api/usage", params={"metric": metric}, headers={"Authorization": f"Bearer {KEY}"}
    )
    answer.raise_for_status()
    return sum(float(row["total"]) for row in answer.json()["usage"])


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
