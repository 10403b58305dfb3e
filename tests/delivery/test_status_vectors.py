"""Every shared ingest-answer vector (tests/vectors/ingest/answers.json) through the pure
status policy; the Go exporter runs the same file."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from doow_otel.delivery.status import Decision, decide, transport_failure

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "ingest" / "answers.json"
CASES: list[dict[str, Any]] = json.loads(VECTORS.read_text())["cases"]
NOW = datetime.fromisoformat("2026-11-24T10:00:00+00:00").timestamp()


def run(case: dict[str, Any]) -> Decision:
    if "failure" in case:
        return transport_failure(case["failure"])
    answer = case["answer"]
    now = NOW
    if "now" in case:
        now = datetime.fromisoformat(case["now"].replace("Z", "+00:00")).timestamp()
    body = answer.get("body", "").encode()
    return decide(case["events"], answer["status"], answer.get("headers", {}), body, now)


def as_vector(decision: Decision) -> dict[str, Any]:
    out: dict[str, Any] = {"action": decision.action}
    if decision.action == "delivered":
        out["accepted"] = decision.accepted
        out["rejected"] = [
            {"event_id": r.event_id, "reason": r.reason}
            | ({"metric_name": r.metric} if r.metric is not None else {})
            for r in decision.rejected
        ]
    elif decision.action == "retry":
        out["retry_after"] = decision.retry_after
    elif decision.action == "reject":
        out["reason"] = decision.reason
    elif decision.action == "keep":
        out["problem"] = decision.problem
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_vector(case: dict[str, Any]) -> None:
    assert as_vector(run(case)) == case["decision"]


def test_the_table_covers_the_answers_the_issue_names() -> None:
    statuses = {c["answer"]["status"] for c in CASES if "answer" in c}
    assert {202, 207, 400, 401, 403, 404, 408, 413, 429, 500, 503, 301, 302, 307, 308} <= statuses
    assert {c["failure"] for c in CASES if "failure" in c} == {"connection", "timeout"}


@pytest.mark.parametrize(
    "body",
    [b"", b"null", b"[]", b'"x"', b"7", b"{}", b'{"accepted": null}', b"\xff\xfe", b"{" * 50],
)
@pytest.mark.parametrize("status", [200, 202, 207, 400, 401, 404, 413, 429, 500])
def test_any_body_shape_gives_a_decision_and_never_raises(status: int, body: bytes) -> None:
    decision = decide(["a", "b"], status, {"Retry-After": "garbage"}, body, NOW)
    assert decision.accepted >= 0


def test_the_standard_librarys_http_date_parser_reads_what_the_shared_table_refuses() -> None:
    """Why status.py reads HTTP dates itself: `email.utils.parsedate_to_datetime` takes
    forms RFC 9110 (and Go's net/http.ParseTime, which the collector exporter uses) refuse,
    so the two exporters would wait differently on one answer. If it comes to refuse
    them, this fails and status.py can use it."""
    from email.utils import parsedate_to_datetime

    refused = [
        case["answer"]["headers"]["Retry-After"]
        for case in CASES
        if "not an HTTP date" in case["name"] and "digits" not in case["name"]
    ]
    assert len(refused) >= 2
    for text in refused:
        assert parsedate_to_datetime(text) is not None  # the standard library accepts it
        assert (
            run(
                {
                    "events": ["a"],
                    "now": "2026-11-24T10:00:00Z",
                    "answer": {"status": 429, "headers": {"Retry-After": text}, "body": ""},
                }
            ).retry_after
            is None
        )
