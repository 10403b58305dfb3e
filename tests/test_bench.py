"""`./dev bench --quick` runs every benchmark and writes the JSON, the report and the charts.

Checks the shape of what it wrote and that every figure's usage was delivered, never the
timings (those are measured, not asserted). The collector benchmark runs when the
collector is already built (`./dev test` builds it first), else it is reported skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON_BENCHMARKS = {
    "bench_track",
    "bench_client",
    "bench_serverless",
    "bench_package",
    "bench_server_ingest",
}
RECORD_FIELDS = {
    "benchmark": str,
    "name": str,
    "unit": str,
    "better": str,
    "ours": (int, float),
    "ours_label": str,
    "alternatives": dict,
    "ratios": dict,
    "delivered_ok": bool,
    "group": str,
    "params": dict,
    "note": str,
}


def check_shape(result: dict[str, Any], out: Path) -> None:
    """What every run writes, quick or full: records, machine facts, report, charts."""
    assert result["schema"] == 1
    machine = result["machine"]
    for fact in ("cores", "python", "go", "otel_sdk", "cpu", "commit"):
        assert fact in machine, fact
    assert isinstance(machine["cores"], int) and machine["python"].count(".") == 2
    assert machine["otel_sdk"]

    statuses = {b["name"]: b["status"] for b in result["benchmarks"]}
    assert set(statuses) >= PYTHON_BENCHMARKS
    assert all(statuses[name] == "ok" for name in PYTHON_BENCHMARKS), result["benchmarks"]
    assert statuses.get("collectorbench") in ("ok", "skipped")

    records = result["records"]
    for record in records:
        for name, kind in RECORD_FIELDS.items():
            assert isinstance(record[name], kind), (record["name"], name)
        assert record["better"] in ("lower", "higher")
        # all delivered, unless the route's load needs more events than Doow's budget
        # (bench_budget's over-budget rows lag by design; their tables say how far)
        assert record["delivered_ok"] is True or record["params"].get("over_budget") is True, (
            record["name"]
        )
        assert set(record["ratios"]) == set(record["alternatives"])
        assert record["ratio"] is None or record["ratio"] > 0
        assert "goal" in record and "goal_met" in record
    produced = {r["benchmark"] for r in records}
    speaking = {b["name"] for b in result["benchmarks"] if b["status"] == "ok" and not b["reason"]}
    assert produced >= speaking  # a script without --json is run and says it has no records
    groups = {r["group"] for r in records}
    expected = {"track", "export", "startup", "client", "lambda_wall", "lambda_cold"}
    assert groups >= expected | {"package", "server"}
    lambda_events = {
        r["params"]["events_per_invocation"] for r in records if r["group"] == "lambda_wall"
    }
    assert len(lambda_events) >= 2  # the latency chart needs a line, not a point
    if statuses.get("bench_budget") == "ok":  # events a minute against Doow's budget
        assert {"budget", "budget_drain"} <= groups
    if statuses.get("collectorbench") == "ok":
        names = {r["name"] for r in records}
        assert "collector throughput" in names
        # per input point since the aggregating gateway (runs before it said "events")
        assert names & {"collector CPU per 1000 input points", "collector CPU per 1000 events"}

    report = (out / "latest.md").read_text()
    assert "## Headline" in report
    for chart in result["charts"]:
        assert (out / chart).read_bytes().startswith(b"\x89PNG"), chart
        assert f"]({chart})" in report
    assert "ratios.png" in result["charts"] and "lambda_latency.png" in result["charts"]


@pytest.mark.timeout(170)
def test_quick_bench_writes_records_report_and_charts(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--no-build"]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=160,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    assert result["quick"] is True
    check_shape(result, tmp_path)
    assert "quick run" in (tmp_path / "latest.md").read_text()


def test_the_committed_results_are_a_full_run_in_the_current_shape() -> None:
    out = ROOT / "bench" / "results"
    if not (out / "latest.json").exists():
        pytest.skip("no committed full run yet (./dev bench writes one)")
    result = json.loads((out / "latest.json").read_text())
    assert result["quick"] is False, "bench/results holds a full run, never --quick"
    check_shape(result, out)
    assert {p.name for p in out.iterdir()} == {"latest.json", "latest.md", *result["charts"]}
