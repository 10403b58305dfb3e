"""The local server's SQLite database: what was accepted, rejected and deduplicated.

Every statement takes its values as parameters. One connection guarded by a lock: the
server's work per request is parsing and validation, done outside the lock; the lock
covers only the short write transaction that checks and records event ids, so two
concurrent copies of one batch can never both be counted.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from doow_otel.model.times import format_time

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id BLOB NOT NULL,
    position INTEGER NOT NULL,
    batch_id TEXT,
    license_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    quantity NUMERIC NOT NULL,
    unit TEXT,
    kind TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    source TEXT NOT NULL,
    attribution TEXT NOT NULL,
    metadata TEXT NOT NULL,
    UNIQUE (event_id, position)
);
CREATE INDEX IF NOT EXISTS events_by_metric ON events (metric, license_id);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    accepted INTEGER NOT NULL,
    rejections TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejections (
    seq INTEGER PRIMARY KEY,
    event_id TEXT,
    reason TEXT NOT NULL,
    received_at TEXT NOT NULL,
    license_id TEXT,
    measurements TEXT,
    batch_id TEXT
);
CREATE TABLE IF NOT EXISTS refusals (
    seq INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    status INTEGER NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    key_prefix TEXT,
    reason TEXT NOT NULL,
    fix TEXT NOT NULL,
    events INTEGER
);
CREATE TABLE IF NOT EXISTS minutes (
    key TEXT NOT NULL,
    minute TEXT NOT NULL,
    offered INTEGER NOT NULL DEFAULT 0,
    stored INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    refused INTEGER NOT NULL DEFAULT 0,
    rate_limited_requests INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key, minute)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS keys (fingerprint TEXT PRIMARY KEY, last_used_at TEXT NOT NULL);
"""

MAX_PAGE = 1000
MINUTE_COUNTS = ("offered", "stored", "duplicates", "refused", "rate_limited_requests", "requests")
MAX_QUANTITY = 2**63 - 1  # SQLite's integers are 64-bit; the handler rejects beyond
MIN_QUANTITY = -MAX_QUANTITY  # symmetric, as the SDK checks it
# SQLite's SUM raises "integer overflow" past 64 bits and TOTAL is a float. Integers are
# summed exactly as a high and a low 32-bit half (each half's sum fits for 2^31 rows)
# and joined in Python; real quantities are summed apart.
EXACT_SUM = (
    "SUM(CASE WHEN typeof(quantity) = 'integer' THEN quantity >> 32 END), "
    "SUM(CASE WHEN typeof(quantity) = 'integer' THEN quantity & 4294967295 END), "
    "TOTAL(CASE WHEN typeof(quantity) = 'real' THEN quantity END), "
    "COUNT(CASE WHEN typeof(quantity) = 'real' THEN 1 END)"
)
INSERT_EVENT = (
    "INSERT OR IGNORE INTO events (event_id, position, batch_id, metric, quantity, license_id, "
    "unit, kind, occurred_at, received_at, source, attribution, metadata) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_encode = json.JSONEncoder(separators=(",", ":")).encode


@dataclass
class Outcome:
    """What the server answers for one batch."""

    accepted: int
    rejections: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    batch_id: str | None = None


def fingerprint(api_key: str) -> str:
    """What the database keeps of a key: never the key itself."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def _now() -> str:
    return format_time(datetime.now(timezone.utc))


def _exact_total(high: int | None, low: int | None, real: float, reals: int) -> int | float:
    """Join EXACT_SUM's columns: an exact integer unless some quantity was a real."""
    whole = ((high or 0) << 32) + (low or 0)
    return whole + real if reals else whole


def _summary(event: Any) -> tuple[str | None, str | None]:
    """What a rejected event said it was (its license and measurements), as far as it
    was readable: the page shows the metric, license and quantity beside the reason."""
    if not isinstance(event, Mapping):
        return None, None
    license_id = event.get("license_id")
    measurements = event.get("measurements")
    kept = []
    if isinstance(measurements, list):
        for m in measurements[:100]:
            if isinstance(m, Mapping):
                kept.append(
                    {
                        "metric_name": _shown(m.get("metric_name")),
                        "quantity": _shown(m.get("quantity")),
                    }
                )
    elif "metric" in event:  # the Node SDK's top-level copy, when measurements are missing
        kept.append(
            {"metric_name": _shown(event.get("metric")), "quantity": _shown(event.get("quantity"))}
        )
    return (
        _shown(license_id) if license_id is not None else None,
        _encode(kept) if kept else None,
    )


def _shown(value: Any) -> Any:
    """A sent value as the page may show it: numbers and short strings as they are,
    anything else as its JSON text, cut to 200 characters."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return value if abs(value) <= MAX_QUANTITY else str(value)
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:200]


def _reason_class(reason: str) -> str:
    """Group rejection reasons by field for the stats ("quantity", "license_id", ...)."""
    head = reason.split(":", 1)[0]
    return head.split("[", 1)[0] if "." not in head else head.split(".", 1)[1]


NICE_BUCKETS = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    604800,
    2592000,
)


def _nice_bucket(span: int, most: int = 120, least: int = 1) -> int:
    """The smallest round bucket (seconds, at least `least`) that cuts `span` seconds in
    at most `most`."""
    for step in NICE_BUCKETS:
        if step >= least and span <= step * most:
            return step
    return max(least, -(-span // most))


class Store:
    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            # A development server: an application crash loses nothing in WAL mode; only a
            # power loss could, and skipping the checkpoint fsyncs doubles the write rate.
            self._db.execute("PRAGMA synchronous=OFF")
        self._db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Databases written by earlier versions: the columns added since."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(rejections)")}
        for column in ("license_id", "measurements", "batch_id"):
            if column not in have:
                self._db.execute(f"ALTER TABLE rejections ADD COLUMN {column} TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- writes ---

    def record(
        self,
        batch_id: str | None,
        events: Sequence[Mapping[str, Any]],
        rejections: Sequence[dict[str, Any]],
        rejected_events: Sequence[Any] = (),
    ) -> Outcome:
        """Store valid events (deduplicated by event_id and batch_id) and the rejections
        (`rejected_events`, beside them, the events as sent: what the page shows of each)."""
        received = _now()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if batch_id is not None:
                    row = db.execute(
                        "SELECT accepted, rejections FROM batches WHERE batch_id = ?", (batch_id,)
                    ).fetchone()
                    if row is not None:
                        duplicates = len(events)
                        self._bump(duplicates=duplicates, duplicate_batches=1)
                        db.execute("COMMIT")
                        return Outcome(row[0], json.loads(row[1]), duplicates)
                # INSERT OR IGNORE on the unique event id: the row count says how many
                # events were new; a resent one is acknowledged and not stored again.
                first, more = self._rows(batch_id, events, received)
                fresh = db.executemany(INSERT_EVENT, first).rowcount
                if more:
                    db.executemany(INSERT_EVENT, more)
                duplicates = len(events) - fresh
                sent = list(rejected_events) + [None] * (len(rejections) - len(rejected_events))
                db.executemany(
                    "INSERT INTO rejections (event_id, reason, received_at, license_id, "
                    "measurements, batch_id) VALUES (?,?,?,?,?,?)",
                    [
                        (r["event_id"], r["reason"], received, *_summary(e), batch_id)
                        for r, e in zip(rejections, sent, strict=True)
                    ],
                )
                if batch_id is not None:
                    db.execute(
                        "INSERT INTO batches VALUES (?,?,?,?)",
                        (batch_id, len(events), json.dumps(list(rejections)), received),
                    )
                by_reason = Counter(f"rejected:{_reason_class(r['reason'])}" for r in rejections)
                self._bump(
                    accepted=fresh,
                    duplicates=duplicates,
                    rejected=len(rejections),
                    batches=1,
                    **by_reason,
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return Outcome(len(events), list(rejections), duplicates)

    @staticmethod
    def _rows(
        batch_id: str | None, events: Sequence[Mapping[str, Any]], received: str
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Rows for the first measurement of each event, and for any further ones."""
        first: list[tuple[Any, ...]] = []
        more: list[tuple[Any, ...]] = []
        for event in events:
            attribution = event.get("attribution")
            metadata = event.get("metadata")
            common = (
                event["license_id"],
                event.get("unit"),
                event.get("kind", "USAGE"),
                event["occurred_at"],
                received,
                event.get("source_system", "sdk"),
                _encode(attribution) if attribution else "{}",
                _encode(metadata) if metadata else "{}",
            )
            event_id = uuid.UUID(event["event_id"]).bytes  # 16 bytes, not 36 characters
            for position, measurement in enumerate(event["measurements"]):
                row = (
                    event_id,
                    position,
                    batch_id,
                    measurement["metric_name"],
                    measurement["quantity"],
                    *common,
                )
                (more if position else first).append(row)
        return first, more

    def _bump(self, **counts: int) -> None:
        self._db.executemany(
            "INSERT INTO counters VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            [(name, n) for name, n in counts.items() if n],
        )

    def touch_key(self, api_key: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO keys VALUES (?, ?) "
                "ON CONFLICT(fingerprint) DO UPDATE SET last_used_at = excluded.last_used_at",
                (fingerprint(api_key), _now()),
            )

    def note_minute(self, key: str, at: datetime | None = None, **counts: int) -> None:
        """Add to one key's counts of the minute `at` (now): offered, stored, duplicates,
        refused, rate_limited_requests, requests."""
        moment = at or datetime.now(timezone.utc)
        minute = moment.strftime("%Y-%m-%dT%H:%M:00Z")
        names = [name for name, n in counts.items() if n]
        unknown = set(names) - set(MINUTE_COUNTS)
        if unknown:
            raise ValueError(f"unknown minute counts: {sorted(unknown)}")
        if not names:
            return
        columns = ", ".join(names)
        updates = ", ".join(f"{name} = {name} + excluded.{name}" for name in names)
        with self._lock:
            self._db.execute(
                f"INSERT INTO minutes (key, minute, {columns}) VALUES (?, ?{', ?' * len(names)}) "
                f"ON CONFLICT(key, minute) DO UPDATE SET {updates}",
                (fingerprint(key), minute, *(counts[name] for name in names)),
            )

    def refuse(
        self,
        *,
        status: int,
        method: str,
        path: str,
        key_prefix: str | None,
        reason: str,
        fix: str,
        events: int | None = None,
    ) -> None:
        """Record a request refused at the door (never the key: its first characters)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO refusals (received_at, status, method, path, key_prefix, reason, fix, "
                "events) VALUES (?,?,?,?,?,?,?,?)",
                (_now(), status, method, path[:200], key_prefix, reason[:1000], fix, events),
            )

    # --- reads ---

    def minutes(
        self,
        *,
        key: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[dict[str, Any]]:
        """Per minute (oldest first): what was offered, stored, deduplicated and refused;
        one key's (None: every key's, summed). `since` inclusive, `until` exclusive."""
        where: list[str] = []
        params: list[Any] = []
        if key is not None:
            where.append("key = ?")
            params.append(fingerprint(key))
        if since is not None:
            where.append("minute >= ?")
            params.append(since[:16] + ":00Z" if len(since) >= 16 else since)
        if until is not None:
            where.append("minute < ?")
            params.append(until)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sums = ", ".join(f"SUM({name})" for name in MINUTE_COUNTS)
        with self._lock:
            rows = self._db.execute(
                f"SELECT minute, {sums} FROM minutes {clause} GROUP BY minute ORDER BY minute",
                params,
            ).fetchall()
        return [
            {"minute": row[0], **dict(zip(MINUTE_COUNTS, row[1:], strict=True))} for row in rows
        ]

    def refusal_page(
        self,
        *,
        status: int | None = None,
        since: str | None = None,
        until: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Requests refused at the door, newest first, paged like `events`."""
        where: list[str] = []
        params: list[Any] = []
        self._received_between(where, params, since, until)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        limit = max(1, min(limit, MAX_PAGE))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, received_at, status, method, path, key_prefix, reason, fix, events "
                f"FROM refusals {clause} ORDER BY seq DESC LIMIT ?",
                [*params, limit + 1],
            ).fetchall()
        names = ("received_at", "status", "method", "path", "key_prefix", "reason", "fix", "events")
        page = [dict(zip(names, r[1:], strict=True)) for r in rows[:limit]]
        cursor = rows[limit - 1][0] if len(rows) > limit else None
        return page, cursor

    def events(
        self,
        *,
        metric: str | None = None,
        license_id: str | None = None,
        kind: str | None = None,
        since: str | None = None,
        until: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Newest first; returns the page and the `before` cursor of the next page.
        `since` (inclusive) and `until` (exclusive) bound `received_at`."""
        where, params = self._filters(metric=metric, license_id=license_id, kind=kind)
        self._received_between(where, params, since, until)
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        limit = max(1, min(limit, MAX_PAGE))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, batch_id, license_id, metric, quantity, unit, kind, "
                f"occurred_at, received_at, source, attribution, metadata FROM events {clause} "
                "ORDER BY seq DESC LIMIT ?",
                [*params, limit + 1],
            ).fetchall()
        page = [
            {
                "event_id": str(uuid.UUID(bytes=r[1])),
                "batch_id": r[2],
                "license_id": r[3],
                "metric": r[4],
                "quantity": r[5],
                "unit": r[6],
                "kind": r[7],
                "occurred_at": r[8],
                "received_at": r[9],
                "source": r[10],
                "attribution": json.loads(r[11]),
                "metadata": json.loads(r[12]),
            }
            for r in rows[:limit]
        ]
        cursor = rows[limit - 1][0] if len(rows) > limit else None
        return page, cursor

    def usage(
        self,
        *,
        metric: str | None = None,
        license_id: str | None = None,
        by: str | None = None,
        kind: str | None = None,
        since: str | None = None,
        until: str | None = None,
        per_kind: bool = False,
    ) -> list[dict[str, Any]]:
        """Totals per metric and license (and per value of one attribution key). With
        `per_kind`, usage and adjustments are totalled apart (a `kind` in each row)."""
        where, params = self._filters(metric=metric, license_id=license_id, kind=kind)
        self._received_between(where, params, since, until)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        group = ["metric", "license_id"]
        select = "metric, license_id"
        if per_kind:
            select += ", kind"
            group.append("kind")
        if by is not None:
            select += ", json_extract(attribution, ?) AS attr"
            params.insert(0, "$." + json.dumps(by))
            group.append("attr")
        with self._lock:
            rows = self._db.execute(
                f"SELECT {select}, {EXACT_SUM}, COUNT(*), MAX(unit), MAX(received_at) "
                f"FROM events {clause} GROUP BY {', '.join(group)} ORDER BY metric, license_id",
                params,
            ).fetchall()
        result = []
        for row in rows:
            item: dict[str, Any] = {"metric": row[0], "license_id": row[1]}
            if per_kind:
                item["kind"] = row[2]
            if by is not None:
                item[by] = row[3 if per_kind else 2]
            high, low, real, reals, count, unit, last = row[-7:]
            total = _exact_total(high, low, real, reals)
            item.update(total=total, events=count, unit=unit, last_received_at=last)
            result.append(item)
        return result

    def total(self, metric: str, license_id: str | None = None) -> int | float:
        where, params = self._filters(metric=metric, license_id=license_id)
        with self._lock:
            row = self._db.execute(
                f"SELECT {EXACT_SUM} FROM events WHERE {' AND '.join(where)}", params
            ).fetchone()
        return _exact_total(*row)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
            keys = self._db.execute("SELECT MAX(last_used_at) FROM keys").fetchone()[0]
            refused = dict(
                self._db.execute("SELECT status, COUNT(*) FROM refusals GROUP BY status").fetchall()
            )
        by_reason = {
            name.split(":", 1)[1]: n for name, n in counters.items() if name.startswith("rejected:")
        }
        return {
            "accepted": counters.get("accepted", 0),
            "rejected": counters.get("rejected", 0),
            "duplicates": counters.get("duplicates", 0),
            "batches": counters.get("batches", 0),
            "duplicate_batches": counters.get("duplicate_batches", 0),
            "rejected_by_reason": by_reason,
            "key_last_used_at": keys,
            "refused_requests": sum(refused.values()),
            "refused_by_status": {str(status): n for status, n in sorted(refused.items())},
        }

    def rejections(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.rejection_page(limit=limit)[0]

    def rejection_page(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Rejected events with their reasons, newest first, paged like `events`."""
        where: list[str] = []
        params: list[Any] = []
        self._received_between(where, params, since, until)
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        limit = max(1, min(limit, MAX_PAGE))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, reason, received_at, license_id, measurements, batch_id "
                f"FROM rejections {clause} ORDER BY seq DESC LIMIT ?",
                [*params, limit + 1],
            ).fetchall()
        page = []
        for r in rows[:limit]:
            measurements = json.loads(r[5]) if r[5] else []
            page.append(
                {
                    "event_id": r[1],
                    "reason": r[2],
                    "received_at": r[3],
                    "license_id": r[4],
                    "metric": ", ".join(str(m.get("metric_name")) for m in measurements) or None,
                    "quantity": measurements[0].get("quantity") if len(measurements) == 1 else None,
                    "measurements": measurements,
                    "batch_id": r[6],
                }
            )
        cursor = rows[limit - 1][0] if len(rows) > limit else None
        return page, cursor

    def series(
        self,
        *,
        metric: str | None = None,
        license_id: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        bucket: int | None = None,
    ) -> dict[str, Any]:
        """Totals per time bucket (by `received_at`), metric, license and kind.

        Without `bucket` (seconds), one of a minute or more is chosen to give at most about
        120 buckets over
        the range (`since`..`until`, else the data's first and last arrival). Buckets
        with nothing in them are left out; `t` is a bucket's start in Unix seconds.
        """
        where, params = self._filters(metric=metric, license_id=license_id, kind=kind)
        self._received_between(
            where,
            params,
            format_time(since) if since else None,
            format_time(until) if until else None,
        )
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        epoch = "CAST(strftime('%s', received_at) AS INTEGER)"
        with self._lock:
            first, last = self._db.execute(
                f"SELECT MIN({epoch}), MAX({epoch}) FROM events {clause}", params
            ).fetchone()
            start = int(since.timestamp()) if since else first
            end = int(until.timestamp()) if until else last
            # a minute at the finest: usage per minute reads as usage over time (one-second
            # buckets drew a line dropping to zero between calls), and it is the budget's unit
            step = bucket or _nice_bucket((end or 0) - (start or 0), least=60)
            rows = self._db.execute(
                f"SELECT ({epoch} / ?) * ? AS t, metric, license_id, kind, {EXACT_SUM}, "
                f"COUNT(*) FROM events {clause} GROUP BY t, metric, license_id, kind "
                "ORDER BY metric, license_id, kind = 'ADJUSTMENT', t",
                [step, step, *params],
            ).fetchall()
        points = [
            {
                "t": r[0],
                "metric": r[1],
                "license_id": r[2],
                "kind": r[3],
                "total": _exact_total(*r[4:8]),
                "events": r[8],
            }
            for r in rows
        ]
        return {"bucket": step, "since": start, "until": end, "points": points}

    @staticmethod
    def _received_between(
        where: list[str], params: list[Any], since: str | None, until: str | None
    ) -> None:
        """Bound `received_at` (ISO 8601 as `format_time` writes it, so text compares in
        time order): `since` inclusive, `until` exclusive."""
        if since is not None:
            where.append("received_at >= ?")
            params.append(since)
        if until is not None:
            where.append("received_at < ?")
            params.append(until)

    @staticmethod
    def _filters(**values: str | None) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in values.items():
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        return where, params
