"""Delivery health on the application's MeterProvider (doow_otel.otel.self_metrics), read
back from an in-memory reader: each value is the one the local server's own counts imply
(what it stored, rejected and answered), and none of it is ever billed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from doow_otel import DoowClient, DoowTracker, UsageEvent, publish_self_metrics
from doow_otel.otel.metrics import DoowMetricExporter, metric_reader
from doow_otel.otel.self_metrics import (
    BUDGET,
    EXPORTED,
    INFLIGHT,
    NOT_BILLED,
    OLDEST_AGE,
    RATE_LIMITED,
    SCOPE,
    SPOOL_CAPACITY,
    SPOOL_LIMIT,
    SPOOL_SIZE,
    SPOOL_USAGE,
)
from doow_otel_testing import LocalDoow

Key = tuple[str, str | None]  # metric name, error.type


def read(reader: InMemoryMetricReader) -> tuple[dict[Key, float], list[dict[str, Any]]]:
    """The self-metrics' points by (name, error.type), and every point's attributes."""
    values: dict[Key, float] = {}
    attributes: list[dict[str, Any]] = []
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            if scope.scope.name != SCOPE:
                continue
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    attrs = dict(point.attributes or {})
                    attributes.append(attrs)
                    key = (metric.name, attrs.get("error.type"))
                    values[key] = values.get(key, 0) + point.value  # type: ignore[union-attr]
    return values, attributes


def events(n: int, metric: str = "api_calls") -> list[UsageEvent]:
    return [UsageEvent(metric=metric, quantity=1, license_id="lic_1") for _ in range(n)]


def answered(doow: LocalDoow, status: int) -> int:
    return sum(1 for r in doow.requests(path="/telemetry/events") if r["status"] == status)


def test_each_value_is_what_the_local_servers_counts_imply(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    spool = tmp_path / "spool"
    client = DoowClient(local_doow.api_key, endpoint=local_doow.url, spool=spool, timeout=5.0)
    published = publish_self_metrics(provider, client)

    batch = events(5)
    object.__setattr__(batch[2], "quantity", 0)  # Doow rejects this one (a 207)
    client.send(batch)
    local_doow.faults.fail_next(1, 429, retry_after="1")  # waited out, then delivered
    client.send(events(2))
    local_doow.faults.answer_next(1, 400, body='{"message": "bad batch"}')
    client.send(events(3))  # refused as a whole: dropped, never resent
    local_doow.faults.fail_next(1000, 503)
    before = time.time_ns()
    client.send(events(4), timeout=0.5)  # kept in the spool
    values, attributes = read(reader)
    after = time.time_ns()

    stored = local_doow.stats()
    assert values[EXPORTED, None] == stored["accepted"] == 6
    assert values[EXPORTED, "rejected"] == stored["rejected"] == 1
    assert values[EXPORTED, "refused"] == 3 and answered(local_doow, 400) == 1
    assert values[EXPORTED, "set_aside"] == values[EXPORTED, "spool_full"] == 0
    assert values[EXPORTED, "no_spool"] == 0
    assert values[RATE_LIMITED, None] == answered(local_doow, 429) == 1
    assert values[INFLIGHT, None] == 4  # kept: not stored
    assert values[SPOOL_SIZE, None] == 1
    on_disk = sum(p.stat().st_size for p in spool.glob("*.batch"))
    assert values[SPOOL_USAGE, None] == on_disk > 0
    assert values[SPOOL_CAPACITY, None] == client.spool.max_batches  # type: ignore[union-attr]
    assert values[SPOOL_LIMIT, None] == client.spool.max_bytes  # type: ignore[union-attr]
    assert 0 < values[OLDEST_AGE, None] <= (after - before) / 1e9
    assert values[BUDGET, None] == client.pacer.events_per_minute
    assert all(
        a["otel.component.type"] == "doow_exporter"
        and a["otel.component.name"] == published.component_name == "doow_exporter/0"
        and a["server.address"] == "127.0.0.1"
        and a["server.port"] == int(local_doow.url.rsplit(":", 1)[1])
        for a in attributes
    )

    local_doow.faults.clear()
    client.send([])  # the kept four go
    values, _ = read(reader)
    assert values[EXPORTED, None] == local_doow.stats()["accepted"] == 10
    assert values[INFLIGHT, None] == values[SPOOL_SIZE, None] == values[SPOOL_USAGE, None] == 0
    assert values[OLDEST_AGE, None] == 0
    client.close()
    provider.shutdown()


def test_usage_waiting_in_a_tracker_window_counts_as_waiting(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """Usage a tracker holds in its open window (before its window ends, or held there
    while Doow is down) is waiting too, though it is in no spool yet."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path / "s",
        meter_provider=provider,
        flush_interval=3600,
        handle_sigterm=False,
    )
    before = time.time_ns()
    meter.track(metric="api_calls", quantity=2, license_id="lic_1")
    values, _ = read(reader)
    after = time.time_ns()
    assert 0 < values[OLDEST_AGE, None] <= (after - before) / 1e9
    assert values[INFLIGHT, None] == values[SPOOL_SIZE, None] == 0  # in no spool
    assert meter.flush()
    values, _ = read(reader)
    assert values[OLDEST_AGE, None] == 0
    assert values[EXPORTED, None] == local_doow.stats()["accepted"] == 1  # one event, sealed
    meter.shutdown()
    provider.shutdown()


def test_the_doow_exporter_on_the_same_provider_bills_none_of_them(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """The application's provider has Doow's reader beside its own: the self-metrics (and
    the tracker's mirror) reach the application's reader, and Doow bills only the usage,
    without counting any of them as usage it could not bill."""
    exporter_client = DoowClient(
        local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "exporter"
    )
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader, metric_reader(DoowMetricExporter(exporter_client), interval=3600)]
    )
    meter = DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path / "s",
        meter_provider=provider,
        flush_interval=3600,
        handle_sigterm=False,
    )
    publish_self_metrics(provider, exporter_client)  # the exporter's own client too
    meter.track(metric="api_calls", quantity=2, license_id="lic_1")
    local_doow.faults.answer_next(1, 400, body='{"message": "bad"}')
    exporter_client.send(events(1, "other"))  # an error.type with a value
    assert meter.flush()  # seals the window and flushes the provider (Doow's reader too)
    assert provider.force_flush()

    values, attributes = read(reader)
    assert values[EXPORTED, None] == 1 and values[EXPORTED, "refused"] == 1
    assert {a["otel.component.name"] for a in attributes} == {"doow_exporter/0", "doow_exporter/1"}
    assert [(u["metric"], u["license_id"], u["total"]) for u in local_doow.usage()] == [
        ("api_calls", "lic_1", 2)
    ]
    assert exporter_client.stats()["not_billed"] == 0  # not even taken for unlicensed usage
    meter.shutdown()
    provider.shutdown()
    exporter_client.close()


def test_not_billed_usage_by_reason(local_doow: LocalDoow, tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    client = DoowClient(local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "s")
    publish_self_metrics(provider, client)
    client.report.usage_not_billed("missing_license", 3, lambda n: f"{n} without a license")
    values, _ = read(reader)
    assert values[NOT_BILLED, "missing_license"] == 3
    client.close()


def test_one_client_published_twice_is_reported_once_and_stop_ends_it(tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    client = DoowClient("dk_test_" + "x" * 24, endpoint="https://api.doow.example", spool=None)
    first = publish_self_metrics(provider, client)
    second = publish_self_metrics(provider, client)
    values, attributes = read(reader)
    assert values[INFLIGHT, None] == 0
    assert {a["otel.component.name"] for a in attributes} == {"doow_exporter/0"}
    assert {a["server.port"] for a in attributes} == {443}
    assert (SPOOL_SIZE, None) not in values  # no spool: no spool metrics
    first.stop()
    second.stop()
    assert read(reader)[0] == {}
    client.close()
