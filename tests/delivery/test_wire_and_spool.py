from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from doow_otel import UsageEvent
from doow_otel.delivery.reports import Reporter
from doow_otel.delivery.spool import Spool, default_spool_dir
from doow_otel.delivery.wire import MAX_BATCH_BYTES, Batch, compress, make_batches
from doow_otel.errors import ErrorReport


def events(n: int, **extra: object) -> list[UsageEvent]:
    return [
        UsageEvent(metric="api_calls", quantity=i + 1, license_id="lic_1", **extra)  # type: ignore[arg-type]
        for i in range(n)
    ]


def test_batches_hold_at_most_500_events_and_keep_every_event() -> None:
    sample = events(1201)
    batches = make_batches(sample)
    assert [len(b) for b in batches] == [500, 500, 201]
    ids = [eid for b in batches for eid in b.event_ids]
    assert ids == [e.event_id for e in sample]


def test_batches_stay_under_450_kb() -> None:
    big = events(300, attribution={f"k{i}": "v" * 250 for i in range(10)})
    batches = make_batches(big)
    assert len(batches) > 1
    assert all(len(b.body()) <= MAX_BATCH_BYTES + 200 for b in batches)
    assert sum(len(b) for b in batches) == 300


def test_batch_id_is_derived_from_its_events() -> None:
    sample = events(3)
    first, again = make_batches(sample)[0], make_batches(sample)[0]
    assert first.batch_id == again.batch_id
    assert make_batches(events(3))[0].batch_id != first.batch_id
    body = json.loads(first.body())
    assert body["batch_id"] == first.batch_id
    assert [e["event_id"] for e in body["events"]] == [e.event_id for e in sample]


def test_halves_split_evenly_with_their_own_stable_ids() -> None:
    batch = make_batches(events(5))[0]
    left, right = batch.halves()
    assert len(left) + len(right) == 5
    assert left.event_ids + right.event_ids == batch.event_ids
    assert left.batch_id != batch.batch_id
    assert left.halves()[0].batch_id == batch.halves()[0].halves()[0].batch_id  # deterministic


def test_gzip_above_one_kilobyte_only() -> None:
    small = make_batches(events(1))[0].body()
    assert compress(small) == (small, None)
    large = make_batches(events(50))[0].body()
    packed, encoding = compress(large)
    assert encoding == "gzip" and gzip.decompress(packed) == large


def test_spool_round_trip_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first, second = make_batches(events(2))[0], make_batches(events(3))[0]
    spool.write(first, durable=True)
    spool.write(second, durable=False)
    loaded = [spool.load(p) for p in spool.paths()]
    assert [e.batch.batch_id for e in loaded if e] == [first.batch_id, second.batch_id]
    assert loaded[0] is not None and loaded[0].batch.body() == first.body()


def test_corrupt_entry_is_set_aside_and_reported(tmp_path: Path) -> None:
    reports: list[ErrorReport] = []
    spool = Spool(tmp_path, report=Reporter(reports.append))
    good = spool.write(make_batches(events(1))[0], durable=True)
    bad = tmp_path / "00000000000000000001-broken.batch"
    bad.write_bytes(b'{"batch_id": "x", "events": [')  # killed mid-write
    assert spool.load(bad) is None
    assert spool.paths() == [good]
    assert (tmp_path / "corrupt" / bad.name).exists()
    assert reports and reports[0].kind == "dropped" and "set aside" in reports[0].message


def test_full_spool_drops_oldest_and_reports_count(tmp_path: Path) -> None:
    reports: list[ErrorReport] = []
    spool = Spool(tmp_path, max_batches=2, report=Reporter(reports.append))
    batches = [make_batches(events(n))[0] for n in (1, 2, 3)]
    for batch in batches:
        spool.write(batch, durable=False)
    kept = [spool.load(p) for p in spool.paths()]
    assert [e.batch.batch_id for e in kept if e] == [b.batch_id for b in batches[1:]]
    assert [r.count for r in reports] == [1]


def test_spool_bounded_by_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=3000, report=Reporter(lambda r: None))
    for _ in range(5):
        spool.write(make_batches(events(5))[0], durable=False)
    assert sum(p.stat().st_size for p in spool.paths()) <= 3000


def test_default_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DOOW_SPOOL_DIR", raising=False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fn")
    assert default_spool_dir() == Path("/tmp/doow-spool")
    monkeypatch.setenv("DOOW_SPOOL_DIR", str(tmp_path))
    assert default_spool_dir() == tmp_path
    monkeypatch.delenv("DOOW_SPOOL_DIR")
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_spool_dir() == tmp_path / "doow-otel" / "spool"


def test_batch_from_body_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        Batch.from_body(b"[1, 2]")


def test_entry_names_carry_a_salted_owner_never_the_key(tmp_path: Path) -> None:
    key = "dk_live_abcdefghijklmnop"
    spool = Spool(tmp_path)
    spool.bind("https://api.doow.co", key)
    path = spool.write(make_batches(events(1))[0], durable=True)
    other = Spool(tmp_path)
    other.bind("https://api.doow.co", "dk_live_other_key_123")
    assert other.paths() == [] and other.others() == 1
    again = Spool(tmp_path)
    again.bind("https://api.doow.co", key)
    assert again.paths() == [path]  # the same owner in a later process (the salt is kept)
    files = [file for file in tmp_path.rglob("*") if file.is_file()]
    assert any(file.parent.name == ".owners" for file in files)  # whose: a prefix of the key
    for file in files:
        assert key not in file.name and key.encode() not in file.read_bytes()


def test_rebind_takes_the_entries_to_the_new_key(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.bind("https://api.doow.co", "dk_old_123456")
    spool.write(make_batches(events(2))[0], durable=False)
    spool.rebind("https://api.doow.co", "dk_new_123456")
    fresh = Spool(tmp_path)
    fresh.bind("https://api.doow.co", "dk_new_123456")
    assert len(fresh) == 1 and fresh.others() == 0


def test_attempts_are_kept_with_the_entry(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    path = spool.write(make_batches(events(1))[0], durable=False)
    path = spool.record_attempt(spool.record_attempt(path))
    entry = Spool(tmp_path).load(path)
    assert entry is not None and entry.attempts == 2 and entry.created_ns > 0


def test_a_failed_write_keeps_the_batch_in_memory_and_no_temporary(tmp_path: Path) -> None:
    reports: list[ErrorReport] = []
    target = tmp_path / "spool"
    target.write_text("a file where the directory should be")
    spool = Spool(target, report=Reporter(reports.append))
    batch = make_batches(events(2))[0]
    path = spool.write(batch, durable=True)
    spool.write(make_batches(events(1))[0], durable=False)
    entry = spool.load(path)
    assert entry is not None and entry.batch.body() == batch.body()
    assert len(spool) == 2
    assert len(reports) == 1 and "spool problem" in reports[0].message
    assert [p.name for p in tmp_path.iterdir()] == ["spool"]


def test_the_journal_holds_the_bytes_that_are_posted(tmp_path: Path) -> None:
    batch = make_batches(events(3))[0]
    path = Spool(tmp_path).write(batch, durable=False)
    assert batch.body() is batch.body()  # made once: journaled and posted alike
    assert path.read_bytes() == batch.body()


def test_a_journal_write_reads_no_entry_size_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each write checks the spool's bounds; a size once known is not read again (a
    spool holding a backlog would otherwise cost a stat per entry per batch)."""
    spool = Spool(tmp_path)
    for n in range(1, 11):
        spool.write(make_batches(events(n))[0], durable=False)
    read: list[str] = []
    stat = Path.stat

    def counting(self: Path, **kwargs: object) -> object:
        if self.name.endswith(".batch"):
            read.append(self.name)
        return stat(self, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "stat", counting)
    spool.write(make_batches(events(11))[0], durable=False)
    assert read == []
    assert len(spool.paths()) == 11


def test_the_byte_bound_holds_when_several_entries_must_go(tmp_path: Path) -> None:
    """Entries another writer made (sizes this spool never wrote) count, and as many of
    the oldest go as the bound needs (each dropped batch counted)."""
    other = Spool(tmp_path)  # another process's client, on the same spool and owner
    for _ in range(4):
        other.write(make_batches(events(5))[0], durable=False)
    reports: list[ErrorReport] = []
    spool = Spool(tmp_path, max_bytes=3000, report=Reporter(reports.append))
    spool.write(make_batches(events(5))[0], durable=False)
    kept = spool.paths()
    assert sum(p.stat().st_size for p in kept) <= 3000
    assert sum(r.count or 0 for r in reports) == 5 * (5 - len(kept))
