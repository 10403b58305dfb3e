"""Send throughput and CPU per event: DoowClient vs the official doow-track package.

10,000 events, built from the same dicts, sent in batches to the same local server
(in its own process) in one run. Usage: python bench/bench_client.py [events] [rounds]
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from _server import KEY, local_server, table, usage_total
from doow_otel import DoowClient, UsageEvent


def rows_for(metric: str, n: int) -> list[dict[str, object]]:
    return [
        {
            "metric": metric,
            "quantity": 1 + i % 5,
            "license_id": f"lic_{i % 20}",
            "attribution": {"function": "generate-summary", "environment": "prod"},
        }
        for i in range(n)
    ]


def ours(url: str, rows: list[dict[str, object]]) -> None:
    with tempfile.TemporaryDirectory() as spool:
        client = DoowClient(KEY, endpoint=url, spool=spool)
        result = client.send([UsageEvent.from_mapping(r) for r in rows], timeout=60)
        assert result.delivered == len(rows), result
        client.close()


def doow_track(flush_at: int) -> Callable[[str, list[dict[str, object]]], None]:
    from doow_track import Tracker, TrackerOptions, TrackEvent

    def run(url: str, rows: list[dict[str, object]]) -> None:
        tracker = Tracker(KEY, TrackerOptions(endpoint=url, flush_at=flush_at, flush_interval=3600))
        for r in rows:
            tracker.track(TrackEvent(**r))  # type: ignore[arg-type]
        tracker.flush()
        tracker.shutdown() if hasattr(tracker, "shutdown") else None

    return run


def measure(
    name: str, url: str, run: Callable[[str, list[dict[str, object]]], None], n: int, rounds: int
) -> dict[str, float]:
    walls, cpus, stored, sent = [], [], 0.0, 0.0
    for r in range(rounds):
        metric = re.sub(r"[^A-Za-z0-9_]+", "_", f"{name}_{r}")
        rows = rows_for(metric, n)
        expected = sum(float(x["quantity"]) for x in rows)  # type: ignore[arg-type]
        wall, cpu = time.perf_counter(), time.process_time()
        run(url, rows)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        deadline = time.monotonic() + 30
        while usage_total(url, metric) < expected and time.monotonic() < deadline:
            time.sleep(0.1)  # doow-track delivers from background threads
        got = usage_total(url, metric)
        if name.startswith("doow-otel"):  # ours must be exact; theirs is reported as found
            assert got == expected, f"{name}: server stored {got}, expected {expected}"
        stored, sent = stored + got, sent + expected
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {"eps": n / wall, "cpu_us": cpu / n * 1e6, "stored": stored / sent}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    contenders: list[tuple[str, Callable[[str, list[dict[str, object]]], None]]] = [
        ("doow-otel DoowClient", ours),
        ("doow-track 0.1.2 (defaults, flush_at=20)", doow_track(20)),
        ("doow-track 0.1.2 (flush_at=500)", doow_track(500)),
    ]
    with local_server() as url:
        results = {name: measure(name, url, run, n, rounds) for name, run in contenders}
    base = results[contenders[0][0]]
    rows = []
    for name, r in results.items():
        rows.append(
            [
                name,
                f"{r['eps']:,.0f}",
                f"{r['cpu_us']:.1f}",
                f"{base['eps'] / r['eps']:.2f}x",
                f"{r['stored']:.2%}",
            ]
        )
    table(
        f"Send {n:,} events to the local server (median of {rounds}; every run checked "
        "against the server's totals)",
        ["client", "events/s", "CPU us/event", "doow-otel is faster by", "usage stored"],
        rows,
    )


if __name__ == "__main__":
    main()
