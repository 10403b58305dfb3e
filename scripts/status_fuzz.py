"""Random ingest answers decided by the Python client, for the Go exporter to decide alike.

    python scripts/status_fuzz.py FILE [--seed N] [--cases N]

Writes FILE in the format of tests/vectors/ingest/answers.json: each case an answer
(status, headers, body) to a batch, and what `doow_otel.delivery.status.decide` made of it.
`go test -run TestPythonAndGoDecideRandomAnswersAlike` in exporter/doowexporter (with
DOOW_STATUS_FUZZ=FILE) decides the same answers and compares. The shared table pins the
rules; this searches the corners between them: acknowledgements of every shape, reasons
of every JSON type, both 207 forms at once, waits past the cap, malformed headers.
The same seed always writes the same cases.
"""

from __future__ import annotations

import argparse
import calendar
import json
import random
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

from doow_otel.delivery.status import decide

NOW = 1795514400.0  # 2026-11-24T10:00:00Z
NOW_TEXT = "2026-11-24T10:00:00Z"
STATUSES = [100, 200, 201, 202, 204, 207, 299, 301, 302, 304, 307, 308, 400, 401, 403, 404]
STATUSES += [405, 407, 408, 409, 410, 413, 415, 418, 422, 429, 451, 499, 500, 502, 503, 504, 599]
IDS = ["a", "b", "c", "d"]
REASONS: list[Any] = ["r1", "r2", 3, 2.5, 1e16, 1e-7, -0.0, True, None, "", " pad ", "é"]


def rejection(rng: random.Random) -> Any:
    return rng.choice(
        [
            {"event_id": rng.choice([*IDS, "x"]), "reason": rng.choice(REASONS)},
            {"event_id": rng.choice(IDS)},
            {"event_id": 5},
            "a",
            None,
            7,
            [],
            {},
        ]
    )


def body(rng: random.Random) -> str:
    accepted = [0, 1, 3, "lots", None, [], ["a", "c"], ["a", 1, "b"], ["z"]]
    message = ["m", "  spaced  ", 5, None, {"f": 1}, "x" * 400, "é" * 301]
    options: list[Callable[[], str]] = [
        lambda: "",
        lambda: "<html>x</html>",
        lambda: "  plain text  ",
        lambda: "[1, 2]",
        lambda: "null",
        lambda: json.dumps({"ok": True}),
        lambda: json.dumps({"accepted": rng.choice(accepted)}),
        lambda: json.dumps({"rejections": [rejection(rng) for _ in range(rng.randrange(5))]}),
        lambda: json.dumps(
            {
                "accepted": rng.choice(accepted),
                "rejections": rng.choice([[rejection(rng) for _ in range(3)], None, {}, "x"]),
            }
        ),
        lambda: json.dumps({"message": rng.choice(message)}),
        lambda: json.dumps({"error": "e", "message": 3, "reason": "r"}),
        lambda: json.dumps({"reason": "only reason"}),
        lambda: json.dumps(rng.choice(["str", "  s  ", 1, None, True, [1], []])),
        # not JSON, though Python's json module reads them
        lambda: rng.choice(['{"accepted": NaN}', '{"rejections": [], "x": -Infinity}']),
    ]
    return rng.choice(options)()


def headers(rng: random.Random) -> dict[str, str]:
    found: dict[str, str] = {}
    kind = rng.randrange(6)
    if kind == 1:
        found["Retry-After"] = rng.choice(
            ["0", "2", "86400", "-5", "soon", " 7 ", "1.5", "99999999999999999999999"]
        )
    elif kind == 2:
        when = time.gmtime(NOW + rng.choice([-100, 0, 30, 1000]))
        found["Retry-After"] = rng.choice(
            [
                formatdate(calendar.timegm(when), usegmt=True),
                time.strftime("%A, %d-%b-%y %H:%M:%S GMT", when),  # RFC 850
                time.strftime("%a %b %e %H:%M:%S %Y", when),  # asctime
                time.strftime("%d %b %Y %H:%M:%S GMT", when),  # not an HTTP date
                formatdate(calendar.timegm(when)),  # numeric zone: not an HTTP date
            ]
        )
    elif kind >= 3:
        categories: dict[str, Any] = {}
        for name in ["events", "bytes", "c"][: rng.randrange(1, 4)]:
            wait = rng.choice([1, 7.5, "9", -1, None, True, 400, 0, 1e999])
            categories[name] = rng.choice([{"retry_after": wait}, None, 3, {}])
        # 1e999: a number past float64's range (json.dumps would write Infinity)
        limits = json.dumps(categories).replace("Infinity", "1e999")
        not_json = '{"events": {"retry_after": Infinity}}'
        found["X-Doow-Rate-Limits"] = rng.choice([limits, "[1, 2]", "nope", not_json])
        if kind == 4:
            found["Retry-After"] = rng.choice(["4", "1"])
    if rng.random() < 0.1:
        found["Location"] = "https://elsewhere.test/"
    return found


def case(rng: random.Random, number: int) -> dict[str, Any]:
    ids = IDS[: rng.randrange(1, 5)]
    status = rng.choice([200, 202, 207]) if rng.random() < 0.4 else rng.choice(STATUSES)
    found, text = headers(rng), body(rng)
    got = decide(ids, status, found, text.encode(), NOW)
    decision: dict[str, Any] = {"action": got.action}
    if got.action == "delivered":
        decision["accepted"] = got.accepted
        decision["rejected"] = [{"event_id": r.event_id, "reason": r.reason} for r in got.rejected]
    elif got.action == "retry":
        decision["retry_after"] = got.retry_after
    elif got.action == "reject":
        decision["reason"] = got.reason
    elif got.action == "keep":
        decision["problem"] = got.problem
    return {
        "name": f"random {number}",
        "events": ids,
        "now": NOW_TEXT,
        "answer": {"status": status, "headers": found, "body": text},
        "decision": decision,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", type=int, default=3000)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cases = [case(rng, n) for n in range(args.cases)]
    doc = ["random answers; see scripts/status_fuzz.py"]
    args.file.write_text(json.dumps({"doc": doc, "cases": cases}))


if __name__ == "__main__":
    main()
