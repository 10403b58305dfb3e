"""The license from OpenTelemetry baggage.

Set `doow.license_id` in baggage where a request enters (middleware, a queue
consumer) and every usage recorded in that context carries it, unless the record
names its own. Baggage never reaches OTLP data, so it is copied onto spans and log
records when they start (`LicenseFromBaggage` here for spans, `LicenseFromBaggageLogs` in
`doow_otel.otel.logs` for log records); `DoowTracker.track()` reads it at the call.
"""

from __future__ import annotations

from opentelemetry import baggage
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor

__all__ = ["LICENSE_KEY", "LicenseFromBaggage", "license_from_baggage"]

LICENSE_KEY = "doow.license_id"


def license_from_baggage(context: Context | None = None) -> str | None:
    value = baggage.get_baggage(LICENSE_KEY, context)
    return value if isinstance(value, str) and value else None


class LicenseFromBaggage(SpanProcessor):
    """Copies the baggage license onto each span that starts without one."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        license_id = license_from_baggage(parent_context)
        if license_id and not (span.attributes or {}).get(LICENSE_KEY):
            span.set_attribute(LICENSE_KEY, license_id)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # the base class returns None (a failed flush) before opentelemetry-sdk 1.42

