"""track()'s remembered checks (issue 13): fields checked once are not checked again, yet
what is recorded is always what the caller passed, with its types, and every bad value
is still refused. Delivery is judged by what the local server stored."""

from __future__ import annotations

import pytest

from doow_otel import InvalidEvent
from doow_otel.tracker import DoowTracker
from doow_otel_testing import LocalDoow


def _attribution(local_doow: LocalDoow, metric: str) -> list[dict[str, object]]:
    return [event["attribution"] for event in local_doow.events(metric=metric)]


def test_attribution_changed_in_place_is_recorded_as_it_is_now(
    local_doow: LocalDoow, meter: DoowTracker
) -> None:
    attribution = {"model": "small"}
    meter.track(metric="tokens", quantity=1, license_id="lic_a", attribution=attribution)
    attribution["model"] = "large"
    meter.track(metric="tokens", quantity=2, license_id="lic_a", attribution=attribution)
    assert meter.flush()
    totals = {row["model"]: row["total"] for row in local_doow.usage(metric="tokens", by="model")}
    assert totals == {"small": 1, "large": 2}


def test_attribution_made_bad_in_place_is_refused(meter: DoowTracker) -> None:
    attribution: dict[str, object] = {"model": "small"}
    meter.track(metric="tokens", quantity=1, license_id="lic_a", attribution=attribution)
    for bad in ([1], float("nan")):
        attribution["model"] = bad
        with pytest.raises(InvalidEvent) as caught:
            meter.track(metric="tokens", quantity=1, license_id="lic_a", attribution=attribution)
        assert caught.value.field == "attribution"
    attribution["model"] = "small"
    attribution["doow.license_id"] = "lic_b"
    with pytest.raises(InvalidEvent, match="reserved"):
        meter.track(metric="tokens", quantity=1, license_id="lic_a", attribution=attribution)


def test_a_bad_quantity_is_refused_after_good_calls(meter: DoowTracker) -> None:
    for quantity in (-1, 2**63, float("inf"), float("nan"), True):  # zero: no error
        meter.track(metric="tokens", quantity=1, license_id="lic_a", attribution={"m": "a"})
        with pytest.raises(InvalidEvent) as caught:
            meter.track(
                metric="tokens", quantity=quantity, license_id="lic_a", attribution={"m": "a"}
            )
        assert caught.value.field == "quantity"


def test_equal_values_of_other_types_keep_their_own_type(
    local_doow: LocalDoow, meter: DoowTracker
) -> None:
    # 1 == 1.0 == True: a check remembered for one must not record it in place of another
    for value in (1, True, 1.0):
        meter.track(metric="calls", quantity=1, license_id="lic_a", attribution={"n": value})
        assert meter.flush()
    values = [attribution["n"] for attribution in _attribution(local_doow, "calls")]
    assert sorted(map(repr, values)) == ["1", "1.0", "True"]


def test_equal_values_in_another_key_order_keep_their_own_types(
    local_doow: LocalDoow, meter: DoowTracker
) -> None:
    # {"a": 1, "b": True} == {"b": 1, "a": True}: types compared key by key, not by place
    meter.track(metric="calls", quantity=1, license_id="lic_a", attribution={"a": 1, "b": True})
    assert meter.flush()
    meter.track(metric="calls", quantity=1, license_id="lic_a", attribution={"b": 1, "a": True})
    assert meter.flush()
    recorded = sorted(
        sorted((k, repr(v)) for k, v in attribution.items())
        for attribution in _attribution(local_doow, "calls")
    )
    assert recorded == [[("a", "1"), ("b", "True")], [("a", "True"), ("b", "1")]]


def test_a_float_past_int64_does_not_vouch_for_an_equal_int(meter: DoowTracker) -> None:
    meter.track(metric="calls", quantity=1, license_id="lic_a", attribution={"n": 2.0**63})
    with pytest.raises(InvalidEvent) as caught:
        meter.track(metric="calls", quantity=1, license_id="lic_a", attribution={"n": 2**63})
    assert caught.value.field == "attribution"


def test_stripped_attribution_is_stripped_and_counted_at_every_call(
    local_doow: LocalDoow, meter: DoowTracker
) -> None:
    for _ in range(3):
        meter.track(
            metric="calls",
            quantity=1,
            license_id="lic_a",
            attribution={"api_key": "sk-live", "model": "small"},
        )
    assert sum(meter.policy.stripped.values()) == 3
    assert meter.flush()
    assert _attribution(local_doow, "calls") == [{"model": "small"}]


def test_alternating_fields_are_each_recorded(local_doow: LocalDoow, meter: DoowTracker) -> None:
    for i in range(40):
        meter.track(
            metric="tokens" if i % 4 < 2 else "Tokens",
            quantity=1,
            license_id=f"lic_{i % 2}",
            attribution=None if i % 5 == 0 else {"model": "ab"[i % 3 % 2]},
        )
    assert meter.flush()
    assert sum(local_doow.total(metric) for metric in ("tokens", "Tokens")) == 40
    for metric in ("tokens", "Tokens"):
        for license_id in ("lic_0", "lic_1"):
            expected = sum(
                1
                for i in range(40)
                if (i % 4 < 2) == (metric == "tokens") and f"lic_{i % 2}" == license_id
            )
            assert local_doow.total(metric, license_id) == expected
    models: dict[str, int] = {}
    for metric in ("tokens", "Tokens"):
        for row in local_doow.usage(metric=metric, by="model"):
            if row["model"] is not None:
                models[row["model"]] = models.get(row["model"], 0) + row["total"]
    assert models == {
        "a": sum(1 for i in range(40) if i % 5 and i % 3 % 2 == 0),
        "b": sum(1 for i in range(40) if i % 5 and i % 3 % 2 == 1),
    }
