"""Doow's own SDKs as clients of the local server: which of its answers each reads, and how
(issue 26, point 6). The record, answer by answer (doow-track 0.1.2 from PyPI parses
as the newest sdks/python source does; @doow/track 0.1.4 is the Node release):

- 202 `{"accepted", "rejected", "batch_id"}`: both deliver.
- 207 `{"accepted": n, "rejected": n, "batch_id", "rejections": [...]}`: doow-track
  raises a `PartialAcceptError` (to on_error) with the batch id and each rejection;
  Node 0.1.4 reports nothing (it reads `rejected` as the list of rejections, an older
  form) and counts the batch delivered.
- 429 with `Retry-After` and `X-Doow-Rate-Limits`: doow-track gives `APIError(429)` with
  `retry_after` from `Retry-After` (it waits, at most 30 s, and retries) and does not read
  the categories; Node 0.1.4 reports `RATE_LIMITED` with `retryAfterMs` and holds every
  category of `X-Doow-Rate-Limits` until it expires.
- 413 `batch_too_large`: doow-track reports it and drops the batch (permanent); Node
  0.1.4 halves the batch and sends the halves.

Doow's newest public SDK sources (sdks/python, sdks/go, sdks/rust, ... of the
doow-track-sdk repository) read the 207 as doow-track 0.1.2 does; only the Node 0.1.4
release reads `rejected` as a list, so the local server answers as Doow's current SDKs
expect (`rejected` a count) and this file records what Node 0.1.4 makes of it.

The Node SDK runs from its source (the mirror of Doow-Dev/doow-track-sdk at its 0.1.4
release, `DOOW_TRACK_SDK_REPO`), transpiled by TypeScript from npm; the test is skipped
where either is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from doow_otel_testing import LocalDoow

SDK_REPO = Path(os.environ.get("DOOW_TRACK_SDK_REPO", "/work/.mirror/Doow-Dev+doow-track-sdk/repo"))
NODE_SOURCES = ["tracker", "exporter", "event-processor", "uuid", "debug", "types"]


# --- doow-track (Python) ---


@pytest.fixture
def doow_track(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("DOOW_TRACK_ENDPOINT", "DOOW_TRACK_API_KEY", "DOOW_TRACK_FLUSH_AT"):
        monkeypatch.delenv(name, raising=False)
    return pytest.importorskip("doow_track")


def python_tracker(doow_track: Any, doow: LocalDoow, errors: list[Any]) -> Any:
    options = doow_track.TrackerOptions(
        endpoint=doow.url, flush_at=1000, flush_interval=3600.0, retry_count=0,
        on_error=errors.append,
    )  # fmt: skip
    return doow_track.Tracker(doow.api_key, options)


def test_doow_track_reads_the_207_its_batch_id_and_each_rejection(doow_track: Any) -> None:
    errors: list[Any] = []
    with LocalDoow(known_metrics={"api_calls"}) as doow:
        tracker = python_tracker(doow_track, doow, errors)
        try:
            tracker.track(doow_track.TrackEvent(metric="api_calls", quantity=2, license_id="l"))
            tracker.track(doow_track.TrackEvent(metric="made_up", quantity=1, license_id="l"))
            tracker.flush()
        finally:
            tracker.shutdown()
        (post,) = doow.requests(path="/telemetry/events")
    (error,) = errors
    assert isinstance(error, doow_track.PartialAcceptError)
    assert (error.accepted, error.rejected) == (1, 1)
    assert error.batch_id == post["batch_id"]  # the batch it sent, as Doow's SDKs expect
    assert error.rejections[0]["reason"] == "unknown_metric: made_up"


def test_doow_track_reads_retry_after_of_a_429_and_drops_a_413(doow_track: Any) -> None:
    errors: list[Any] = []
    with LocalDoow(events_per_minute=3) as doow:
        tracker = python_tracker(doow_track, doow, errors)
        try:
            for _ in range(3):
                tracker.track(doow_track.TrackEvent(metric="api_calls", quantity=1, license_id="l"))
            tracker.flush()  # 3: within the budget
            tracker.track(doow_track.TrackEvent(metric="api_calls", quantity=1, license_id="l"))
            tracker.flush()  # the 4th: past it
            for _ in range(4):
                tracker.track(doow_track.TrackEvent(metric="api_calls", quantity=1, license_id="l"))
            tracker.flush()  # 4 at once can never fit 3 a minute: 413 batch_too_large
        finally:
            tracker.shutdown()
        assert doow.total("api_calls") == 3
    limited, too_large = errors[0], errors[-1]
    assert limited.status == 429 and 1 <= limited.retry_after <= 60
    assert too_large.status == 413 and too_large.details["error"] == "batch_too_large"


# --- @doow/track 0.1.4 (Node), from its source ---

HARNESS = """
import { DoowTracker } from './src/tracker.js';
const [endpoint, key, plan] = process.argv.slice(2);
const errors = [];
const tracker = new DoowTracker(key, {
  endpoint, flushAt: 1000, flushInterval: 3600000, retryCount: 0,
  onError: (e) => errors.push({kind: e.kind, statusCode: e.statusCode,
                               retryAfterMs: e.retryAfterMs, rejected: e.rejectedEventIds}),
});
for (const batch of JSON.parse(plan)) {
  for (const event of batch) tracker.track(event);
  await tracker.flush();
}
await tracker.shutdown(2000);
console.log(JSON.stringify(errors));
"""


@pytest.fixture(scope="module")
def node_sdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """@doow/track's source at 0.1.4, transpiled to ES modules in a directory of its own."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("needs node and npm")
    if not (SDK_REPO / "HEAD").exists() and not (SDK_REPO / ".git").exists():
        pytest.skip(f"no copy of Doow-Dev/doow-track-sdk at {SDK_REPO} (DOOW_TRACK_SDK_REPO)")
    version = json.loads(_git_show("package.json"))["version"]
    if version != "0.1.4":
        pytest.skip(f"the copy of doow-track-sdk is at {version}, this record is of 0.1.4")
    root = tmp_path_factory.mktemp("node-sdk")
    installed = subprocess.run(
        ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(root),
         "typescript@5"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if installed.returncode != 0:
        pytest.skip(f"typescript could not be installed from npm: {installed.stderr[-300:]}")
    (root / "src").mkdir()
    for name in NODE_SOURCES:
        (root / "src" / f"{name}.ts").write_text(_git_show(f"src/{name}.ts"))
    transpile = """
    const ts = require('typescript'); const fs = require('fs');
    for (const name of process.argv.slice(1)) {
      const source = fs.readFileSync(`src/${name}.ts`, 'utf8')
        .replace(/^declare const __\\w+__: \\w+;$/gm, '')
        .replace(/__SDK_VERSION__/g, JSON.stringify('0.1.4'))
        .replace(/__DOOW_DEBUG__/g, 'false');
      const out = ts.transpileModule(source, {compilerOptions: {module: ts.ModuleKind.ESNext,
                                                                target: ts.ScriptTarget.ES2022}});
      fs.writeFileSync(`src/${name}.js`, out.outputText);
    }
    """
    done = subprocess.run(
        ["node", "-e", transpile, *NODE_SOURCES], cwd=root, capture_output=True, text=True,
        env={**os.environ, "NODE_PATH": str(root / "node_modules")}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (root / "package.json").write_text('{"type": "module"}')
    (root / "harness.js").write_text(HARNESS)
    return root


def _git_show(path: str) -> str:
    return subprocess.run(
        ["git", "-C", str(SDK_REPO), "show", f"HEAD:{path}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def run_node(sdk: Path, doow: LocalDoow, batches: list[list[dict[str, Any]]]) -> list[Any]:
    done = subprocess.run(
        ["node", "harness.js", doow.url, doow.api_key, json.dumps(batches)],
        cwd=sdk, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    errors: list[Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return errors


def event(metric: str = "api_calls", quantity: int = 1) -> dict[str, Any]:
    return {"metric": metric, "quantity": quantity, "license_id": "lic_node"}


def test_node_sdk_events_arrive_with_the_right_totals(node_sdk: Path) -> None:
    with LocalDoow() as doow:
        assert run_node(node_sdk, doow, [[event(quantity=2) for _ in range(30)]]) == []
        assert doow.total("api_calls", "lic_node") == 60
        posts = doow.requests(path="/telemetry/events")  # it sends its first event at once
        assert [p["status"] for p in posts] == [202] * len(posts)
        assert sum(p["events"] for p in posts) == 30
        assert all(p["content_encoding"] == "gzip" for p in posts)


def test_node_sdk_does_not_see_the_rejections_of_doows_current_207(node_sdk: Path) -> None:
    """0.1.4 reads `rejected` as the list of rejections; Doow's current body (and this
    server's) gives a count there and the list in `rejections`: 0.1.4 reports nothing."""
    with LocalDoow(known_metrics={"api_calls"}) as doow:
        errors = run_node(node_sdk, doow, [[event(), event("made_up")]])
        assert 207 in [p["status"] for p in doow.requests(path="/telemetry/events")]
        assert doow.total("api_calls", "lic_node") == 1
        assert doow.rejections()[0]["reason"] == "unknown_metric: made_up"
    assert errors == []  # the rejection is lost to the Node 0.1.4 user


def test_node_sdk_reads_a_429s_retry_after_and_halves_a_batch_too_large(node_sdk: Path) -> None:
    with LocalDoow(events_per_minute=4) as doow:
        errors = run_node(
            node_sdk, doow, [[event() for _ in range(3)], [event() for _ in range(2)]]
        )
        statuses = [r["status"] for r in doow.requests(path="/telemetry/events")]
    assert statuses[-1] == 429 and set(statuses[:-1]) == {202}
    (limited,) = [e for e in errors if e["kind"] == "RATE_LIMITED"]
    assert limited["statusCode"] == 429 and 1000 <= limited["retryAfterMs"] <= 60_000
    with LocalDoow(events_per_minute=3) as doow:
        errors = run_node(node_sdk, doow, [[event() for _ in range(5)]])
        statuses = [r["status"] for r in doow.requests(path="/telemetry/events")]
        # its first event goes alone; the other 4 can never fit 3 a minute: 413, then the
        # halves (2 fit the minute, the other 2 are past its budget: 429)
        assert statuses[:3] == [202, 413, 202]
        assert doow.total("api_calls", "lic_node") == 3
