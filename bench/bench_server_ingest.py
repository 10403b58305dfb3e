"""Ingest throughput of the local Doow-compatible server, and its database size.

Several sender processes post pre-built 500-event gzip batches (as DoowClient sends
them) as fast as the server answers. Side by side, in one run:
  - a null sink: the same HTTP server stack that reads the body and answers 202 without
    decompressing, parsing or storing (the ceiling of the transport);
  - our server with `--db :memory:`;
  - our server with a SQLite file in WAL mode (what `doow-local serve` uses).
Target: at least 50,000 events/s, so that the server is never the bottleneck of the
client benchmarks.
Usage: python bench/bench_server_ingest.py [batches] [senders] [--quick] [--json PATH]
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from _results import Record, options
from _server import KEY, server_command, serving, table

EVENTS_PER_BATCH = 500


def batch_body(seed: int) -> bytes:
    events = [
        {
            "event_id": str(uuid.uuid4()),
            "license_id": f"lic_{i % 50}",
            "occurred_at": "2026-11-24T10:15:00.123Z",
            "source_system": "sdk",
            "kind": "USAGE",
            "unit": "tokens",
            "attribution": {"function": "generate-summary", "environment": "prod"},
            "metadata": {},
            "measurements": [{"metric_name": "tokens", "quantity": 1 + i % 7}],
        }
        for i in range(EVENTS_PER_BATCH)
    ]
    body = {"batch_id": str(uuid.uuid4()), "sdk_version": "bench", "events": events}
    return gzip.compress(json.dumps(body, separators=(",", ":")).encode())


def sender(url: str, bodies: list[bytes], ready: Any, go: Any) -> None:
    headers = {
        "Authorization": f"Bearer {KEY}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    with httpx.Client(headers=headers, timeout=60) as client:
        client.get(url + "/api/stats")  # connected before the clock starts
        ready.release()
        go.wait()
        for body in bodies:
            answer = client.post(url + "/telemetry/events", content=body)
            assert answer.status_code == 202, answer.text


NULL_SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"accepted": 500}'
        self.send_response(202); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
ThreadingHTTPServer.daemon_threads = True
server = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
"""


@contextmanager
def running(kind: str, db: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    command = (
        [sys.executable, "-c", NULL_SINK]
        if kind == "null"
        # the server's own capacity: no event budget (Doow's would refuse past 1,000 a minute)
        else server_command(db, events_per_minute=0)
    )
    with serving(command) as running:
        yield running


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(kind: str, db: str, bodies: list[bytes], senders: int) -> dict[str, Any]:
    with running(kind, db) as (url, process):
        ready, go = multiprocessing.Semaphore(0), multiprocessing.Event()
        workers = [
            multiprocessing.Process(target=sender, args=(url, bodies[i::senders], ready, go))
            for i in range(senders)
        ]
        for worker in workers:
            worker.start()
        for _ in workers:
            ready.acquire()
        cpu_before = cpu_seconds(process.pid)
        started = time.perf_counter()
        go.set()
        for worker in workers:
            worker.join()
            assert worker.exitcode == 0
        wall = time.perf_counter() - started
        cpu = cpu_seconds(process.pid) - cpu_before
        events = len(bodies) * EVENTS_PER_BATCH
        delivered = True  # the null sink stores nothing; every sender saw its 202s
        if kind != "null":
            stats = httpx.get(url + "/api/stats", headers={"Authorization": f"Bearer {KEY}"}).json()
            delivered = stats["accepted"] == events
    return {
        "events_per_s": events / wall,
        "cpu_us_per_event": cpu / events * 1e6,
        "delivered": delivered,
    }


def main() -> None:
    args, rec = options(__doc__ or "")
    batches, senders = (args.args + [200, 4][len(args.args) :])[:2]
    if args.quick:
        batches, senders = 8, 2
    bodies = [batch_body(i) for i in range(batches)]
    events = batches * EVENTS_PER_BATCH
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.db")
        results = {
            "null sink (read body, answer 202)": run("null", ":memory:", bodies, senders),
            "doow-local serve --db :memory:": run("ours", ":memory:", bodies, senders),
            "doow-local serve --db FILE (WAL)": run("ours", db, bodies, senders),
        }
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
    rows = [
        [name, f"{r['events_per_s']:,.0f}", f"{r['cpu_us_per_event']:.1f}"]
        for name, r in results.items()
    ]
    table(
        f"Ingest: {events:,} events in {batches} gzip batches of {EVENTS_PER_BATCH}, "
        f"{senders} concurrent senders (one run, same machine)",
        ["server", "events/s", "server CPU us/event"],
        rows,
    )
    mib_per_million = size / events * 1e6 / 2**20
    print(f"\nSQLite file (with WAL): {mib_per_million:,.0f} MiB per million events")
    file = results["doow-local serve --db FILE (WAL)"]
    memory = results["doow-local serve --db :memory:"]
    null = results["null sink (read body, answer 202)"]
    params = {"batches": batches, "senders": senders, "events_per_batch": EVENTS_PER_BATCH}
    note = "the null sink reads the body and answers 202: the transport's ceiling"
    rec.add(
        Record(
            name="local server ingest",
            unit="events/s",
            better="higher",
            ours=file["events_per_s"],
            ours_label="doow-local serve --db FILE (WAL)",
            alternatives={
                "null sink (same HTTP stack, no work)": null["events_per_s"],
                "doow-local serve --db :memory:": memory["events_per_s"],
            },
            delivered_ok=file["delivered"] and memory["delivered"],
            group="server",
            goal=">= 50000",
            compared=False,
            params={**params, "mib_per_million_events": mib_per_million},
            note=note,
        )
    )
    rec.add(
        Record(
            name="local server CPU per event",
            unit="us CPU/event",
            better="lower",
            ours=file["cpu_us_per_event"],
            ours_label="doow-local serve --db FILE (WAL)",
            alternatives={
                "null sink (same HTTP stack, no work)": null["cpu_us_per_event"],
                "doow-local serve --db :memory:": memory["cpu_us_per_event"],
            },
            delivered_ok=file["delivered"] and memory["delivered"],
            group="server",
            params=params,
            compared=False,
            note=note,
        )
    )
    rec.write()
    assert file["delivered"] and memory["delivered"], "the server did not store every event"
    file_rate = file["events_per_s"]
    print(
        f"target >= 50,000 events/s: {'met' if file_rate >= 50_000 else 'NOT met'} "
        f"({file_rate:,.0f})"
    )


if __name__ == "__main__":
    main()
