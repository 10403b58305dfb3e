"""What to do about a refused request: the fix the page shows beside each refusal, in the
words a log line would use. One function, so the page, the read API and the docs agree."""

from __future__ import annotations

__all__ = ["fix_for", "fix_for_rejection"]

_INGEST = "/telemetry/events"


def fix_for(status: int, path: str, error: str | None, events_per_minute: int) -> str:
    """The fix for a request refused with `status` on `path` (`error`: Doow's error code)."""
    if status == 401:
        return (
            "Use the key this server accepts: `doow-local serve` prints it (in tests, "
            "LocalDoow().api_key). Set DOOW_TRACK_API_KEY or api_key= to it. Usage sent "
            "with the wrong key waits in the sender's spool: after the fix, `doow-otel spool "
            "adopt` sends it."
        )
    if status == 404:
        if path.endswith(_INGEST) or path.endswith("/telemetry/heartbeat"):
            base = path[: path.rindex("/telemetry/")]
            return (
                f"The endpoint carries an extra path ({base}): set DOOW_TRACK_ENDPOINT (or "
                "endpoint=) to the server's base URL only, e.g. http://127.0.0.1:8787; the "
                "SDK adds /telemetry/events itself. Usage sent meanwhile waits in the sender's "
                "spool: after the fix, `doow-otel spool adopt` sends it."
            )
        return (
            "Nothing is served here: set DOOW_TRACK_ENDPOINT (or endpoint=) to the server's "
            "base URL, e.g. http://127.0.0.1:8787; usage goes to POST /telemetry/events."
        )
    if status == 413 and error == "batch_too_large":
        most = min(1000, events_per_minute) if events_per_minute else 1000
        return (
            f"Send at most {most} events per request (doow-otel sends at most 500 and splits "
            "on 413 by itself)."
        )
    if status == 413:
        return "Keep each request under 10 MB (doow-otel keeps batches under 450 KB)."
    if status == 429:
        return (
            f"The key sent more than its budget ({events_per_minute or 'no limit'} events a "
            "minute). Wait Retry-After seconds and resend (doow-otel does); aggregate usage so "
            "each stream costs one event per window; or start the local server with a larger "
            "--events-per-minute."
        )
    if status == 415:
        return "Send Content-Type: application/json (Content-Encoding: gzip or none)."
    if status in (400, 411):
        return (
            'Send one JSON object: {"batch_id": "...", "events": [...]} with a Content-Length '
            "(the ingest contract); doow-otel's client always does."
        )
    return "Look at the reason; the ingest contract lists what each status means."


def fix_for_rejection(reason: str) -> str:
    """The fix for an event rejected in a 207 with `reason` (the field comes first)."""
    field = reason.split(":", 1)[0]
    if reason.startswith("unknown_metric:"):
        return (
            "Doow knows no metric of this name: create it in Doow, or correct the name. A "
            "packed event's other measurements are resent on their own."
        )
    if field == "license_id":
        return (
            "Give every event its license: license_id= in track(), a doow.license_id "
            "attribute on OpenTelemetry data, or a default (DOOW_LICENSE_ID)."
        )
    if field.endswith("quantity"):
        if "greater than 0" in reason or "of 0 changes nothing" in reason:
            return (
                "Zero or negative usage bills nothing: skip it (doow-otel's track() counts and "
                "skips zero), and send corrections as kind ADJUSTMENT."
            )
        if "int or float" in reason:
            return (
                "Send the quantity as a number, not text: convert it with int() or float() "
                "before track()."
            )
        return "Send a finite number within a 64-bit integer; split very large usage."
    if field == "occurred_at":
        return "Send occurred_at as an RFC 3339 time in UTC, e.g. 2026-11-24T10:15:00Z."
    if field == "event_id":
        return "Give each event a UUID event_id (doow-otel makes one for you)."
    if "metric_name" in field:
        return "Name the metric with letters, digits and _ . - / (at most 255 characters)."
    return "Correct the field the reason names; the batch's other events were stored."
