"""Two edges of DoowTracker (issue 25), judged by what the local server stored: more
attribution sets in a window than `max_routes` (cardinality overflow), and a long outage
while usage keeps coming."""

from __future__ import annotations

from pathlib import Path

from doow_otel import DoowClient
from doow_otel.errors import ErrorReport
from doow_otel.tracker import DoowTracker
from doow_otel_testing import LocalDoow


def test_past_max_routes_attribution_folds_and_every_unit_is_billed(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """Past the route limit the attribution folds (to doow.folded=true); the license,
    metric and unit stay, so every unit is billed to its license, and the report says how
    much was folded, in the usage's own units."""
    reports: list[ErrorReport] = []
    tracker = DoowTracker(
        local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "spool",
        flush_interval=3600, handle_sigterm=False, max_routes=4, on_error=reports.append,
    )  # fmt: skip
    for user in range(50):
        attribution = {"user": f"u{user}"}
        tracker.track(metric="api_calls", quantity=2, license_id="lic_a", attribution=attribution)
        tracker.track(
            metric="tokens", quantity=100, unit="tokens", license_id="lic_b",
            attribution=attribution,
        )  # fmt: skip
    for user in range(10, 50):  # the same folded attribution sets again: calls, not sets
        tracker.track(
            metric="api_calls", quantity=2, license_id="lic_a", attribution={"user": f"u{user}"}
        )
    assert tracker.flush()
    assert local_doow.total("api_calls", "lic_a") == 180
    assert local_doow.total("tokens", "lic_b") == 5000
    folded = {
        (e["license_id"], e["metric"], e["unit"]): e["quantity"]
        for e in local_doow.events(limit=1000)
        if e["attribution"] == {"doow.folded": True}
    }
    # the first 4 routes (u0 and u1 of each license) kept their attribution
    assert folded == {("lic_a", "api_calls", None): 176, ("lic_b", "tokens", "tokens"): 4800}
    (said,) = [r for r in reports if "doow.folded" in r.message]
    assert "176 api_calls" in said.message and "4800 tokens tokens" in said.message
    assert "nothing is lost" in said.message
    # a fold is no loss: its own kind, counting the attribution sets folded (48 + 48)
    assert said.kind == "folded" and said.count == 96
    assert "96 attribution sets (136 usage calls)" in said.message
    assert tracker.stats()["folded"] == 136
    tracker.shutdown()


def test_a_long_outage_grows_the_window_instead_of_queueing_one_per_window(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """Doow down for many windows while usage keeps coming: the first window's events wait
    in the spool, and from then on the open window grows (one sum per route) instead of
    adding a spool entry per window; nothing is dropped, and the first flush after the
    outage delivers every unit once."""
    spool = tmp_path / "spool"
    reports: list[ErrorReport] = []
    client = DoowClient(
        local_doow.api_key, endpoint=local_doow.url, spool=spool, max_retries=0,
        on_error=reports.append,
    )  # fmt: skip
    tracker = DoowTracker(client=client, flush_interval=3600, handle_sigterm=False)
    local_doow.faults.fail_next(1_000_000, 503)
    licenses = [f"lic_{n}" for n in range(5)]
    for _ in range(30):  # thirty windows of outage: each flush is a window's end
        for license_id in licenses:
            for _ in range(20):
                tracker.track(metric="api_calls", quantity=1, license_id=license_id)
        assert tracker.flush()  # kept on disk: the spool and the journal
        assert len(list(spool.glob("*.batch"))) <= 1
    stats = tracker.stats()
    assert stats["windows_sealed"] == 1 and stats["windows_extended"] == 29
    local_doow.faults.clear()
    assert tracker.flush()
    assert tracker.flush()  # the grown window, once the first is delivered
    for license_id in licenses:
        assert local_doow.total("api_calls", license_id) == 600
    assert len(local_doow.events()) == 10  # two windows of five streams, not thirty
    assert not [r for r in reports if r.kind == "dropped"]
    assert not list(spool.glob("*.batch"))
    tracker.shutdown()
    client.close()
