"""Usage from OpenTelemetry logs: the exporter and the context license processor.

A module of its own so that the OpenTelemetry logs SDK (6 ms of a cold start) loads
only where logs are used.

The SDK's logs API changed (bridged here, by feature not version): 1.39 renamed
`LogData` to `ReadableLogRecord`/`ReadWriteLogRecord` and `LogExporter`/`LogExportResult`
to `LogRecordExporter`/`LogRecordExportResult`; both shapes carry the record as
`.log_record`, which is all doow_otel reads. 1.34 calls a processor's `emit(log_data)`,
1.35 and later `on_emit(...)`: a processor defines both.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk._logs import LogRecordProcessor

from doow_otel.otel.baggage import LICENSE_KEY, license_in_context
from doow_otel.otel.conversion import USAGE_EVENT_NAME, convert_log_records
from doow_otel.otel.exporting import DoowExporterBase

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
    "DoowLogExporter",
    "LicenseFromContextLogs",
    "LogRecordExportResult",
    "LogRecordExporter",
]


def _record_is_usage(record: ReadableLogRecord) -> bool:
    log = record.log_record
    if getattr(log, "event_name", None) == USAGE_EVENT_NAME:
        return True
    attributes = log.attributes or {}
    return attributes.get("event.name") == USAGE_EVENT_NAME


class DoowLogExporter(DoowExporterBase, LogRecordExporter):
    """Bills log records whose event name is `doow.usage`."""

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        usage = [record for record in batch if _record_is_usage(record)]
        if not usage and not self._retained:
            return LogRecordExportResult.SUCCESS
        conversion = convert_log_records(usage, self.options)
        self._debug(f"{len(batch)} log records, {len(usage)} named doow.usage", conversion)
        ok = self._deliver(conversion, self.client.timeout)
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._flush_spool(timeout_millis)

    def shutdown(self) -> None:
        self._shutdown()


class LicenseFromContextLogs(LogRecordProcessor):
    """Copies the license in context (`doow_otel.otel.baggage.license_in_context`) onto
    each log record emitted without one."""

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        record = log_record.log_record
        # records carry no context before opentelemetry-sdk 1.35: the current one is theirs
        license_id = license_in_context(getattr(record, "context", None))
        if license_id and record.attributes is not None and LICENSE_KEY not in record.attributes:
            # in place: the SDK's (mutable) BoundedAttributes carry the dropped count that
            # opentelemetry-sdk 1.34's encoder reads; a plain dict would break it
            record.attributes[LICENSE_KEY] = license_id  # type: ignore[index]

    emit = on_emit  # the name opentelemetry-sdk 1.34 calls

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True
