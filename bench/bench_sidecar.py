"""Usage lines shipped from a file: the sidecar (otelcol-doow on collector/sidecar.yaml)
against `doow-otel send` reading the same file on stdin.

A file of N usage records (docs/conversion.md, "Usage records") is written first; each
shipper delivers it to the local server (its own process). Figures: lines per second
from start to the last line stored, and the shipper's CPU per 1,000 lines (its process's
user + system time, from /proc, startup included). Delivery is checked: the server's
total must be exact. Each line is a usage record with its own identity, so one event:
both shippers are run with budget pacing lifted (UNPACED events a minute, a non-default
setting) because the subject is the cost of shipping; at Doow's documented budget both
ship 1,000 lines a minute (docs/budget.md).
Usage: python bench/bench_sidecar.py [lines] [--quick] [--json PATH]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _results import Record, options
from _server import KEY, UNPACED, local_server, table, usage_total
from doow_otel_testing.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
OTELCOL = ROOT / "collector" / "_build" / "otelcol-doow"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def write_lines(path: Path, metric: str, count: int) -> float:
    with open(path, "w") as out:
        for n in range(count):
            record = {
                "metric": metric,
                "quantity": 1 + n % 3,
                "license_id": f"lic_{n % 20}",
                "timestamp": f"2026-11-24T10:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}"
                f".{n % 1000:03d}Z",
                "attribution": {"job": "bench"},
            }
            out.write(json.dumps(record) + "\n")
    return float(sum(1 + n % 3 for n in range(count)))


def wait_total(url: str, metric: str, want: float, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if usage_total(url, metric) >= want:
            return True
        time.sleep(0.05)
    return usage_total(url, metric) >= want


def sidecar(url: str, work: Path, lines: int) -> tuple[float, float, bool]:
    want = write_lines(work / "usage.log", "sidecar_lines", lines)
    health = free_port()
    env = {
        **os.environ,
        "DOOW_API_KEY": KEY,
        "DOOW_ENDPOINT": url,
        "DOOW_SIDECAR_FILES": str(work / "usage.log"),
        "DOOW_SIDECAR_TCP": f"127.0.0.1:{free_port()}",
        "DOOW_SIDECAR_HEALTH": f"127.0.0.1:{health}",
        "DOOW_QUEUE_DIR": str(work / "state"),
        "DOOW_EVENTS_PER_MINUTE": str(UNPACED),
        "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        "OTELCOL_METRICS_PORT": str(free_port()),
    }
    with open(work / "sidecar.log", "wb") as log:
        start = time.perf_counter()
        process = subprocess.Popen(
            [str(OTELCOL), "--config", str(ROOT / "collector" / "sidecar.yaml")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            ok = wait_total(url, "sidecar_lines", want, timeout=300)
            elapsed = time.perf_counter() - start
            cpu = cpu_seconds(process.pid)
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/", timeout=2) as answer:
                ok = ok and answer.status == 200
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    return (
        lines / elapsed,
        cpu * 1000 / (lines / 1000),
        ok and usage_total(url, "sidecar_lines") == want,
    )


def send(url: str, work: Path, lines: int) -> tuple[float, float, bool]:
    path = work / "send.log"
    want = write_lines(path, "send_lines", lines)
    env = {
        **os.environ,
        "DOOW_TRACK_API_KEY": KEY,
        "DOOW_TRACK_ENDPOINT": url,
        "DOOW_SPOOL_DIR": str(work / "spool"),
        "DOOW_TRACK_EVENTS_PER_MINUTE": str(UNPACED),
    }
    with open(path, "rb") as stdin:
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "doow_otel.cli", "send"],
            stdin=stdin,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # its CPU, read just before it exits: wait4 reports the child's rusage
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    ok = process.returncode == 0 and usage_total(url, "send_lines") == want
    return lines / elapsed, cpu * 1000 / (lines / 1000), ok


def main() -> None:
    args, recorder = options(__doc__ or "")
    lines = args.args[0] if args.args else (5_000 if args.quick else 100_000)
    if not OTELCOL.exists() and not os.environ.get("DOOW_BENCH_NO_BUILD"):
        subprocess.run(["bash", str(ROOT / "collector" / "build.sh")], check=True)
    with tempfile.TemporaryDirectory() as tmp, local_server() as url:
        work = Path(tmp)
        (work / "state").mkdir()
        send_rate, send_cpu, send_ok = send(url, work, lines)
        if not OTELCOL.exists():  # `./dev bench --no-build` (the quick test)
            print("otelcol-doow is not built: the sidecar is left out")
            recorder.add(
                Record(
                    name="usage lines shipped from a file (doow-otel send alone; pacing lifted)",
                    unit="lines/s",
                    better="higher",
                    ours=send_rate,
                    ours_label="doow-otel send (stdin)",
                    alternatives={},
                    delivered_ok=send_ok,
                    group="sidecar",
                    params={"lines": lines},
                    note="otelcol-doow not built",
                )
            )
            recorder.write()
            raise SystemExit(0 if send_ok else 1)
        side_rate, side_cpu, side_ok = sidecar(url, work, lines)
    table(
        f"Usage lines shipped from a file ({lines:,} lines, to the local server)",
        ["shipper", "lines/s", "CPU ms per 1000 lines", "all delivered"],
        [
            [
                "sidecar (otelcol-doow, doowfilelog)",
                f"{side_rate:,.0f}",
                f"{side_cpu:.1f}",
                str(side_ok),
            ],
            ["doow-otel send (stdin)", f"{send_rate:,.0f}", f"{send_cpu:.1f}", str(send_ok)],
        ],
    )
    recorder.add(
        Record(
            name="usage lines shipped from a file (pacing lifted)",
            unit="lines/s",
            better="higher",
            ours=side_rate,
            ours_label="sidecar (otelcol-doow on collector/sidecar.yaml)",
            alternatives={"doow-otel send (stdin)": send_rate},
            delivered_ok=side_ok and send_ok,
            group="sidecar",
            params={"lines": lines},
        )
    )
    recorder.add(
        Record(
            name="shipper CPU per 1000 lines (pacing lifted)",
            unit="ms CPU/1000 lines",
            better="lower",
            ours=side_cpu,
            ours_label="sidecar (otelcol-doow on collector/sidecar.yaml)",
            alternatives={"doow-otel send (stdin)": send_cpu},
            delivered_ok=side_ok and send_ok,
            group="sidecar",
            params={"lines": lines},
        )
    )
    recorder.write()
    if not (side_ok and send_ok):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
