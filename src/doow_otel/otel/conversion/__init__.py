"""OpenTelemetry data to Doow events: the rules (`rules`) over a neutral view (`views`), read
from the SDK's objects by `sdk`."""

from doow_otel.otel.conversion.rules import (
    MIRROR_SCOPE,
    TRACKER_SCOPE,
    USAGE_EVENT_NAME,
    Conversion,
    ConversionOptions,
)
from doow_otel.otel.conversion.sdk import convert_log_records, convert_metrics, convert_spans

__all__ = [
    "MIRROR_SCOPE",
    "TRACKER_SCOPE",
    "USAGE_EVENT_NAME",
    "Conversion",
    "ConversionOptions",
    "convert_log_records",
    "convert_metrics",
    "convert_spans",
]
