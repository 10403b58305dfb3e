"""What the tests do differently on the OpenTelemetry releases doow_otel supports."""

from __future__ import annotations

from typing import Any


def emit(logger: Any, attributes: dict[str, Any], *, usage: bool) -> None:
    """A log record, a usage event or not, on any supported SDK: keyword arguments from
    1.35; before that a LogRecord, marked as usage by the `event.name` attribute."""
    try:
        logger.emit(event_name="doow.usage" if usage else None, attributes=attributes)
    except TypeError:
        from opentelemetry._logs import SeverityNumber
        from opentelemetry.sdk._logs import LogRecord
        from opentelemetry.trace import TraceFlags

        marked = {**attributes, "event.name": "doow.usage"} if usage else attributes
        # 1.34's encoder needs these set (its logging handler sets them)
        logger.emit(
            LogRecord(
                trace_id=0,
                span_id=0,
                trace_flags=TraceFlags(0),
                severity_number=SeverityNumber.INFO,
                attributes=marked,
            )
        )
