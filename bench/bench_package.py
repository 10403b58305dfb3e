"""Lambda package size: what `pip install <package>` puts in a deployment zip.

For doow-otel (with its default transport, and with the `[httpx]` extra sending through an
application's httpx.Client), doow-track 0.1.2, OpenTelemetry's own route (the SDK and the
OTLP/HTTP exporter) and AWS Lambda Powertools' metrics, the installed files of the package and of
every runtime dependency (from this environment's metadata; no .pyc, no scripts) are
zipped as a Lambda deployment package is. Each package is then unzipped alone, as Lambda
does, and a fresh interpreter that sees only it sends one usage event to the local
server (Powertools: writes its EMF record, which CloudWatch Logs would turn into a
metric; it never reaches Doow): a package that is small because it is incomplete cannot
look good. The same run, repeated, times the cold start: import, set up, track one
event, flush it (median of the processes, minus an empty interpreter's start).
Usage: python bench/bench_package.py [--quick] [--json PATH]
"""

from __future__ import annotations

import io
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from _results import Record, options
from _server import KEY, local_server, table, usage_total

ROOT = Path(__file__).resolve().parent.parent
OURS = """
from doow_otel import DoowTracker
meter = DoowTracker(handle_sigterm=False)
meter.track(metric="pkg_doow_otel", quantity=1, license_id="lic_1")
assert meter.flush()
"""
OURS_HTTPX = """
import httpx
from doow_otel import DoowTracker
meter = DoowTracker(handle_sigterm=False, http_client=httpx.Client())
meter.track(metric="pkg_doow_otel_httpx", quantity=1, license_id="lic_1")
assert meter.flush()
"""
DOOW_TRACK = """
import os
from doow_track import Tracker, TrackerOptions, TrackEvent
options = TrackerOptions(endpoint=os.environ["DOOW_TRACK_ENDPOINT"])
t = Tracker(os.environ["DOOW_TRACK_API_KEY"], options)
t.track(TrackEvent(metric="pkg_doow_track", quantity=1, license_id="lic_1"))
t.flush()
"""
OTEL = """
import os
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
exporter = OTLPMetricExporter(
    endpoint=os.environ["DOOW_TRACK_ENDPOINT"] + "/telemetry/otlp/v1/metrics",
    headers={"Authorization": "Bearer " + os.environ["DOOW_TRACK_API_KEY"]},
    preferred_temporality={Counter: AggregationTemporality.DELTA},
)
provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter)])
provider.get_meter("app").create_counter("pkg_otel").add(1, {"doow.license_id": "lic_1"})
assert provider.force_flush(10_000)
provider.shutdown()
"""
# Powertools' metrics write CloudWatch's Embedded Metric Format to stdout (CloudWatch Logs
# turns it into metrics; nothing reaches Doow): "delivered" is the EMF record written
POWERTOOLS = """
import contextlib, io, json
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
metrics = Metrics(namespace="bench", service="pkg")
metrics.add_dimension(name="license_id", value="lic_1")
metrics.add_metric(name="pkg_powertools", unit=MetricUnit.Count, value=1)
with contextlib.redirect_stdout(io.StringIO()) as out:
    metrics.flush_metrics()
assert json.loads(out.getvalue())["pkg_powertools"] == [1.0]
"""
CONTENDERS: dict[str, tuple[list[str], str, str | None]] = {
    "doow-otel": (["doow-otel"], OURS, "pkg_doow_otel"),
    "doow-otel[httpx] (an httpx.Client)": (
        ["doow-otel", "httpx"],
        OURS_HTTPX,
        "pkg_doow_otel_httpx",
    ),
    "doow-track 0.1.2": (["doow-track"], DOOW_TRACK, "pkg_doow_track"),
    "OTel SDK + OTLP/HTTP exporter": (
        ["opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"],
        OTEL,
        "pkg_otel",
    ),
    "Powertools metrics (EMF to stdout)": (["aws-lambda-powertools"], POWERTOOLS, None),
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str]) -> list[metadata.Distribution]:
    """The distributions `pip install roots` brings, with the extras they ask for."""
    seen: dict[str, metadata.Distribution] = {}
    todo: list[tuple[str, frozenset[str]]] = [(r, frozenset()) for r in roots]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (_norm(name), extras) in done:
            continue
        done.add((_norm(name), extras))
        dist = metadata.distribution(name)
        seen[_norm(name)] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(
                marker.evaluate({"extra": extra}) for extra in (extras or {""})
            ):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return list(seen.values())


def package_files(dist: metadata.Distribution) -> list[tuple[Path, str]]:
    """(file on disk, name in the zip) for one distribution."""
    if _norm(dist.metadata["Name"]) == "doow-otel":  # installed editable: ship the source
        source = ROOT / "src" / "doow_otel"
        return [
            (path, str(path.relative_to(source.parent)))
            for path in sorted(source.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts
        ]
    files = []
    for entry in dist.files or []:
        name = str(entry)
        if name.startswith("..") or "__pycache__" in name or name.endswith(".pyc"):
            continue  # scripts outside site-packages, compiled bytecode
        path = Path(str(dist.locate_file(entry)))
        if path.is_file():
            files.append((path, name))
    return files


def build(roots: list[str], target: Path) -> tuple[int, int, int]:
    """Zip the closure; unzip it into `target`. Returns (zip bytes, unzipped bytes, dists)."""
    dists = closure(roots)
    buffer = io.BytesIO()
    unzipped = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for dist in dists:
            for path, name in package_files(dist):
                archive.write(path, name)
                unzipped += path.stat().st_size
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as archive:
        archive.extractall(target)
    return len(buffer.getvalue()), unzipped, len(dists)


PROCESSES = 9


# Around each contender's script: the time from its first line (before any import) to the
# event delivered (its flush returned), printed for the bench.
TIMED = """import time as _t
_t0 = _t.perf_counter()
{script}
print((_t.perf_counter() - _t0) * 1000)
"""


def runs_alone(directory: Path, script: str, url: str, spool: str) -> tuple[bool, float, float]:
    """A fresh interpreter that sees only the unzipped package (and the standard library),
    run PROCESSES times: (every run succeeded, median ms from the script's start to the
    event delivered, median wall ms of the process minus an empty interpreter's)."""
    ok = _run(directory, script, url, spool) is not None  # untimed: writes the bytecode
    delivered, walls, empty = [], [], []
    for _ in range(PROCESSES):
        started = time.perf_counter()
        ms = _run(directory, TIMED.format(script=script), url, spool)
        walls.append(time.perf_counter() - started)
        ok = ok and ms is not None
        delivered.append(float(ms or "nan"))
        started = time.perf_counter()
        _run(directory, "pass", url, spool)
        empty.append(time.perf_counter() - started)
    wall = (statistics.median(walls) - statistics.median(empty)) * 1000
    return ok, statistics.median(delivered), wall


def _run(directory: Path, script: str, url: str, spool: str) -> str | None:
    """The script's output, or None when it failed."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(directory),
        "DOOW_TRACK_API_KEY": KEY,
        "DOOW_TRACK_ENDPOINT": url,
        "DOOW_SPOOL_DIR": spool,
        "HOME": spool,
    }
    done = subprocess.run(
        [sys.executable, "-S", "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    return done.stdout.strip()


def main() -> None:
    global PROCESSES
    args, rec = options(__doc__ or "")
    if args.quick:
        PROCESSES = 2
    results: dict[str, tuple[int, int, int, bool]] = {}
    cold: dict[str, float] = {}
    process: dict[str, float] = {}
    with local_server() as url, tempfile.TemporaryDirectory() as tmp:
        for name, (roots, script, metric) in CONTENDERS.items():
            target = Path(tmp) / _norm(name)
            zipped, unzipped, dists = build(roots, target)
            ran, cold[name], process[name] = runs_alone(
                target, script, url, tempfile.mkdtemp(dir=tmp)
            )
            # a contender without a metric checks its own output (the script asserts it)
            delivered = metric is None or usage_total(url, metric) == PROCESSES + 1
            results[name] = (zipped, unzipped, dists, ran and delivered)
    ours = results["doow-otel"]
    others = {k: v for k, v in results.items() if k != "doow-otel"}
    delivered = {name: r[3] for name, r in results.items()}
    for figure, index in (("Lambda package size, zipped", 0), ("Lambda package size, unzipped", 1)):
        rec.add(
            Record(
                name=figure,
                unit="MB",
                better="lower",
                ours=ours[index] / 1e6,
                ours_label="doow-otel",
                alternatives={name: r[index] / 1e6 for name, r in others.items()},
                delivered_ok=ours[3],
                group="package",
                params={"distributions": {n: r[2] for n, r in results.items()}, "ran": delivered},
                goal="<= 1.5" if index == 0 else None,  # issue 13: a Lambda zip of 1.5 MB
                note="the package and its runtime dependencies; each then ran alone and "
                "delivered one event (Powertools: wrote its EMF record, for CloudWatch)",
            )
        )
    rec.add(
        Record(
            name="cold start to the first delivered event, from the Lambda package",
            goal="<= 100",
            unit="ms",
            better="lower",
            ours=cold["doow-otel"],
            ours_label="doow-otel",
            alternatives={name: ms for name, ms in cold.items() if name != "doow-otel"},
            delivered_ok=ours[3],
            group="package",
            params={"processes": PROCESSES},
            note=f"median of {PROCESSES} fresh interpreters that see only the unzipped "
            "package: from the script's first line (imports included) to its flush "
            "returning, the event delivered to the local server on loopback. With bytecode, "
            "as a zip built with .pyc files (a first untimed run writes it)",
        )
    )
    rec.add(
        Record(
            name="whole process from the Lambda package, minus an empty interpreter",
            unit="ms",
            better="lower",
            ours=process["doow-otel"],
            ours_label="doow-otel",
            alternatives={name: ms for name, ms in process.items() if name != "doow-otel"},
            delivered_ok=ours[3],
            group="package",
            params={"processes": PROCESSES},
            note="as above, the whole process: with the interpreter's exit (atexit "
            "shutdowns, module teardown), which a Lambda function does not wait for",
        )
    )
    rec.write()
    table(
        "Lambda deployment package (the package and its runtime dependencies, no .pyc) "
        f"and its cold start (median of {PROCESSES} processes)",
        [
            "package",
            "zip MB",
            "unzipped MB",
            "distributions",
            "to delivered ms",
            "process ms",
            "delivered",
        ],
        [
            [
                name,
                f"{r[0] / 1e6:.2f}",
                f"{r[1] / 1e6:.1f}",
                str(r[2]),
                f"{cold[name]:.0f}",
                f"{process[name]:.0f}",
                "yes" if r[3] else "NO",
            ]
            for name, r in results.items()
        ],
    )
    assert ours[3], "the doow-otel package did not run alone or did not deliver"


if __name__ == "__main__":
    main()
