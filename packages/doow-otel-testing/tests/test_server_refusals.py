"""Requests refused at the door are recorded with their cause and fix (issue 26): wrong
key (its first characters only, never the key), wrong path, malformed, too large; the read
API groups them beside the rejected events, each with its fix."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx

from doow_otel import UsageEvent
from doow_otel_testing import LocalDoow


def post(doow: LocalDoow, body: bytes, *, key: str | None = None, path: str = "") -> int:
    headers = {"Content-Type": "application/json"}
    if key != "":
        headers["Authorization"] = f"Bearer {key or doow.api_key}"
    answer = httpx.post(doow.url + (path or "/telemetry/events"), content=body, headers=headers)
    return answer.status_code


def api(doow: LocalDoow, path: str, **params: Any) -> Any:
    answer = httpx.get(
        doow.url + path, params=params, headers={"Authorization": f"Bearer {doow.api_key}"}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def batch() -> bytes:
    event = UsageEvent(metric="api_calls", quantity=1, license_id="lic_r").to_wire()
    return json.dumps({"batch_id": str(uuid.uuid4()), "events": [event]}).encode()


def test_each_refusal_is_recorded_with_its_cause_and_fix(tmp_path: Path) -> None:
    wrong = "dk_live_wrong_secret_0123456789"
    with LocalDoow(db=tmp_path / "doow.db") as doow:
        assert post(doow, batch(), key=wrong) == 401
        assert post(doow, batch(), key="") == 401
        assert post(doow, batch(), path="/api/telemetry/events") == 404
        assert post(doow, b"{not json") == 400
        assert httpx.get(doow.url + "/favicon.ico").status_code == 404  # a browser: not recorded
        refusals = {r["status"]: r for r in reversed(doow.refusals())}
        assert sorted(refusals) == [400, 401, 404]
        by_key = [r for r in doow.refusals(status=401)]
        assert [r["key_prefix"] for r in by_key] == [None, "dk_live_wr…"]
        assert "Set DOOW_TRACK_API_KEY" in by_key[0]["fix"]
        assert refusals[404]["path"] == "/api/telemetry/events"
        assert "extra path (/api)" in refusals[404]["fix"]
        assert "not valid JSON" in refusals[400]["reason"]
        assert refusals[400]["method"] == "POST"
        stats = doow.stats()
        assert stats["refused_requests"] == 4
        assert stats["refused_by_status"] == {"400": 1, "401": 2, "404": 1}
    # never the key: not in the database, whatever was refused
    for file in tmp_path.iterdir():
        assert wrong.encode() not in file.read_bytes()


def test_problems_group_refusals_and_rejections_each_with_its_fix() -> None:
    with LocalDoow() as doow:
        for _ in range(4):
            post(doow, batch(), key="dk_wrong_key_abcdefgh")
        for _ in range(2):
            post(doow, batch(), path="/v1/telemetry/events")
        bad = UsageEvent(metric="api_calls", quantity=1, license_id="lic_q").to_wire()
        bad["measurements"][0]["quantity"] = "12"
        twice = json.dumps({"events": [bad, bad | {"event_id": str(uuid.uuid4())}]})
        assert post(doow, twice.encode()) == 207
        problems = api(doow, "/api/problems")["problems"]
        counts = {(p["kind"], p["status"]): p["count"] for p in problems}
        assert counts == {("refused", 401): 4, ("refused", 404): 2, ("rejected", 207): 2}
        rejected = next(p for p in problems if p["kind"] == "rejected")
        assert rejected["example"]["metric"] == "api_calls"
        assert rejected["example"]["license_id"] == "lic_q"
        assert rejected["example"]["quantity"] == "12"
        assert "int() or float()" in rejected["fix"]
        rows = api(doow, "/api/rejections")["rejections"]
        assert all(r["fix"] == rejected["fix"] and r["license_id"] == "lic_q" for r in rows)
        only_404 = api(doow, "/api/refusals", status=404)["refusals"]
        assert [r["path"] for r in only_404] == ["/v1/telemetry/events"] * 2
        none_yet = api(doow, "/api/problems", until="2000-01-01T00:00:00Z")["problems"]
        assert none_yet == []
