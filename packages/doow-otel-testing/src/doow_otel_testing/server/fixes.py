"""What to do about a refused request: the fix the page shows beside each refusal, in the
words a log line would use. One function, so the page, the read API and the docs agree."""

from __future__ import annotations

__all__ = ["fix_for"]

_INGEST = "/telemetry/events"


def fix_for(status: int, path: str, error: str | None, events_per_minute: int) -> str:
    """The fix for a request refused with `status` on `path` (`error`: Doow's error code)."""
    if status == 401:
        return (
            "Use the key this server accepts: `doow-local serve` prints it (in tests, "
            "LocalDoow().api_key). Set DOOW_TRACK_API_KEY or api_key= to it."
        )
    if status == 404:
        if path.endswith(_INGEST) or path.endswith("/telemetry/heartbeat"):
            base = path[: path.rindex("/telemetry/")]
            return (
                f"The endpoint carries an extra path ({base}): set DOOW_TRACK_ENDPOINT (or "
                "endpoint=) to the server's base URL only, e.g. http://127.0.0.1:8787; the "
                "SDK adds /telemetry/events itself."
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
