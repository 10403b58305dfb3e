"""User-facing messages say each thing once, with the count's noun agreeing with it, the
fix included and never the key (issue 26). Pinned here; the CLI's lines in test_cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from doow_otel import DoowClient, UsageEvent
from doow_otel.delivery.spool import Spool
from doow_otel.delivery.wire import make_batches
from doow_otel.errors import ErrorReport, counted
from doow_otel.otel.conversion import ConversionOptions, convert_log_records
from doow_otel_testing import LocalDoow


@pytest.mark.parametrize(
    ("n", "noun", "said"),
    [(1, "event", "1 event"), (2, "event", "2 events"), (1, "batch", "1 batch"),
     (3, "batch", "3 batches"), (1, "usage record", "1 usage record"), (0, "event", "0 events")],
)  # fmt: skip
def test_counted_agrees_with_its_number(n: int, noun: str, said: str) -> None:
    assert counted(n, noun) == said


def test_one_event_kept_is_said_in_the_singular(tmp_path: Path) -> None:
    with LocalDoow() as doow:
        url, key = doow.url, doow.api_key  # stopped: nothing answers
    reports: list[ErrorReport] = []
    with DoowClient(key, endpoint=url, spool=tmp_path, on_error=reports.append,
                    max_retries=0) as client:  # fmt: skip
        assert client.send([UsageEvent(metric="m", quantity=1, license_id="l")]).spooled == 1
    text = " ".join(r.message for r in reports)
    assert "1 event kept in the spool" in text and "1 events" not in text
    assert key not in text


def test_the_spool_note_about_another_owner_says_what_to_run(tmp_path: Path) -> None:
    writer = Spool(tmp_path)
    writer.bind("https://api.doow.co", "dk_old_key_0123456789")
    writer.write(make_batches([UsageEvent(metric="m", quantity=1, license_id="l")])[0],
                 durable=True)  # fmt: skip
    heard: list[str] = []
    reader = Spool(tmp_path)
    reader.bind("https://api.doow.co", "dk_new_key_0123456789")
    reader.report = lambda kind, message, **_: heard.append(message)  # type: ignore[assignment,method-assign]
    reader.paths()
    reader.paths()  # said once per process
    assert heard == [
        f"1 batch of usage in {tmp_path} was written with another endpoint or API key and will "
        "not be sent with this one. To see whose: doow-otel spool. If it is yours: doow-otel "
        "spool adopt (sends it with the current key and endpoint); if not: doow-otel spool "
        "set-aside"
    ]
    (other,) = [o for o in reader.owners() if not o.mine]
    assert (
        other.endpoint == "https://api.doow.co" and other.key_prefix == "dk_old_…"
    )  # 21 characters: 7


def test_one_bad_usage_record_is_said_in_the_singular() -> None:
    conversion = convert_log_records([], ConversionOptions(default_license_id="lic_default"))
    assert conversion.describe("not_json", 1).startswith("1 usage record not billed (not_json)")
    assert conversion.describe("not_json", 2).startswith("2 usage records not billed (not_json)")
