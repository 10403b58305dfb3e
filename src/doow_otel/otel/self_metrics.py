"""Delivery health as OpenTelemetry metrics, on the application's own MeterProvider: what
operators watch in Grafana, Datadog or CloudWatch (`DoowClient.stats()` is a dict).

`DoowTracker(meter_provider=...)` publishes them; for a bare `DoowClient` or the
exporters, `publish_self_metrics(meter_provider, client)`. Observable instruments, read at
each collection, in the instrumentation scope `doow_otel.self_metrics`. Never billed: no
point carries a license (`doow.license_id`), so Doow's exporter on the same provider
skips them as other telemetry, and none is in a scope it bills.

Names follow OpenTelemetry's semantic conventions for SDK self-observability where they
fit: the shape of `otel.sdk.exporter.<item>.exported` / `.inflight` (finished exports,
`error.type` set on failures, `rejected` for items refused in a partial success) and of
a processor's `queue.size` / `queue.capacity`, with the attributes `otel.component.type`
(`doow_exporter`), `otel.component.name` (`doow_exporter/<n>`, per MeterProvider),
`server.address` and `server.port`. The items are Doow usage events, none of the
conventions' spans, log records or metric data points, and the `otel.*` namespace is
OpenTelemetry's own: so the names are `doow.exporter.*` (docs/production.md lists them, and
the alert on `doow.exporter.usage.oldest_age`).
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from doow_otel._version import __version__
from doow_otel.delivery.client import DoowClient
from doow_otel.delivery.recorder import Recorder

__all__ = ["SCOPE", "SelfMetrics", "publish_self_metrics"]

SCOPE = "doow_otel.self_metrics"
COMPONENT_TYPE = "doow_exporter"

EXPORTED = "doow.exporter.event.exported"
INFLIGHT = "doow.exporter.event.inflight"
BUDGET = "doow.exporter.event.budget"
RATE_LIMITED = "doow.exporter.rate_limited"
SPOOL_SIZE = "doow.exporter.spool.size"
SPOOL_CAPACITY = "doow.exporter.spool.capacity"
SPOOL_USAGE = "doow.exporter.spool.usage"
SPOOL_LIMIT = "doow.exporter.spool.limit"
OLDEST_AGE = "doow.exporter.usage.oldest_age"
NOT_BILLED = "doow.exporter.usage.not_billed"

# error.type of `doow.exporter.event.exported`: the stats() counter each one reads
FAILURES = {
    "rejected": "rejected",  # one event refused in a 207 (a partial success)
    "refused": "refused",  # in a batch Doow refused as a whole (400, other 4xx)
    "set_aside": "set_aside",  # Doow kept failing on it (5xx past max_attempts or max_age)
    "spool_full": "dropped_spool_full",  # the oldest of a full spool
}


@dataclass
class _Sender:
    """One client to report on, found anew at each collection (a tracker replaces its
    client after a fork or a snapshot restore)."""

    client: Callable[[], DoowClient | None]
    recorder: Callable[[], Recorder | None]
    name: str = ""


class SelfMetrics:
    """What `publish_self_metrics` returns: `stop()` ends the publication."""

    def __init__(self, published: _Published, sender: _Sender) -> None:
        self._published = published
        self._sender = sender

    @property
    def component_name(self) -> str:
        """`otel.component.name` of this client's points."""
        return self._sender.name

    def stop(self) -> None:
        self._published.remove(self._sender)


def publish_self_metrics(meter_provider: MeterProvider, client: DoowClient) -> SelfMetrics:
    """Publish `client`'s delivery health on `meter_provider` (until `stop()`)."""
    ref = weakref.ref(client)
    return _publish(meter_provider, _Sender(ref, lambda: None))


def publish_tracker_metrics(
    meter_provider: MeterProvider,
    client: Callable[[], DoowClient | None],
    recorder: Callable[[], Recorder | None],
) -> SelfMetrics:
    """The same for a `DoowTracker`, which passes how to find its current client and its
    recorder (read only: the usage waiting in its windows) at each collection."""
    return _publish(meter_provider, _Sender(client, recorder))


_registry: weakref.WeakKeyDictionary[Any, _Published] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def _publish(meter_provider: MeterProvider, sender: _Sender) -> SelfMetrics:
    """One set of instruments per MeterProvider (an instrument registered twice is the
    SDK's first one), reporting on every sender added to it."""
    with _registry_lock:
        published = _registry.get(meter_provider)
        if published is None:
            published = _registry[meter_provider] = _Published(meter_provider)
    published.add(sender)
    return SelfMetrics(published, sender)


@dataclass(frozen=True)
class _Reading:
    attributes: dict[str, str | int]
    client: DoowClient
    recorders: list[Recorder]


class _Published:
    def __init__(self, meter_provider: MeterProvider) -> None:
        self._lock = threading.Lock()
        self._senders: list[_Sender] = []
        self._named = 0
        meter = meter_provider.get_meter(SCOPE, __version__)
        counter, gauge, updown = (
            meter.create_observable_counter,
            meter.create_observable_gauge,
            meter.create_observable_up_down_counter,
        )
        counter(
            EXPORTED,
            [self._exported],
            "{event}",
            "Usage events whose delivery to Doow has finished: delivered (no error.type) "
            "or not (error.type: rejected, refused, set_aside, spool_full, no_spool)",
        )
        updown(
            INFLIGHT,
            [self._inflight],
            "{event}",
            "Usage events kept on disk for a later send (not yet delivered)",
        )
        gauge(
            BUDGET,
            [self._budget],
            "{event}/min",
            "Events a minute this sender paces to: Doow's event budget, or its share "
            "of it after 429 answers",
        )
        counter(
            RATE_LIMITED,
            [self._rate_limited],
            "{response}",
            "Doow's 429 answers (its event budget spent)",
        )
        updown(SPOOL_SIZE, [self._spool_size], "{batch}", "Batches waiting in the spool")
        updown(
            SPOOL_CAPACITY,
            [self._spool_capacity],
            "{batch}",
            "Batches the spool holds at most (then its oldest are dropped)",
        )
        updown(SPOOL_USAGE, [self._spool_usage], "By", "Bytes of the batches in the spool")
        updown(
            SPOOL_LIMIT,
            [self._spool_limit],
            "By",
            "Bytes the spool holds at most (then its oldest are dropped)",
        )
        gauge(
            OLDEST_AGE,
            [self._oldest_age],
            "s",
            "Age of the oldest usage not yet delivered to Doow (in the spool, or in a "
            "window not yet sent); 0 when none waits",
        )
        counter(NOT_BILLED, [self._not_billed], "{record}",
                "Usage records the exporters could not bill, by reason (error.type)")  # fmt: skip

    def add(self, sender: _Sender) -> None:
        with self._lock:
            sender.name = f"{COMPONENT_TYPE}/{self._named}"
            self._named += 1
            self._senders.append(sender)

    def remove(self, sender: _Sender) -> None:
        with self._lock:
            if sender in self._senders:
                self._senders.remove(sender)

    def _readings(self) -> list[_Reading]:
        """One per distinct live client (senders sharing one report it once)."""
        with self._lock:
            senders = list(self._senders)
        readings: dict[int, _Reading] = {}
        for sender in senders:
            client = sender.client()
            if client is None:
                continue
            recorder = sender.recorder()
            found = readings.get(id(client))
            if found is None:
                found = readings[id(client)] = _Reading(
                    _attributes(sender.name, client), client, []
                )
            if recorder is not None:
                found.recorders.append(recorder)
        return list(readings.values())

    # --- the callbacks ---

    def _exported(self, options: CallbackOptions) -> Iterator[Observation]:
        for reading in self._readings():
            stats = reading.client.stats()
            yield Observation(stats["delivered"], reading.attributes)
            for error, name in FAILURES.items():
                yield Observation(stats[name], {**reading.attributes, "error.type": error})
            no_spool = stats["dropped"] - stats["refused"]  # undeliverable, nowhere to keep
            memory = sum(recorder.stats["dropped"] for recorder in reading.recorders)
            yield Observation(no_spool + memory, {**reading.attributes, "error.type": "no_spool"})

    def _inflight(self, options: CallbackOptions) -> Iterator[Observation]:
        for reading in self._readings():
            yield Observation(reading.client.pending_events(), reading.attributes)

    def _budget(self, options: CallbackOptions) -> Iterator[Observation]:
        for reading in self._readings():
            yield Observation(reading.client.pacer.events_per_minute, reading.attributes)

    def _rate_limited(self, options: CallbackOptions) -> Iterator[Observation]:
        for reading in self._readings():
            yield Observation(reading.client.stats()["rate_limited"], reading.attributes)

    def _spool_size(self, options: CallbackOptions) -> Iterator[Observation]:
        return self._spool(lambda spool: len(spool))

    def _spool_capacity(self, options: CallbackOptions) -> Iterator[Observation]:
        return self._spool(lambda spool: spool.max_batches)

    def _spool_usage(self, options: CallbackOptions) -> Iterator[Observation]:
        return self._spool(lambda spool: spool.waiting()[0])

    def _spool_limit(self, options: CallbackOptions) -> Iterator[Observation]:
        return self._spool(lambda spool: spool.max_bytes)

    def _spool(self, value: Callable[[Any], int]) -> Iterator[Observation]:
        for reading in self._readings():
            spool = reading.client.spool
            if spool is not None:
                yield Observation(value(spool), reading.attributes)

    def _oldest_age(self, options: CallbackOptions) -> Iterator[Observation]:
        now = time.time_ns()
        for reading in self._readings():
            spool = reading.client.spool
            times = [spool.waiting()[1] if spool is not None else None]
            times += [recorder.waiting_since() for recorder in reading.recorders]
            oldest = min((t for t in times if t is not None), default=None)
            age = 0.0 if oldest is None else max(0.0, (now - oldest) / 1e9)
            yield Observation(age, reading.attributes)

    def _not_billed(self, options: CallbackOptions) -> Iterable[Observation]:
        for reading in self._readings():
            for name, count in reading.client.stats().items():
                if name.startswith("not_billed:"):
                    reason = name.split(":", 1)[1]
                    yield Observation(count, {**reading.attributes, "error.type": reason})


def _attributes(name: str, client: DoowClient) -> dict[str, str | int]:
    parts = urlsplit(client.endpoint)
    attributes: dict[str, str | int] = {
        "otel.component.type": COMPONENT_TYPE,
        "otel.component.name": name,
    }
    if parts.hostname:
        attributes["server.address"] = parts.hostname
        with contextlib.suppress(ValueError):  # a port that is not a number: left out
            attributes["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
    return attributes
