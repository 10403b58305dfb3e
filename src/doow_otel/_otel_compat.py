"""The OpenTelemetry SDK API differences doow_otel bridges (1.34 to today).

Feature checks, not version numbers:
- Logs: 1.39 renamed `LogData` to `ReadableLogRecord`/`ReadWriteLogRecord` and
  `LogExporter`/`LogExportResult` to `LogRecordExporter`/`LogRecordExportResult`. Both
  shapes carry the record as `.log_record`, which is all doow_otel reads.
- Log processors: 1.34 calls `emit(log_data)`, 1.35 and later call `on_emit(...)`; a
  processor defines both (see `doow_otel.baggage`).
- Metric readers: 1.45.2 added `cardinality_limits=` (and with it a default limit of
  2000 attribute sets, past which points fold into an overflow point). Older readers
  have no limit at all, so there is nothing to raise.
"""

from __future__ import annotations

import inspect
from typing import Any

from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

try:
    from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
except ImportError:  # opentelemetry-sdk < 1.39
    from opentelemetry.sdk._logs import LogData as ReadWriteLogRecord  # type: ignore[attr-defined,no-redef]
    from opentelemetry.sdk._logs import LogData as ReadableLogRecord  # type: ignore[attr-defined,no-redef]
    from opentelemetry.sdk._logs.export import LogExporter as LogRecordExporter
    from opentelemetry.sdk._logs.export import (  # type: ignore[assignment]
        LogExportResult as LogRecordExportResult,
    )

__all__ = [
    "LogRecordExportResult",
    "LogRecordExporter",
    "ReadWriteLogRecord",
    "ReadableLogRecord",
    "reader_limits",
]

_READER_TAKES_LIMITS = (
    "cardinality_limits" in inspect.signature(PeriodicExportingMetricReader.__init__).parameters
)


def reader_limits(limits: dict[type, int]) -> dict[str, Any]:
    """Keyword arguments for PeriodicExportingMetricReader: the limits where the SDK has
    them; none where it has no limit to raise."""
    return {"cardinality_limits": limits} if _READER_TAKES_LIMITS else {}
