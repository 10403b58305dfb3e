"""The zero-code path: what `opentelemetry-instrument` loads for `OTEL_*_EXPORTER=doow`.

The entry points name the classes here, so that this module runs while OpenTelemetry
resolves the exporters, before it builds anything. opentelemetry-distro defaults every
signal left unset to `otlp` over gRPC; when that exporter is not installed, the whole
setup fails (one traceback, then the application runs with no telemetry at all) and
usage set up for Doow on the other signals would never be billed. So, if a signal's
exporter is missing, this module says so loudly, turns that signal off, and runs the
setup itself with the rest; OpenTelemetry's own attempt then fails as before, but the
providers (and Doow's exporters) are in place.
"""

from __future__ import annotations

import logging
import os

from doow_otel.otel.logs import DoowLogExporter
from doow_otel.otel.metrics import DoowMetricReader
from doow_otel.otel.traces import DoowSpanExporter

__all__ = ["DoowLogExporter", "DoowMetricReader", "DoowSpanExporter"]

logger = logging.getLogger("doow_otel")

_SIGNALS = {
    "traces": ("OTEL_TRACES_EXPORTER", "opentelemetry_traces_exporter"),
    "metrics": ("OTEL_METRICS_EXPORTER", "opentelemetry_metrics_exporter"),
    "logs": ("OTEL_LOGS_EXPORTER", "opentelemetry_logs_exporter"),
}


def _missing_exporters() -> dict[str, list[str]]:
    from importlib.metadata import entry_points

    from opentelemetry.sdk._configuration import _get_exporter_names

    missing: dict[str, list[str]] = {}
    for signal, (_, group) in _SIGNALS.items():
        names = _get_exporter_names(signal)  # type: ignore[arg-type]
        absent = [name for name in names if not entry_points(group=group, name=name)]
        if absent:
            missing[signal] = absent
    return missing


def _configure_without(missing: dict[str, list[str]]) -> None:
    from opentelemetry.sdk._configuration import _get_exporter_names, _OTelSDKConfigurator

    for signal, absent in missing.items():
        var = _SIGNALS[signal][0]
        kept = [name for name in _get_exporter_names(signal) if name not in absent]  # type: ignore[arg-type]
        logger.error(
            "doow: %s=%s needs exporters that are not installed (%s; opentelemetry-distro "
            "defaults an unset signal to otlp over gRPC), which makes OpenTelemetry's whole "
            "setup fail. Turning %s off and setting up the rest, so usage is still billed; "
            "set %s (doow, none, or an installed exporter) to choose.",
            var,
            os.environ.get(var, "<unset>"),
            ", ".join(absent),
            signal,
            var,
        )
        os.environ[var] = ",".join(kept) or "none"
    _OTelSDKConfigurator().configure()  # type: ignore[no-untyped-call]


def _asks_for_doow() -> bool:
    return any(
        "doow" in [name.strip() for name in os.environ.get(var, "").split(",")]
        for var, _ in _SIGNALS.values()
    )


def _warn_about_sampling() -> None:
    """With OTEL_TRACES_EXPORTER=doow, the SDK's batch processor hands the exporter only
    sampled spans: usage on the others is not billed. Say so where it is decided."""
    traces = [name.strip() for name in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    sampler = os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if "doow" in traces and sampler and sampler != "always_on":
        logger.warning(
            "doow: OTEL_TRACES_SAMPLER=%s drops spans, and with OTEL_TRACES_EXPORTER=doow "
            "doow.usage span events and GenAI token counts on dropped spans are NOT billed. "
            "Use OTEL_TRACES_SAMPLER=always_on, record usage with metrics or log records, "
            "or set up tracing with doow_otel.configure(), which records what the sampler drops.",
            sampler,
        )


def _rescue() -> None:
    try:
        missing = _missing_exporters() if _asks_for_doow() else {}
        if missing:
            _configure_without(missing)
    except Exception:  # never break the application's start
        logger.exception("doow: could not repair the OpenTelemetry setup")


_rescue()
_warn_about_sampling()
