"""The API key never appears in a log line, exception text, repr, report or spool file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from doow_otel import DoowClient, UsageEvent
from doow_otel.errors import ErrorReport
from doow_otel.model.attribution import AttributionPolicy
from doow_otel_testing import LocalDoow

KEY = "dk_SECRET_canary_7f3a9c2e"


def test_key_never_leaks_on_any_error_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    reports: list[ErrorReport] = []
    texts: list[str] = []
    caplog.set_level(logging.DEBUG)
    spool = tmp_path / "spool"
    with LocalDoow(keys=[KEY]) as doow:
        client = DoowClient(
            KEY, endpoint=doow.url, spool=spool, on_error=reports.append, timeout=1.0, max_retries=1
        )
        texts.append(repr(client))
        sample = [UsageEvent(metric="m", quantity=1, license_id="lic", attribution={"k": KEY})]
        texts.append(repr(sample[0]))
        for status in (400, 429, 500, 503, 413):
            doow.faults.fail_next(3, status, retry_after="0")
            client.send([UsageEvent(metric="m", quantity=1, license_id="lic")], timeout=1.0)
        doow.faults.clear()
        doow.faults.drop_connection(3, when="before_body")
        client.send([UsageEvent(metric="m", quantity=1, license_id="lic")], timeout=1.0)
        doow.faults.clear()
        doow.faults.latency(2.0)
        client.send([UsageEvent(metric="m", quantity=1, license_id="lic")], timeout=0.3)
        doow.faults.clear()
        doow.revoke(KEY)
        client.send(sample)
        client.heartbeat()
        client.close()
    # a dead endpoint: connection refused
    dead = DoowClient(
        KEY,
        endpoint="http://127.0.0.1:9",
        spool=spool,
        on_error=reports.append,
        timeout=0.5,
        max_retries=1,
    )
    dead.send([UsageEvent(metric="m", quantity=1, license_id="lic")], timeout=0.5)
    dead.heartbeat(timeout=0.5)
    texts.append(repr(dead))
    dead.close()

    kinds = {r.kind for r in reports}
    assert {"validation", "rate_limited", "auth", "network", "timeout"} <= kinds
    texts += [f"{r}" for r in reports]
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.exc_info) for record in caplog.records if record.exc_info]
    out, err = capfd.readouterr()
    texts += [out, err]
    for path in spool.rglob("*"):
        if path.is_file():
            texts.append(path.read_text(errors="replace"))
    assert any(spool.rglob("*.batch")), "the spool should hold the undelivered batches"
    leaks = [t for t in texts if KEY in t]
    assert leaks == []


@pytest.mark.parametrize(
    "key",
    ["access_token", "refresh_token", "api_token", "session_token", "auth_token", "X-Auth-Token"],
)
def test_token_keys_are_stripped(key: str) -> None:
    assert AttributionPolicy().why_stripped(key, "abc") == "key names a secret"


@pytest.mark.parametrize(
    "key", ["input_tokens", "gen_ai.usage.output_tokens", "max_tokens", "llm.token_count.prompt"]
)
def test_token_counts_stay(key: str) -> None:
    assert AttributionPolicy().why_stripped(key, 512) is None


@pytest.mark.parametrize(
    "value",
    [
        "bearer xyz",
        "Basic dXNlcjpwYXNz",
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "postgres://app:hunter2@db.internal:5432/app",
        "sk-proj-AbCdEf0123456789xyz",
        "sk_live_51H8abcdEFGH",
        "ghp_0123456789abcdefghijABCDEFGHIJ",
        "xoxb-123456789012-abcdefgh",
        "AKIA0123456789ABCDEF",
    ],
)
def test_credential_values_are_stripped(value: str) -> None:
    assert AttributionPolicy().why_stripped("k", value) == "value looks like a credential"


@pytest.mark.parametrize(
    "value",
    [
        "basic plan",
        "Basic Auth",
        "Basic 5GB",
        "Basic 2024",
        "https://docs.example.com/a@b",
        "task-abcdefghijklmnop",
    ],
)
def test_ordinary_values_stay(value: str) -> None:
    assert AttributionPolicy().why_stripped("k", value) is None
