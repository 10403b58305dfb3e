"""The OpenTelemetry SDK API differences doow_otel bridges (1.34 to today).

Feature checks, not version numbers:
- Logs (bridged in `doow_otel.otel.logs`, imported only where logs are used): 1.39 renamed
  `LogData` to `ReadableLogRecord`/`ReadWriteLogRecord` and `LogExporter`/`LogExportResult`
  to `LogRecordExporter`/`LogRecordExportResult`; 1.34 calls a processor's `emit`, 1.35
  and later `on_emit`.
- Metric readers: 1.45.2 added `cardinality_limits=` (and with it a default limit of
  2000 attribute sets, past which points fold into an overflow point). Older readers
  have no limit at all, so there is nothing to raise.
"""

from __future__ import annotations

import inspect
from typing import Any

from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

__all__ = ["reader_limits"]

_READER_TAKES_LIMITS = (
    "cardinality_limits" in inspect.signature(PeriodicExportingMetricReader.__init__).parameters
)


def reader_limits(limits: dict[type, int]) -> dict[str, Any]:
    """Keyword arguments for PeriodicExportingMetricReader: the limits where the SDK has
    them; none where it has no limit to raise."""
    return {"cardinality_limits": limits} if _READER_TAKES_LIMITS else {}
