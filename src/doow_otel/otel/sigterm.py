"""Flushing OpenTelemetry on SIGTERM for the exporters Doow did not wire itself.

A container stop sends SIGTERM, and Python's default is to die at once: no atexit, no
flush, usage lost. `DoowTracker` installs its own flush. The exporters that
`opentelemetry-instrument` builds (`OTEL_*_EXPORTER=doow`), and those an application
wires into its own providers, sit in providers Doow did not make: each of them, as it is
made, asks for this flush (`watch`). On SIGTERM it flushes the global SDK providers
(where `opentelemetry-instrument`, and most applications, put theirs), the readers
`metric_reader()` made, and the providers given to `flush_on_sigterm()`; then the process
dies as SIGTERM would have made it (`doow_otel.delivery.lifecycle`), within the budget.

An application (or its server: gunicorn, uvicorn) that handles SIGTERM itself keeps its
handler: Doow never replaces one, and the application's exit then runs the providers'
own flush at exit. An exporter in a provider none of the above reaches is said once, at
its first export, with the call that fixes it.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import weakref
from typing import Any

from doow_otel.delivery.deadline import within
from doow_otel.delivery.lifecycle import flush_on_sigterm as _on_sigterm
from doow_otel.delivery.lifecycle import handles_sigterm

__all__ = ["EXIT_BUDGET", "built_by_doow", "flush_on_sigterm", "reached", "watch"]

logger = logging.getLogger("doow_otel")

EXIT_BUDGET = 5.0
"""Seconds the flush on SIGTERM may take (DoowTracker's at its default timeout)."""

_targets: weakref.WeakSet[Any] = weakref.WeakSet()  # providers and readers to flush
_watching = False
_lock = threading.Lock()


def flush_on_sigterm(*providers: Any) -> None:
    """Flush these OpenTelemetry providers (or metric readers) when SIGTERM arrives, then
    exit as SIGTERM would have made the process exit.

    Needed only for providers that are not the global ones (`set_tracer_provider` and
    alike) and hold a Doow exporter you wired yourself; the global providers, the
    readers `metric_reader()` makes and `DoowTracker`'s own are flushed without it. An
    application that handles SIGTERM itself should call each provider's `shutdown()`
    (or `force_flush()`) there instead: Doow never replaces its handler.
    """
    for provider in providers:
        if not callable(getattr(provider, "force_flush", None)):
            raise TypeError(
                f"flush_on_sigterm: {type(provider).__name__} has no force_flush(); pass a "
                "TracerProvider, MeterProvider, LoggerProvider or a metric reader"
            )
        _targets.add(provider)
    watch()


def watch() -> None:
    """Flush the global providers and the registered ones on SIGTERM (installed once, and
    only where the application does not handle SIGTERM itself)."""
    global _watching
    with _lock:
        if _watching:
            return
        _watching = True
    _on_sigterm(_flush_everything, EXIT_BUDGET)


def _roots() -> list[Any]:
    from opentelemetry import metrics, trace

    roots: list[Any] = [trace.get_tracer_provider(), metrics.get_meter_provider()]
    logs = sys.modules.get("opentelemetry._logs")  # only where logs are in use
    if logs is not None:
        roots.append(logs.get_logger_provider())
    roots += list(_targets)
    return [root for root in roots if callable(getattr(root, "force_flush", None))]


def _flush_everything() -> None:
    import time

    end = time.monotonic() + EXIT_BUDGET
    with within(end):
        for root in _roots():
            left = max(0.0, end - time.monotonic())
            try:
                root.force_flush(int(left * 1000))
            except Exception:  # a provider's bug must not keep the others from flushing
                logger.exception("doow: flushing %s on SIGTERM failed", type(root).__name__)


def built_by_doow() -> bool:
    """Whether the exporter being made was made by Doow's own wiring (DoowTracker, which
    flushes its providers itself), not by the application or OpenTelemetry's setup."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("doow_otel.otel"):
        frame = frame.f_back  # type: ignore[assignment]
    return frame is not None and str(frame.f_globals.get("__name__", "")).startswith("doow_otel.")


def reached(exporter: object) -> bool:
    """Whether the SIGTERM flush reaches `exporter`: it sits in a global provider or a
    registered one. The application handling SIGTERM itself counts as reached (its
    exit flushes)."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        return False  # nothing installed: SIGTERM kills with nothing flushed
    if not handles_sigterm():
        return True
    return any(_holds(root, exporter, set()) for root in _roots())


_HOLDERS = ("processor", "reader", "exporter", "sdk_config")
"""The attributes through which a provider holds its exporters (processors, readers, the
meter provider's configuration), across SDK releases; nothing else is walked."""


def _holds(node: Any, target: object, seen: set[int], depth: int = 8) -> bool:
    """`target` among the exporters `node` (a provider, a reader) holds: provider,
    processors, processor, batch, exporter."""
    if node is target:
        return True
    if depth == 0 or id(node) in seen:
        return False
    seen.add(id(node))
    if isinstance(node, (list, tuple)):
        children: Any = node
    elif type(node).__module__.startswith(("opentelemetry", "doow_otel")):
        children = [
            value
            for name, value in getattr(node, "__dict__", {}).items()
            if any(word in name.lower() for word in _HOLDERS)
        ]
    else:
        return False
    return any(_holds(child, target, seen, depth - 1) for child in children)
