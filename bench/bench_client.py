"""Send throughput and CPU per event: DoowClient vs the official doow-track package.

10,000 events, built from the same dicts, sent in batches to the same local server
(in its own process) in one run. DoowClient's budget pacing is lifted (a non-default
setting; doow-track has none): the subject is the cost of sending, and at Doow's budget
both would take ten minutes for 10,000 events.
Usage: python bench/bench_client.py [events] [rounds] [--quick] [--json PATH]
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone

from _results import Record, options
from _server import KEY, UNPACED, local_server, table, usage_total
from doow_otel import DoowClient
from doow_otel.model.records import record_event

DELIVERY_WAIT = 30.0  # seconds for a background sender to deliver what it was given


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


SEND_CPU: list[float] = []  # us CPU per event of DoowClient.send alone, per round


def ours(url: str, rows: list[dict[str, object]]) -> None:
    with tempfile.TemporaryDirectory() as spool:
        client = DoowClient(KEY, endpoint=url, spool=spool, events_per_minute=UNPACED)
        now = datetime.now(timezone.utc)
        events = [record_event(r, occurred_at=now) for r in rows]
        cpu = time.process_time()
        result = client.send(events, timeout=60)
        SEND_CPU.append((time.process_time() - cpu) / len(rows) * 1e6)
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
        deadline = time.monotonic() + DELIVERY_WAIT
        while usage_total(url, metric) < expected and time.monotonic() < deadline:
            time.sleep(0.1)  # doow-track delivers from background threads
        got = usage_total(url, metric)  # ours must be exact; theirs is reported as found
        stored, sent = stored + got, sent + expected
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {"eps": n / wall, "cpu_us": cpu / n * 1e6, "stored": stored / sent}


def main() -> None:
    args, rec = options(__doc__ or "")
    n, rounds = (args.args + [10_000, 3][len(args.args) :])[:2]
    if args.quick:
        global DELIVERY_WAIT
        n, rounds, DELIVERY_WAIT = 1_000, 1, 3.0
    contenders: list[tuple[str, Callable[[str, list[dict[str, object]]], None]]] = [
        ("doow-otel DoowClient", ours),
        ("doow-track 0.1.2 (defaults, flush_at=20)", doow_track(20)),
        ("doow-track 0.1.2 (flush_at=500)", doow_track(500)),
    ]
    with local_server() as url:
        results = {name: measure(name, url, run, n, rounds) for name, run in contenders}
    base = results[contenders[0][0]]
    theirs = {name: r for name, r in results.items() if name != contenders[0][0]}
    stored_note = "; ".join(f"{name} stored {r['stored']:.2%}" for name, r in theirs.items())
    for figure, unit, better, key in (
        ("client send throughput", "events/s", "higher", "eps"),
        ("client CPU per event sent", "us CPU/event", "lower", "cpu_us"),
    ):
        rec.add(
            Record(
                name=figure,
                unit=unit,
                better=better,
                ours=base[key],
                ours_label="DoowClient.send",
                alternatives={name: r[key] for name, r in theirs.items()},
                delivered_ok=base["stored"] == 1.0,
                group="client",
                params={
                    "events": n,
                    "rounds": rounds,
                    "stored": {name: r["stored"] for name, r in results.items()},
                },
                note=f"median of {rounds} rounds of {n:,} events (pacing lifted); {stored_note}",
            )
        )
    send = statistics.median(SEND_CPU)
    rec.add(
        Record(
            name="client CPU per event, DoowClient.send alone",
            unit="us CPU/event",
            better="lower",
            ours=send,
            ours_label="DoowClient.send",
            alternatives={"doow-otel, building the events too": base["cpu_us"]},
            delivered_ok=base["stored"] == 1.0,
            group="client",
            params={"events": n, "rounds": rounds},
            goal="<= 10",
            compared=False,
            note="the events built beforehand (record_event, as an exporter's "
            "conversion builds them); journal, batches, JSON, HTTP and the server's answers",
        )
    )
    rec.write()
    assert base["stored"] == 1.0, f"doow-otel stored {base['stored']:.2%} of what it sent"
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
    print(f"DoowClient.send alone (events built beforehand): {send:.1f} us CPU/event")


if __name__ == "__main__":
    main()
