"""DoowClient against the real local server: every row of the contract's table,
proven by what the server stored."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest

from doow_otel import DoowClient, UsageEvent
from doow_otel.errors import ConfigurationError, ErrorReport
from doow_otel_testing import LocalDoow


def events(n: int, metric: str = "api_calls", license_id: str = "lic_1") -> list[UsageEvent]:
    return [UsageEvent(metric=metric, quantity=1, license_id=license_id) for _ in range(n)]


@pytest.fixture
def reports() -> list[ErrorReport]:
    return []


@pytest.fixture
def client(local_doow: LocalDoow, tmp_path: Path, reports: list[ErrorReport]) -> DoowClient:
    c = DoowClient(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path / "spool",
        on_error=reports.append,
        timeout=5.0,
    )
    yield c  # type: ignore[misc]
    c.close()


# 1,200 events in one send (three batches in parallel): more than Doow's 1,000 a minute,
# which is not what this test is about: neither the server nor the client keeps a budget
@pytest.mark.local_doow(events_per_minute=0)
def test_202_delivers_in_500_event_gzip_batches(local_doow: LocalDoow, tmp_path: Path) -> None:
    client = DoowClient(
        local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "s", events_per_minute=10**5
    )
    result = client.send(events(1200))
    assert result.delivered == 1200 and result.ok
    assert local_doow.total("api_calls", "lic_1") == 1200
    posts = [r for r in local_doow.requests() if r["path"] == "/telemetry/events"]
    assert sorted(r["events"] for r in posts) == [200, 500, 500]  # sent in parallel
    assert all(r["content_encoding"] == "gzip" for r in posts)
    assert all(r["user_agent"].startswith("doow-otel-python/") for r in posts)
    assert all(r["sdk_version"] for r in posts)
    assert len(client.spool or []) == 0
    client.close()


def test_sends_keep_to_the_event_budget_and_the_rest_waits_its_turn(
    local_doow: LocalDoow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events, not requests, are the budget: what does not fit now is kept, counted as
    paced, and goes with a later send once the budget has room again."""
    client = DoowClient(
        local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "s", events_per_minute=600
    )
    assert client.send(events(500), timeout=0.5).delivered == 500
    result = client.send(events(110, metric="more"), timeout=0.5)
    assert result.delivered == 0 and result.paced == 110 and result.spooled == 110
    assert client.stats()["paced"] == 110
    assert local_doow.total("more") == 0
    later = time.time() + 63  # the 500 have left Doow's rolling minute (and the way there)
    monkeypatch.setattr("doow_otel.delivery.pacing.time.time", lambda: later)
    assert client.flush_spool(timeout=5).delivered == 110
    assert local_doow.total("more") == 110 and local_doow.total("api_calls") == 500
    client.close()


def test_one_connection_is_reused_across_sends(local_doow: LocalDoow, client: DoowClient) -> None:
    for _ in range(5):
        client.send(events(2))
    ports = {r["peer_port"] for r in local_doow.requests()}
    assert len(ports) == 1
    assert local_doow.total("api_calls") == 10


def test_207_rejected_events_are_reported_and_never_resent(
    local_doow: LocalDoow, client: DoowClient, reports: list[ErrorReport]
) -> None:
    sample = events(3)
    object.__setattr__(sample[1], "quantity", 0)  # an event Doow refuses, as if from an old SDK
    result = client.send(sample)
    assert result.delivered == 2
    assert [r.event_id for r in result.rejected] == [sample[1].event_id]
    assert "quantity" in result.rejected[0].reason
    assert [r.kind for r in reports] == ["partial_accept"]
    assert reports[0].rejections[0][0] == sample[1].event_id
    client.send([])
    assert local_doow.total("api_calls") == 2
    assert len(local_doow.requests()) == 1  # not resent


def test_400_is_permanent(
    local_doow: LocalDoow, client: DoowClient, reports: list[ErrorReport]
) -> None:
    local_doow.faults.fail_next(1, 400)
    result = client.send(events(4))
    assert result.dropped == 4 and result.delivered == 0
    assert len(local_doow.requests()) == 1
    assert reports[-1].kind == "validation" and reports[-1].status == 400
    assert len(client.spool or []) == 0


def test_401_stops_sending_keeps_events_and_reports_once(
    local_doow: LocalDoow, tmp_path: Path, reports: list[ErrorReport]
) -> None:
    bad = DoowClient(
        "dk_revoked_key_123", endpoint=local_doow.url, spool=tmp_path / "s", on_error=reports.append
    )
    first = bad.send(events(2))
    second = bad.send(events(3))
    assert first.spooled == 2 and second.spooled == 3
    assert len(local_doow.requests()) == 1  # stopped after the first 401
    assert [r.kind for r in reports] == ["auth"]
    assert bad.stats()["auth_latched"] == 1
    # a new key, set in-process, clears the latch at once and takes the spooled usage along
    bad.set_api_key(local_doow.api_key)
    replay = bad.send([])
    assert replay.delivered == 5 and replay.replayed == 5
    assert local_doow.total("api_calls") == 5
    assert bad.stats()["replayed"] == 5 and bad.stats()["auth_latched"] == 0
    bad.close()


def test_set_api_key_is_validated_like_the_constructor(client: DoowClient) -> None:
    with pytest.raises(ConfigurationError, match="^api_key: .*dk_") as caught:
        client.set_api_key("sk_live_secretvalue")
    assert "secretvalue" not in str(caught.value)


def test_413_splits_the_batch(local_doow: LocalDoow, client: DoowClient) -> None:
    local_doow.faults.max_body(4000)
    sample = events(120)
    result = client.send(sample)
    assert result.delivered == 120
    assert local_doow.total("api_calls") == 120
    assert local_doow.stats()["duplicates"] == 0
    statuses = [r["status"] for r in local_doow.requests()]
    assert 413 in statuses and statuses[-1] == 202


@pytest.mark.parametrize("how", ["seconds", "http-date"])
def test_429_waits_as_told(local_doow: LocalDoow, client: DoowClient, how: str) -> None:
    retry_after = (
        "1"
        if how == "seconds"
        else format_datetime(datetime.now(timezone.utc) + timedelta(seconds=2), usegmt=True)
    )
    local_doow.faults.fail_next(1, 429, retry_after=retry_after)
    started = time.monotonic()
    result = client.send(events(3))
    assert result.delivered == 3
    assert time.monotonic() - started >= 0.9
    assert local_doow.total("api_calls") == 3


def test_429_rate_limits_header_is_honoured(
    local_doow: LocalDoow, client: DoowClient, reports: list[ErrorReport]
) -> None:
    local_doow.faults.fail_next(
        1, 429, rate_limits={"events": {"limit": 10, "current": 11, "retry_after": 1}}
    )
    started = time.monotonic()
    assert client.send(events(1)).delivered == 1
    assert time.monotonic() - started >= 0.9
    assert any(r.kind == "rate_limited" for r in reports)


def test_429_longer_than_the_deadline_spools(local_doow: LocalDoow, client: DoowClient) -> None:
    local_doow.faults.fail_next(1, 429, retry_after="30")
    result = client.send(events(2), timeout=1.0)
    assert result.spooled == 2
    assert local_doow.total("api_calls") == 0


def test_5xx_is_retried_with_backoff(local_doow: LocalDoow, client: DoowClient) -> None:
    local_doow.faults.fail_next(2, 503)
    result = client.send(events(7))
    assert result.delivered == 7
    assert [r["status"] for r in local_doow.requests()] == [503, 503, 202]
    assert local_doow.total("api_calls") == 7


@pytest.mark.parametrize("when", ["before_body", "after_body"])
def test_dropped_connection_is_retried_and_counted_once(
    local_doow: LocalDoow, client: DoowClient, when: str
) -> None:
    local_doow.faults.drop_connection(1, when=when)
    result = client.send(events(5))
    assert result.delivered == 5
    assert local_doow.total("api_calls") == 5  # after_body: stored, resent, deduplicated
    if when == "after_body":
        assert local_doow.stats()["duplicates"] == 5


def test_deadline_is_a_hard_bound_and_the_rest_is_replayed_exactly_once(
    local_doow: LocalDoow, client: DoowClient
) -> None:
    local_doow.faults.latency(3.0)
    started = time.monotonic()
    result = client.send(events(6), timeout=0.5)
    assert time.monotonic() - started < 1.5  # bounded by the deadline, not the server
    assert result.spooled == 6 and result.delivered == 0
    local_doow.faults.clear()
    time.sleep(3.0)  # let the slow request the client gave up on finish server-side
    later = client.send(events(1, metric="later"))
    assert later.replayed == 6
    assert local_doow.total("api_calls") == 6
    assert local_doow.total("later") == 1


def test_no_spool_means_counted_drops(local_doow: LocalDoow, reports: list[ErrorReport]) -> None:
    local_doow.faults.fail_next(100, 503)
    c = DoowClient(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=None,
        on_error=reports.append,
        max_retries=1,
    )
    result = c.send(events(3))
    assert result.dropped == 3
    assert any(r.kind == "dropped" and r.count == 3 for r in reports)
    assert c.stats()["dropped"] == 3
    c.close()


def test_https_required_except_loopback() -> None:
    with pytest.raises(ConfigurationError, match="endpoint: .*https"):
        DoowClient("dk_x_123456", endpoint="http://ingest.example.com", spool=None)
    DoowClient("dk_x_123456", endpoint="http://ingest.example.com", spool=None, allow_insecure=True)
    DoowClient("dk_x_123456", endpoint="http://127.0.0.1:9", spool=None)


def test_missing_or_malformed_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOOW_TRACK_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="^api_key: .*DOOW_TRACK_API_KEY"):
        DoowClient(spool=None)
    with pytest.raises(ConfigurationError, match="dk_") as caught:
        DoowClient("sk_live_secretvalue", spool=None)
    assert "secretvalue" not in str(caught.value)
    for pasted in ("dk_live_secr\u00e9t", "dk_live_sec\tret", "dk_live_\u200bsecret"):
        # no header can carry it: refused here, not a network failure at every send
        with pytest.raises(ConfigurationError, match="printable ASCII") as caught:
            DoowClient(pasted, spool=None)
        assert "secr" not in str(caught.value)
    monkeypatch.setenv("DOOW_TRACK_DISABLED", "true")
    disabled = DoowClient(spool=None)
    assert disabled.send(events(2)).skipped == 2


def test_explicit_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOOW_TRACK_API_KEY", "dk_from_env_123")
    monkeypatch.setenv("DOOW_TRACK_ENDPOINT", "https://env.example.com")
    c = DoowClient(endpoint="https://explicit.example.com", spool=None)
    assert c.endpoint == "https://explicit.example.com"
    assert DoowClient(spool=None).endpoint == "https://env.example.com"


@pytest.mark.local_doow(events_per_minute=0)
def test_a_send_that_keeps_several_batches_says_so_once(
    local_doow: LocalDoow, tmp_path: Path, reports: list[ErrorReport]
) -> None:
    """Four batches held by one outage (a serverless flush that ran out of time): one
    report of the four, not one per batch (issue 26: four "next attempt would pass the
    deadline" lines in one invocation)."""
    local_doow.faults.fail_next(1000, 503)
    client = DoowClient(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path / "s",
        on_error=reports.append,
        events_per_minute=10**5,
    )
    result = client.send(events(1600), timeout=1.5)
    assert result.spooled == 1600
    said = [r for r in reports if r.kind in ("timeout", "network")]
    assert len(said) == 1, [r.message for r in said]
    assert said[0].count == 1600 and "1600 events kept in the spool" in said[0].message
    client.close()
