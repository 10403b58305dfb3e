"""What a sender does with each ingest answer: a pure policy, no sockets, no client state.

The table is written once, as shared vectors (tests/vectors/ingest/answers.json) that this
module and the Go exporter (doowexporter/status.go) both run:

- delivered: Doow's JSON acknowledgement (an object with `accepted` or `rejections`) on a
  2xx/207. Accepted = events sent minus the distinct sent ids it rejected (ids it names
  that were not sent are ignored; first reason wins; never negative). Older servers answer
  207 with `accepted` as the list of accepted ids.
- retry: 408, 429, 5xx and transport failures; `retry_after` from `Retry-After` (seconds or
  an HTTP date) and `X-Doow-Rate-Limits` (the largest numeric `retry_after`), the longer
  of the two, capped at 300 s; None: the sender's own backoff.
- split: 413 with more than one event.
- reject: other 4xx and 413 of one event; never resent.
- keep: not delivered and not the batch's fault. `auth` (401/403) or `endpoint` (redirects,
  never followed since they would carry the key elsewhere; 404/405; 407 (a proxy's
  answer: its credentials); 415 (an encoding or content type this server does not
  take); any 2xx, 1xx or 3xx
  that is not Doow's acknowledgement).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

__all__ = [
    "MAX_RETRY_AFTER",
    "Decision",
    "RateLimit",
    "Rejection",
    "decide",
    "rate_limits",
    "transport_failure",
]

MAX_RETRY_AFTER = 300.0
NO_REASON = "rejected (no reason given)"
REASON_CHARS = 300

Action = Literal["delivered", "retry", "split", "reject", "keep"]
Problem = Literal["auth", "endpoint"]


@dataclass(frozen=True)
class Rejection:
    """Doow's rejection of one event; `metric` when it names one of its measurements (the
    answer's `metric_name`, else a reason `unknown_metric: <metric>`): the event's other
    measurements were not refused (docs/conversion.md, rule R)."""

    event_id: str
    reason: str
    metric: str | None = None


@dataclass(frozen=True)
class RateLimit:
    """One category of `X-Doow-Rate-Limits`: what Doow allows, what it counts now, and
    the seconds until it takes more (each None when the answer did not say)."""

    limit: float | None = None
    current: float | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Decision:
    """The sender's action for one answer; `reason` is a short text for reports."""

    action: Action
    accepted: int = 0
    rejected: tuple[Rejection, ...] = ()
    retry_after: float | None = None
    problem: Problem | None = None
    reason: str = ""
    budget: RateLimit | None = None
    """The `event_rate` category of a 429's `X-Doow-Rate-Limits`: the event budget."""


def transport_failure(kind: Literal["connection", "timeout"], detail: str = "") -> Decision:
    """No answer at all (a dropped connection, a timeout): transient."""
    return Decision("retry", reason=detail or kind)


def decide(
    event_ids: Sequence[str],
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
) -> Decision:
    """The decision for `status`/`headers`/`body`, answered to a batch of `event_ids`.

    `now` is the wall-clock time (Unix seconds) against which HTTP dates are read.
    """
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    if 200 <= status < 300:
        return _acknowledged(event_ids, status, body)
    if status in (401, 403):
        return Decision("keep", problem="auth", reason=_reason(status, body))
    if status in (404, 405, 407, 415) or status < 200 or 300 <= status < 400:
        where = f" (Location: {lower['location'][:200]})" if "location" in lower else ""
        return Decision("keep", problem="endpoint", reason=f"HTTP {status}{where}")
    if status == 413 and len(event_ids) > 1:
        return Decision("split", reason="HTTP 413")
    if status in (408, 429) or status >= 500:
        budget = rate_limits(lower).get("event_rate") if status == 429 else None
        return Decision(
            "retry", retry_after=_wait(lower, now), reason=f"HTTP {status}", budget=budget
        )
    return Decision("reject", reason=_reason(status, body))


def _acknowledged(event_ids: Sequence[str], status: int, body: bytes) -> Decision:
    data = _json(body)
    if not isinstance(data, dict) or not ("accepted" in data or "rejections" in data):
        return Decision(
            "keep", problem="endpoint", reason=f"HTTP {status} is not Doow's acknowledgement"
        )
    sent = set(event_ids)
    reasons: dict[str, str] = {}
    metrics: dict[str, str | None] = {}
    rejections = data.get("rejections")
    for item in rejections if isinstance(rejections, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("event_id"), str):
            continue
        event_id = item["event_id"]
        if event_id in sent and event_id not in reasons:
            reason = item.get("reason")
            reasons[event_id] = (
                NO_REASON if reason is None else reason if isinstance(reason, str) else str(reason)
            )
            metrics[event_id] = _metric_named(item, reasons[event_id])
    accepted = data.get("accepted")
    if isinstance(accepted, list):  # older servers: the ids accepted
        taken = {a for a in accepted if isinstance(a, str)}
        for event_id in event_ids:
            if event_id not in taken:
                reasons.setdefault(event_id, NO_REASON)
    rejected = tuple(Rejection(e, r, metrics.get(e)) for e, r in reasons.items())
    return Decision("delivered", accepted=len(sent) - len(rejected), rejected=rejected)


_UNKNOWN_METRIC = "unknown_metric: "


def _metric_named(item: Mapping[str, Any], reason: str) -> str | None:
    """The metric a rejection names: its `metric_name`, else `unknown_metric: <metric>`."""
    named = item.get("metric_name")
    if isinstance(named, str) and named:
        return named
    if reason.startswith(_UNKNOWN_METRIC) and len(reason) > len(_UNKNOWN_METRIC):
        return reason[len(_UNKNOWN_METRIC) :]
    return None


def _reason(status: int, body: bytes) -> str:
    data = _json(body)
    text: str | None = None
    if isinstance(data, dict):
        for key in ("message", "error", "reason"):
            if isinstance(data.get(key), str):
                text = data[key]
                break
    elif isinstance(data, str):
        text = data
    if text is None:
        text = body.decode("utf-8", "replace")
    return f"HTTP {status}: {text.strip()[:REASON_CHARS]}"


def _wait(headers: Mapping[str, str], now: float) -> float | None:
    """The longer of `Retry-After` and the largest `retry_after` of `X-Doow-Rate-Limits`
    (every category must have expired), capped."""
    limited = [
        limit.retry_after
        for limit in rate_limits(headers).values()
        if limit.retry_after is not None and limit.retry_after >= 0
    ]
    waits = [
        w
        for w in (_retry_after(headers.get("retry-after"), now), max(limited, default=None))
        if w is not None
    ]
    return min(max(waits), MAX_RETRY_AFTER) if waits else None


def _retry_after(header: str | None, now: float) -> float | None:
    if header is None or not header.strip():
        return None
    text = header.strip()
    if text.isascii() and text.isdigit():  # str.isdigit() also takes "²" and "١"
        return float(text)
    when = _http_date(text)
    return None if when is None else max(0.0, when - now)


# RFC 9110 5.6.7: the IMF-fixdate and the two obsolete forms recipients must accept,
# nothing else (the Go exporter's net/http.ParseTime reads exactly these); parsed
# without strptime, whose month names follow the process's locale. Not the standard
# library's email.utils.parsedate_to_datetime: it also takes dates without a weekday or
# with a numeric zone, which the shared vectors refuse (test_status_vectors.py shows it).
_HTTP_DATES = (  # re.ASCII: \d is 0-9 only
    re.compile(r"[A-Za-z]{3}, (\d{2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT", re.ASCII),
    re.compile(
        r"[A-Za-z]{6,9}, (\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT", re.ASCII
    ),
    re.compile(r"[A-Za-z]{3} ([A-Za-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})", re.ASCII),
)
_MONTHS = {
    month: number
    for number, month in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}


def _http_date(text: str) -> float | None:
    """An HTTP date as a Unix time, or None when `text` is not one."""
    fixdate, rfc850, asctime = (shape.fullmatch(text) for shape in _HTTP_DATES)
    if fixdate:
        day, month, year, hour, minute, second = fixdate.groups()
    elif rfc850:
        day, month, year, hour, minute, second = rfc850.groups()
        year = str(int(year) + (1900 if int(year) >= 69 else 2000))
    elif asctime:
        month, day, hour, minute, second, year = asctime.groups()
    else:
        return None
    number = _MONTHS.get(month.lower())
    try:
        when = datetime(int(year), number or 0, int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None
    return when.replace(tzinfo=timezone.utc).timestamp()


def rate_limits(headers: Mapping[str, str]) -> dict[str, RateLimit]:
    """The categories of `X-Doow-Rate-Limits` (`{"event_rate": {"limit", "current",
    "retry_after"}, ...}`); a value that is not a finite number is left out. `headers`'
    names in lowercase."""
    try:
        limits = _strict_json(headers.get("x-doow-rate-limits") or "null")
    except ValueError:
        return {}
    if not isinstance(limits, dict):
        return {}
    return {
        str(name): RateLimit(*(_number(values.get(k)) for k in ("limit", "current", "retry_after")))
        for name, values in limits.items()
        if isinstance(values, dict)
    }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _json(body: bytes) -> Any:
    try:
        return _strict_json(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _strict_json(text: str | bytes) -> Any:
    """JSON as RFC 8259 (and Go) reads it: NaN and Infinity are not JSON."""
    return json.loads(text, parse_constant=_not_json)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")
