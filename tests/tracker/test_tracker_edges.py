"""DoowTracker at its edges (issue 9, items 9-11, 18, 19): bad input is named at the call,
names arrive exactly, reserved keys cannot change what is billed, and construction
never crashes an import. Delivery is judged by what the local server stored."""

from __future__ import annotations

import decimal
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from doow_otel import InvalidEvent
from doow_otel.errors import ErrorReport
from doow_otel.tracker import DoowTracker
from doow_otel_testing import LocalDoow
from helpers import child_env

# --- item 10: names arrive exactly as given ---


def test_metric_names_keep_their_case(local_doow: LocalDoow, meter: DoowTracker) -> None:
    meter.track(metric="Tokens", quantity=1, license_id="lic_a")
    meter.track(metric="tokens", quantity=2, license_id="lic_a")
    meter.track(metric="API_Calls", quantity=3, license_id="lic_a")
    assert meter.flush()
    assert local_doow.total("Tokens", "lic_a") == 1
    assert local_doow.total("tokens", "lic_a") == 2
    assert local_doow.total("API_Calls", "lic_a") == 3
    assert local_doow.total("api_calls") == 0


def test_lowercase_after_mixed_case_keeps_both(local_doow: LocalDoow, meter: DoowTracker) -> None:
    meter.track(metric="Calls", quantity=5, license_id="lic_a")
    meter.flush()
    meter.track(metric="calls", quantity=7, license_id="lic_a")
    meter.flush()
    assert local_doow.total("Calls") == 5
    assert local_doow.total("calls") == 7


# --- item 11: reserved attribution keys ---


@pytest.mark.parametrize(
    "key", ["doow.metric", "doow.unit", "doow.license_id", "doow.anything", "otel.metric.overflow"]
)
def test_reserved_attribution_keys_are_refused(meter: DoowTracker, key: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        meter.track(metric="api_calls", quantity=1, license_id="lic_a", attribution={key: "x"})
    assert caught.value.field == "attribution"
    assert key in str(caught.value)


def test_reserved_keys_never_change_what_is_billed(
    local_doow: LocalDoow, meter: DoowTracker
) -> None:
    for key, value in (("doow.metric", "free"), ("doow.license_id", "lic_other")):
        with pytest.raises(InvalidEvent):
            meter.track(
                metric="api_calls", quantity=1, license_id="lic_a", attribution={key: value}
            )
    meter.track(metric="api_calls", quantity=1, license_id="lic_a")
    meter.flush()
    assert [(u["metric"], u["license_id"]) for u in local_doow.usage()] == [("api_calls", "lic_a")]


# --- item 9: quantities past the OTLP integer range ---


def test_quantity_past_int64_is_refused_naming_the_range(meter: DoowTracker) -> None:
    with pytest.raises(InvalidEvent, match="2\\*\\*63") as caught:
        meter.track(metric="api_calls", quantity=2**63, license_id="lic_a")
    assert caught.value.field == "quantity"


def test_an_interval_sum_past_int64_is_delivered_exactly(
    local_doow: LocalDoow, meter: DoowTracker
) -> None:
    big = 2**63 - 1
    meter.track(metric="bytes", quantity=big, license_id="lic_a")
    meter.track(metric="bytes", quantity=big, license_id="lic_a")
    meter.track(metric="bytes", quantity=5, license_id="lic_a")
    meter.track(metric="api_calls", quantity=1, license_id="lic_a")
    assert meter.flush()
    assert local_doow.total("api_calls") == 1
    stored = sum(e["quantity"] for e in local_doow.events(metric="bytes"))
    assert stored == 2 * big + 5


# --- item 18: every bad input is named ---


class _Int(int):
    pass


class _Float(float):
    pass


class _BadIndex:
    def __index__(self) -> int:
        raise TypeError("no")


class _NumpyLikeInt:
    """An integer type that is not an int subclass (numpy.int64 behaves like this)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"metric": ["a"], "quantity": 1, "license_id": "l"}, "metric"),
        ({"metric": {"a": 1}, "quantity": 1, "license_id": "l"}, "metric"),
        ({"metric": "m", "unit": ["u"], "quantity": 1, "license_id": "l"}, "unit"),
        (
            {"metric": "m", "quantity": 1, "license_id": "l", "attribution": ["a", "b"]},
            "attribution",
        ),
        ({"metric": "m", "quantity": 1, "license_id": "l", "attribution": []}, "attribution"),
        ({"metric": "m", "quantity": 1, "license_id": "l", "attribution": "a=b"}, "attribution"),
        ({"metric": "m", "quantity": 1, "license_id": "l", "attribution": ""}, "attribution"),
        ({"metric": "m", "quantity": 1, "license_id": "l", "attribution": {1: "x"}}, "attribution"),
        (
            {"metric": "m", "quantity": 1, "license_id": "l", "attribution": {"a": [1]}},
            "attribution",
        ),
        (
            {"metric": "m", "quantity": 1, "license_id": "l", "attribution": {"n": 2**64}},
            "attribution",
        ),
        ({"metric": "m", "quantity": decimal.Decimal("1.5"), "license_id": "l"}, "quantity"),
        ({"metric": "m", "quantity": 1, "license_id": ["l"]}, "license_id"),
        ({"metric": "m", "quantity": _BadIndex(), "license_id": "l"}, "quantity"),
        ({"metric": "m", "quantity": 1j, "license_id": "l"}, "quantity"),
        ({"metric": "m", "quantity": None, "license_id": "l"}, "quantity"),
    ],
)
def test_bad_input_is_named(meter: DoowTracker, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        meter.track(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert caught.value.problem


def test_decimal_is_refused_with_the_fix(meter: DoowTracker) -> None:
    with pytest.raises(InvalidEvent, match="Decimal.*float\\(\\)"):
        meter.track(metric="m", quantity=decimal.Decimal(2), license_id="l")  # type: ignore[arg-type]


def test_numeric_subclasses_are_accepted(local_doow: LocalDoow, meter: DoowTracker) -> None:
    meter.track(metric="m", quantity=_Int(2), license_id="lic_a")
    meter.track(metric="m", quantity=_Float(0.5), license_id="lic_a")
    meter.track(metric="m", quantity=_NumpyLikeInt(3), license_id="lic_a")  # type: ignore[arg-type]
    assert meter.flush()
    assert local_doow.total("m", "lic_a") == 5.5


def test_many_bad_attribution_keys_are_reported_once(
    meter: DoowTracker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="doow_otel")
    for i in range(10_000):
        meter.track(
            metric="m", quantity=1, license_id="l", attribution={f"password_{i}": "x", "ok": 1}
        )
    stripped = [r for r in caplog.records if "stripped" in r.getMessage()]
    assert 1 <= len(stripped) <= 2, [r.getMessage() for r in stripped[:5]]
    assert len(meter.policy._reported) <= meter.policy.max_reported


# --- item 19: construction never crashes an import ---


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_missing_key_is_reported_when_sending_starts_not_at_construction(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    reports: list[ErrorReport] = []
    tracker = DoowTracker(
        endpoint=local_doow.url,
        spool=tmp_path,
        on_error=reports.append,
        flush_interval=3600,
        handle_sigterm=False,
    )
    tracker.track(metric="api_calls", quantity=1, license_id="lic_a")
    assert not reports
    assert tracker.flush() is False
    assert any("DOOW_TRACK_API_KEY" in r.message for r in reports), reports
    tracker.shutdown()


def test_a_module_level_tracker_without_a_key_imports(local_doow: LocalDoow) -> None:
    done = _run(
        """
        from doow_otel import DoowTracker
        meter = DoowTracker(handle_sigterm=False)
        meter.track(metric="api_calls", quantity=1, license_id="lic_a")
        print("flushed", meter.flush(timeout=2))
        """,
        {"DOOW_TRACK_ENDPOINT": local_doow.url},
    )
    assert done.returncode == 0, done.stderr
    assert "flushed False" in done.stdout
    assert "DOOW_TRACK_API_KEY" in done.stderr


def test_a_key_with_surrounding_whitespace_is_stripped(
    local_doow: LocalDoow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOOW_TRACK_API_KEY", f"  {local_doow.api_key}\n")
    with DoowTracker(endpoint=local_doow.url, spool=tmp_path, handle_sigterm=False) as tracker:
        tracker.track(metric="api_calls", quantity=1, license_id="lic_a")
        assert tracker.flush()
    assert local_doow.total("api_calls") == 1


def test_an_unknown_home_falls_back_to_a_temp_spool(local_doow: LocalDoow, tmp_path: Path) -> None:
    done = _run(
        """
        import os
        os.environ.pop("HOME", None)
        import pwd
        def unknown(uid):
            raise KeyError(uid)
        pwd.getpwuid = unknown
        from doow_otel import DoowTracker
        meter = DoowTracker(handle_sigterm=False)
        print("spool", meter.client.spool.directory)
        meter.track(metric="api_calls", quantity=1, license_id="lic_a")
        print("flushed", meter.flush(timeout=5))
        """,
        {
            "DOOW_TRACK_ENDPOINT": local_doow.url,
            "DOOW_TRACK_API_KEY": local_doow.api_key,
            "TMPDIR": str(tmp_path),
        },
    )
    assert done.returncode == 0, done.stderr
    assert f"spool {tmp_path}" in done.stdout
    assert "flushed True" in done.stdout
    assert local_doow.total("api_calls") == 1


def test_disabled_never_fails_even_without_home_or_key(tmp_path: Path) -> None:
    done = _run(
        """
        import os
        os.environ.pop("HOME", None)
        import pwd
        def unknown(uid):
            raise KeyError(uid)
        pwd.getpwuid = unknown
        from doow_otel import DoowTracker
        meter = DoowTracker()
        meter.track(metric="api_calls", quantity=1, license_id="lic_a")
        print("flushed", meter.flush(timeout=2))
        meter.shutdown()
        """,
        {
            "DOOW_TRACK_DISABLED": "true",
            "DOOW_TRACK_ENDPOINT": "not a url",
            "TMPDIR": str(tmp_path),
        },
    )
    assert done.returncode == 0, done.stderr
    assert "flushed True" in done.stdout


def test_usage_tracked_after_shutdown_is_counted_and_reported_once(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    reports: list[ErrorReport] = []
    tracker = DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path,
        on_error=reports.append,
        handle_sigterm=False,
    )
    tracker.track(metric="api_calls", quantity=1, license_id="lic_a")
    tracker.shutdown()
    for _ in range(3):
        tracker.track(metric="api_calls", quantity=1, license_id="lic_a")
    assert tracker.dropped_after_shutdown == 3
    assert len([r for r in reports if "after the tracker shut down" in r.message]) == 1
    assert local_doow.total("api_calls") == 1


def test_a_span_that_cannot_be_encoded_costs_only_its_own_usage(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    reports: list[ErrorReport] = []
    provider = TracerProvider()
    tracker = DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path,
        tracer_provider=provider,
        on_error=reports.append,
        handle_sigterm=False,
    )
    tracer = provider.get_tracer("app")
    try:
        with tracer.start_as_current_span("llm") as bad:  # OTLP cannot carry 2**64
            bad.set_attributes({"gen_ai.usage.input_tokens": 2**64, "doow.license_id": "lic_a"})
        with tracer.start_as_current_span("export") as good:
            good.add_event(
                "doow.usage",
                {"doow.metric": "pages", "doow.quantity": 3, "doow.license_id": "lic_a"},
            )
        assert tracker.flush() is False  # something was not billed, and said so
    finally:
        tracker.shutdown()
        provider.shutdown()
    assert local_doow.total("pages", "lic_a") == 3
    assert any("int64" in r.message and "'llm'" in r.message for r in reports)


def test_disabled_never_fails_on_a_broken_environment(tmp_path: Path) -> None:
    done = _run(
        """
        from doow_otel import DoowTracker
        meter = DoowTracker()
        meter.track(metric="api_calls", quantity=1)  # the license from DOOW_LICENSE_ID
        print("flushed", meter.flush(timeout=2))
        """,
        {
            "DOOW_TRACK_DISABLED": "true",
            "DOOW_TRACK_ATTRIBUTION": "not json",
            "DOOW_TRACK_FLUSH_AT": "many",
            "DOOW_TRACK_FLUSH_INTERVAL": "-1",
            "DOOW_LICENSE_ID": "lic_env",
            "TMPDIR": str(tmp_path),
        },
    )
    assert done.returncode == 0, done.stderr
    assert "flushed True" in done.stdout
    assert "DOOW_TRACK_ATTRIBUTION" in done.stderr  # said, not raised


def test_a_broken_environment_still_fails_when_sending(tmp_path: Path) -> None:
    done = _run(
        "from doow_otel import DoowTracker\nDoowTracker()",
        {"DOOW_TRACK_ATTRIBUTION": "not json", "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 1
    assert "DOOW_TRACK_ATTRIBUTION must be a JSON object" in done.stderr


def test_exact_names_through_the_collector(local_doow: LocalDoow, tmp_path: Path) -> None:
    """The Go exporter reads the same `doow.metric`: names keep their case there too."""
    from helpers import Collector, require_otelcol, wait_for

    require_otelcol()
    (tmp_path / "queue").mkdir()
    collector = Collector(local_doow, tmp_path / "queue", tmp_path / "collector.log").start()
    tracker = DoowTracker(
        route="collector",
        collector_endpoint=collector.otlp_http,
        flush_interval=3600,
        handle_sigterm=False,
    )
    try:
        tracker.track(metric="Tokens", quantity=1, license_id="lic_a")
        tracker.track(metric="tokens", quantity=2, license_id="lic_a")
        tracker.track(metric="API_Calls", quantity=3, license_id="lic_a")
        assert tracker.flush()
        assert wait_for(lambda: local_doow.total("API_Calls") == 3)
        assert wait_for(lambda: local_doow.total("Tokens") == 1)
        assert local_doow.total("tokens") == 2
        assert local_doow.total("api_calls") == 0
    finally:
        tracker.shutdown()
        collector.stop()
