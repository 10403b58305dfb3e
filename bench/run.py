"""Run every benchmark in bench/, each side by side with its alternative, in one run, and
write the results: bench/results/latest.json (one record per figure, with the machine's
facts) and bench/results/latest.md (tables and charts).

    ./dev bench            the full run (several minutes; builds the collector if needed)
    ./dev bench --quick    small counts: a smoke check (into a temporary directory)

Each benchmark script runs in its own process with `--json`, so one failing benchmark
is reported and the others still run. The exit status is 1 when a benchmark failed or
a figure's usage was not all delivered.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from _report import fmt, write_report
from _results import Record

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON_BENCHMARKS = [
    "bench_track",
    "bench_client",
    "bench_serverless",
    "bench_budget",
    "bench_package",
    "bench_server_ingest",
]  # in this order; any other bench/bench_*.py runs after them
COLLECTOR = "collectorbench"
SCHEMA = 1


@dataclass
class Outcome:
    name: str
    status: str  # ok, failed, skipped
    seconds: float = 0.0
    reason: str = ""
    output: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)


def run_streaming(
    command: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run `command`, echoing its output as it comes, and return (status, output)."""
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
        if time.monotonic() > deadline:
            process.kill()
            lines.append(f"\n(killed after {timeout:.0f} s)\n")
            break
    return process.wait(), "".join(lines)


def python_benchmark(name: str, quick: bool, build: bool, timeout: float) -> Outcome:
    script = BENCH / f"{name}.py"
    env = {**os.environ, **({} if build else {"DOOW_BENCH_NO_BUILD": "1"})}
    source = script.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "records.json"
        command = [sys.executable, str(script)]
        speaks_json = "--json" in source
        if speaks_json:
            command += ["--json", str(out)]
        if quick and "--quick" in source:
            command.append("--quick")
        started = time.monotonic()
        status, output = run_streaming(command, BENCH, timeout, env)
        seconds = time.monotonic() - started
        records = json.loads(out.read_text())["records"] if out.exists() else []
    if status != 0:
        tail = "\n".join(output.strip().splitlines()[-3:])
        return Outcome(name, "failed", seconds, f"exit status {status}: {tail}", output, records)
    reason = "" if speaks_json else "prints tables only: no records"
    return Outcome(name, "ok", seconds, reason, output, records)


# collectorbench's figures (its -json file): through the collector, per exporter row
# ("otlphttp (stock)", "doow", "doow, disk queue", "doow, aggregating gateway"), and each
# exporter alone in the bench's process; each key with the record it becomes. Through
# the collector the unit is the input point (its JSON keys say "events"): an aggregating
# gateway sends far fewer events than it takes points.
COLLECTOR_FIGURES = {
    ("through", "events_per_second"): ("collector throughput", "points/s", "higher"),
    ("through", "cpu_ms_per_1000_events"): (
        "collector CPU per 1000 input points",
        "ms CPU/1000 points",
        "lower",
    ),
    ("through", "alloc_kb_per_1000_events"): (
        "collector allocations per 1000 input points",
        "KB/1000 points",
        "lower",
    ),
    ("alone", "us_per_event"): ("exporter alone: time per event", "us/event", "lower"),
    ("alone", "allocations_per_event"): (
        "exporter alone: allocations per event",
        "allocations/event",
        "lower",
    ),
    ("alone", "bytes_per_event"): (
        "exporter alone: bytes allocated per event",
        "B/event",
        "lower",
    ),
}
STOCK = "otlphttp (stock)"
# its Doow events a minute for 2,000 invocations a minute from 50 environments over 50
# licenses, the minute compressed tenfold (bench/collectorbench/invocations.go)
GATEWAY_ROUTE = "through an aggregating gateway"
DIRECT_ROUTE = "doow exporter direct (as the Lambda extension sends)"


def collector_benchmark(quick: bool, build: bool, timeout: float) -> Outcome:
    """bench/collectorbench (Go): doow exporter against stock otlphttp through otelcol-doow."""
    binary = ROOT / "collector" / "_build" / "otelcol-doow"
    if shutil.which("go") is None:
        return Outcome(COLLECTOR, "skipped", reason="no go toolchain on PATH")
    if build:
        status, output = run_streaming(["bash", "collector/build.sh"], ROOT, 1800)
        if status != 0:
            return Outcome(COLLECTOR, "failed", reason="collector/build.sh failed", output=output)
    elif not binary.exists():
        return Outcome(COLLECTOR, "skipped", reason=f"{binary.relative_to(ROOT)} is not built")
    points, senders = (20_000, 2) if quick else (200_000, 4)
    with tempfile.TemporaryDirectory() as tmp:
        figures_file = Path(tmp) / "figures.json"
        command = ["go", "run", ".", "-points", str(points), "-senders", str(senders)]
        command += ["-json", str(figures_file)]
        started = time.monotonic()
        status, output = run_streaming(command, BENCH / COLLECTOR, timeout)
        seconds = time.monotonic() - started
        figures = json.loads(figures_file.read_text()) if figures_file.exists() else {}
    if status != 0 or STOCK not in figures.get("through", {}):
        return Outcome(COLLECTOR, "failed", seconds, f"exit status {status}", output)
    delivered = all(row["delivered"] for row in figures["through"].values())
    params = {"points": points, "points_per_request": 1000, "senders": senders, "batch": 500}
    records = []
    for (table_name, key), (name, unit, better) in COLLECTOR_FIGURES.items():
        rows = figures.get(table_name) or {}
        for variant, ours in rows.items():
            if variant == STOCK or STOCK not in rows:
                continue
            label = name if variant == "doow" else f"{name} ({variant.removeprefix('doow, ')})"
            note = (
                "each exporter alone in the bench's process, no queue, to a sink that reads nothing"
                if table_name == "alone"
                else "OTLP in, through the same otelcol-doow binary, into a sink that counts events"
            )
            records.append(
                _record(
                    label,
                    unit,
                    better,
                    variant,
                    ours[key],
                    rows[STOCK][key],
                    delivered,
                    params,
                    note,
                )
            )
    records += events_a_minute_records(figures.get("doow_events_a_minute") or {})
    return Outcome(COLLECTOR, "ok", seconds, "", output, records)


def events_a_minute_records(routes: dict[str, Any]) -> list[dict[str, Any]]:
    """collectorbench's Doow events a minute: the aggregating gateway against the exporter
    sending each invocation's push straight to Doow."""
    if not {"direct", "gateway"} <= set(routes):
        return []
    gateway, direct = routes["gateway"], routes["direct"]
    record = Record(
        name="Doow events a minute, 2000 invocations/min from 50 environments",
        unit="events/min",
        better="lower",
        ours=gateway["events"],
        ours_label=GATEWAY_ROUTE,
        alternatives={DIRECT_ROUTE: direct["events"]},
        delivered_ok=bool(gateway["delivered"] and direct["delivered"]),
        group="collector_budget",
        params={
            "invocations_per_minute": 2000,
            "environments": 50,
            "licenses": 50,
            "metrics_per_invocation": 2,
            "budget_events_per_minute": 1000,
            "minute_compressed_to_seconds": 6,
        },
        goal="<= 50",
        note="one event per license per window at the gateway (50 licenses), one per "
        "invocation direct; the minute compressed tenfold (one 6 s window), into a sink "
        "that counts events",
        benchmark=COLLECTOR,
    ).finish()
    return [asdict(record)]


def _record(
    name: str,
    unit: str,
    better: str,
    variant: str,
    ours: float,
    stock: float,
    delivered: bool,
    params: dict[str, Any],
    note: str,
) -> dict[str, Any]:
    record = Record(
        name=name,
        unit=unit,
        better=better,
        ours=ours,
        ours_label=f"{variant} exporter",
        alternatives={"otlphttp exporter (stock)": stock},
        delivered_ok=delivered,
        group="collector",
        params=params,
        note=note,
        benchmark=COLLECTOR,
    ).finish()
    return asdict(record)


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _command(command: list[str], cwd: Path = ROOT) -> str | None:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def machine() -> dict[str, Any]:
    """Facts printed beside the absolute figures: they only compare on the same machine."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or None,
    )
    go = _command(["go", "version"])
    commit = _command(["git", "rev-parse", "--short", "HEAD"])
    dirty = _command(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "go": go.split()[2] if go else None,
        "otel_sdk": _version("opentelemetry-sdk"),
        "doow_otel": _version("doow-otel"),
        "doow_track": _version("doow-track"),
        "commit": f"{commit}{'+changes' if dirty else ''}" if commit else None,
    }


def print_headline(records: list[dict[str, Any]]) -> None:
    print("\n=== headline: doow-otel against the alternative a user would pick ===")
    for r in records:
        alternative = next(iter(r["alternatives"]), "-")
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        delivered = (
            ""
            if r["delivered_ok"]
            else "  over budget: NOT ALL DELIVERED yet"
            if r["params"].get("over_budget")
            else "  NOT ALL DELIVERED"
        )
        print(
            f"{ratio:>7}  {r['name']} ({r['unit']}): {fmt(r['ours'])} vs {alternative}{delivered}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke check")
    parser.add_argument(
        "--out",
        type=Path,
        help="where latest.json, latest.md and the charts go (default: bench/results; "
        "with --quick, a temporary directory: bench/results keeps the last full run)",
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    parser.add_argument(
        "--no-build",
        action="store_true",
        help="build nothing: routes whose collector is not built are left out",
    )
    args = parser.parse_args()
    if args.out is None:
        quick_out = Path(tempfile.gettempdir()) / "doow-otel-bench-quick"
        args.out = quick_out if args.quick else BENCH / "results"
    timeout = 300.0 if args.quick else 3600.0
    others = sorted(p.stem for p in BENCH.glob("bench_*.py") if p.stem not in PYTHON_BENCHMARKS)
    names = PYTHON_BENCHMARKS + others
    wanted = set(args.only or [*names, COLLECTOR])
    unknown = wanted - {*names, COLLECTOR}
    if unknown:
        parser.error(f"--only: no benchmark named {', '.join(sorted(unknown))}")
    facts = machine()
    started = datetime.now(timezone.utc)
    outcomes: list[Outcome] = []
    for name in names:
        if name in wanted:
            print(f"\n=== {name} ===", flush=True)
            outcomes.append(python_benchmark(name, args.quick, not args.no_build, timeout))
    if COLLECTOR in wanted:
        print(f"\n=== {COLLECTOR} ===", flush=True)
        outcomes.append(collector_benchmark(args.quick, not args.no_build, timeout))
    result = {
        "schema": SCHEMA,
        "generated_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quick": args.quick,
        "command": "./dev bench" + (" --quick" if args.quick else ""),
        "machine": facts,
        "benchmarks": [
            {"name": o.name, "status": o.status, "seconds": round(o.seconds, 1), "reason": o.reason}
            for o in outcomes
        ],
        "records": [r for o in outcomes for r in o.records],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(result, {o.name: o.output for o in outcomes}, args.out)  # adds "charts"
    (args.out / "latest.json").write_text(json.dumps(result, indent=1) + "\n")
    print_headline(result["records"])
    failed = [o.name for o in outcomes if o.status == "failed"]
    late = [r for r in result["records"] if not r["delivered_ok"]]
    # a route whose load needs more events than Doow's budget lags by design (bench_budget)
    lost = [r["name"] for r in late if not r["params"].get("over_budget")]
    print(f"\nwrote {args.out / 'latest.json'} and {args.out / 'latest.md'}")
    for name in failed:
        print(f"FAILED: {name}", file=sys.stderr)
    for name in lost:
        print(f"NOT ALL DELIVERED: {name}", file=sys.stderr)
    for record in late:
        if record["params"].get("over_budget"):
            print(f"over budget by design, not all delivered yet: {record['name']}")
    return 1 if failed or lost else 0


if __name__ == "__main__":
    sys.exit(main())
