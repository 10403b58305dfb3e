"""Doow's own Python SDK (doow-track 0.1.2 from PyPI) sends to the local server: the
server accepts what Doow's clients send, with the right totals."""

from __future__ import annotations

import pytest

from doow_otel_testing import LocalDoow

doow_track = pytest.importorskip("doow_track")


def test_doow_track_events_arrive_with_the_right_totals(
    local_doow: LocalDoow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOOW_TRACK_ENDPOINT", raising=False)
    options = doow_track.TrackerOptions(
        endpoint=local_doow.url, flush_at=1000, flush_interval=3600.0
    )
    tracker = doow_track.Tracker(local_doow.api_key, options)
    try:
        for i in range(30):  # above 1 KB: doow-track gzips the batch
            tracker.track(
                doow_track.TrackEvent(
                    metric="api_calls",
                    quantity=2,
                    license_id=f"lic_{i % 3}",
                    attribution={"function": "summarize"},
                )
            )
        tracker.track(
            doow_track.TrackEvent(metric="tokens", quantity=1.5, license_id="lic_0", unit="tokens")
        )
        tracker.flush()
    finally:
        tracker.shutdown()
    assert local_doow.total("api_calls") == 60
    assert [local_doow.total("api_calls", f"lic_{i}") for i in range(3)] == [20, 20, 20]
    assert local_doow.total("tokens", "lic_0") == 1.5
    (post,) = [r for r in local_doow.requests() if r["path"] == "/telemetry/events"]
    assert post["status"] == 202 and post["content_encoding"] == "gzip"
    assert post["user_agent"].startswith("doow-track-python/")
    assert local_doow.stats()["rejected"] == 0
