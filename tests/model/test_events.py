from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta, timezone

import pytest

from doow_otel import InvalidEvent, UsageEvent
from doow_otel.model.attribution import AttributionPolicy
from doow_otel.model.records import record_event
from doow_otel_testing.server.validation import check_wire_event


def event(**overrides: object) -> UsageEvent:
    fields: dict[str, object] = {"metric": "api_calls", "quantity": 1, "license_id": "lic_1"}
    fields.update(overrides)
    return UsageEvent(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("metric", "", "non-empty"),
        ("metric", "a" * 129, "at most 128"),
        ("metric", "api calls", "letters, digits"),
        ("quantity", True, "int or float"),
        ("quantity", "3", "int or float"),
        ("quantity", math.nan, "finite"),
        ("quantity", math.inf, "finite"),
        ("quantity", 0, "greater than 0"),
        ("quantity", -2, "greater than 0"),
        ("license_id", "", "non-empty"),
        ("license_id", "x" * 129, "at most 128"),
        ("kind", "usage-ish", "'USAGE' or 'ADJUSTMENT'"),
        ("attribution", {"a": [1]}, "str, int, float or bool"),
        ("attribution", {"a": math.nan}, "finite"),
        ("occurred_at", datetime(2026, 1, 1), "naive"),
        ("occurred_at", "yesterday", "RFC 3339"),
        ("event_id", "not-a-uuid", "not a UUID"),
    ],
)
def test_invalid_field_is_named_with_the_fix(field: str, value: object, needle: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        event(**{field: value})
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert needle in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_valid_event_on_the_wire() -> None:
    moment = datetime(2026, 11, 24, 10, 15, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    wire = event(quantity=2.5, unit="tokens", occurred_at=moment, attribution={"fn": "x"}).to_wire()
    assert wire["occurred_at"] == "2026-11-24T08:15:00.123Z"
    assert wire["measurements"] == [{"metric_name": "api_calls", "quantity": 2.5}]
    assert wire["unit"] == "tokens" and wire["kind"] == "USAGE" and wire["source_system"] == "sdk"
    assert check_wire_event(wire) is None


def test_adjustments_may_be_negative() -> None:
    assert event(kind="ADJUSTMENT", quantity=-3).quantity == -3


def test_a_record_takes_the_seed_shape_and_names_unknown_fields() -> None:
    now = datetime.now(timezone.utc)
    built = record_event(
        {"metric": "tokens", "quantity": 1024, "license_id": "lic_1", "attribution": {"f": "g"}},
        occurred_at=now,
    )
    assert built.attribution == {"f": "g"}
    with pytest.raises(InvalidEvent, match="^quantiy: is not a usage event field"):
        record_event({"metric": "m", "quantiy": 1, "license_id": "l"}, occurred_at=now)
    with pytest.raises(InvalidEvent, match="^license_id: is required"):
        record_event({"metric": "m", "quantity": 1}, occurred_at=now)


def test_secrets_are_stripped_reported_once_and_the_event_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "dk_live_0123456789abcdef"
    attrs = {
        "function": "summarise",
        "api_key": "whatever",
        "note": f"key={secret}",
        "auth": "Bearer abc.def",
        "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.sig",
        "aws": "AKIAABCDEFGHIJKLMNOP",
        "pem": "-----BEGIN RSA PRIVATE KEY-----",
        "body": "x" * 300,
        "input_tokens": 12,
    }
    assert event(attribution=attrs).attribution == {"function": "summarise", "input_tokens": 12}
    policy = AttributionPolicy()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="doow_otel"):
        policy.clean(attrs)
        policy.clean(attrs)
    stripped_logs = [r.getMessage() for r in caplog.records if "stripped" in r.getMessage()]
    assert len(stripped_logs) == 3  # once per reason, not once per key or per event
    assert sum(policy.stripped.values()) == 14  # every stripped key is counted
    assert not any(secret in r for r in stripped_logs)


def test_attribution_is_capped_at_64_keys() -> None:
    many = {f"k{i}": i for i in range(80)}
    assert len(event(attribution=many).attribution) == 64


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda w: w.pop("event_id"), "event_id"),
        (lambda w: w.pop("occurred_at"), "occurred_at"),
        (lambda w: w.update(measurements=[]), "at least one measurement"),
        (lambda w: w["measurements"][0].update(quantity=0), "greater than 0"),
        (lambda w: w.update(license_id=""), "license_id"),
    ],
)
def test_wire_check_names_the_field(mutate: object, needle: str) -> None:
    wire = event().to_wire()
    mutate(wire)  # type: ignore[operator]
    reason = check_wire_event(wire)
    assert reason is not None and needle in reason


def test_clean_values_are_searched_once_and_credentials_never_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Attribution values repeat from event to event: a value found clean is remembered (at
    most MAX_CLEAN_VALUES); one that looks like a credential is searched, and stripped,
    every time, and never remembered."""
    from doow_otel.model import secrets as module

    searched: list[str] = []
    patterns = module._SECRET_VALUE_RE

    class Counting:
        def search(self, value: str) -> object:
            searched.append(value)
            return patterns.search(value)

    monkeypatch.setattr(module, "_SECRET_VALUE_RE", Counting())
    monkeypatch.setattr(module, "_CLEAN_VALUES", set())
    policy = AttributionPolicy()
    secret = "Bearer abcdef0123456789"
    for _ in range(3):
        cleaned = policy.clean({"function": "summarise-x1", "note": secret})
        assert cleaned == {"function": "summarise-x1"}
    assert searched == ["summarise-x1", secret, secret, secret]
    assert secret not in module._CLEAN_VALUES
    assert sum(policy.stripped.values()) == 3

    monkeypatch.setattr(module, "MAX_CLEAN_VALUES", 10)
    for n in range(25):
        policy.clean({"function": f"fn-{n}"})
    assert len(module._CLEAN_VALUES) <= 10


@pytest.mark.parametrize(
    ("field", "fields"),
    [
        ("license_id", {"license_id": "lic_\ud800"}),
        ("unit", {"unit": "tokens\udfff"}),
        ("attribution", {"attribution": {"model": "a\ud800"}}),
        ("attribution", {"attribution": {"\udc00": "key"}}),
    ],
)
def test_text_no_json_body_can_carry_is_refused_when_the_event_is_made(
    field: str, fields: dict[str, object]
) -> None:
    """A lone surrogate is a str, but not UTF-8: accepted, it made the whole batch it was
    in unsendable (send() raised, the good events with it neither sent nor spooled)."""
    with pytest.raises(InvalidEvent) as caught:
        UsageEvent(**{"metric": "api_calls", "quantity": 1, "license_id": "lic_a", **fields})  # type: ignore[arg-type]
    assert caught.value.field == field
    assert "surrogate" in str(caught.value)


def test_an_occurred_at_given_as_text_is_a_datetime() -> None:
    """It stayed the string when already in UTC (a packed event of it then failed)."""
    moment = UsageEvent(
        metric="m", quantity=1, license_id="l", occurred_at="2026-11-24T10:15:00Z"
    ).occurred_at
    assert moment == datetime(2026, 11, 24, 10, 15, tzinfo=timezone.utc)
