"""Test helpers for doow-otel's own tests and for our users' test suites.

    from doow_otel_testing import LocalDoow

    with LocalDoow() as doow:
        client = DoowClient(doow.api_key, endpoint=doow.url)
        ...
        assert doow.total("api_calls", "lic_1") == 3

Installed as a pytest plugin: the `local_doow` fixture gives a fresh server per test.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from doow_otel_testing.server import DoowServer, Faults, new_key, start, stop
from doow_otel_testing.server.budget import EVENTS_PER_MINUTE

__all__ = ["LocalDoow", "local_doow"]


class LocalDoow:
    """A real local Doow-compatible server (HTTP + SQLite) on a free port, in a
    background thread of this process."""

    def __init__(
        self,
        *,
        keys: list[str] | None = None,
        db: str | Path = ":memory:",
        host: str = "127.0.0.1",
        events_per_minute: int = EVENTS_PER_MINUTE,
        daily_cap: int | None = None,
        known_metrics: Iterable[str] | None = None,
    ) -> None:
        """`events_per_minute`: Doow's event budget per key (1,000 as Doow documents; 0 turns
        it off), `daily_cap`: events per key and UTC day (None: no cap); past either the
        server answers 429 as Doow does. `known_metrics`: the metrics Doow knows (None: all);
        an event measuring another is rejected in a 207 naming the metric."""
        self._keys = list(keys or [new_key()])
        self._db = db
        self._host = host
        self._events_per_minute = events_per_minute
        self._daily_cap = daily_cap
        self._known_metrics = None if known_metrics is None else list(known_metrics)
        self._server: DoowServer | None = None

    def __repr__(self) -> str:
        state = self.url if self._server else "stopped"
        return f"LocalDoow({state})"

    # --- lifecycle ---

    def start(self) -> LocalDoow:
        if self._server is None:
            self._server, _ = start(
                host=self._host,
                db=self._db,
                keys=self._keys,
                events_per_minute=self._events_per_minute,
                daily_cap=self._daily_cap,
                known_metrics=self._known_metrics,
            )
        return self

    def stop(self) -> None:
        if self._server is not None:
            stop(self._server)
            self._server = None

    def __enter__(self) -> LocalDoow:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def server(self) -> DoowServer:
        if self._server is None:
            raise RuntimeError(
                "LocalDoow is not running: use it as a context manager or call start()"
            )
        return self._server

    # --- what a client needs ---

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def api_key(self) -> str:
        return self._keys[0]

    @property
    def faults(self) -> Faults:
        """Fault injection: `fail_next`, `latency`, `drop_connection`, `max_body`, `clear`."""
        return self.server.faults

    def revoke(self, key: str) -> None:
        """From now on, answer 401 to requests with this key."""
        self.server.revoke(key)

    # --- what the server stored ---

    def events(
        self, *, metric: str | None = None, license_id: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Stored events, newest first."""
        page, _ = self.server.store.events(metric=metric, license_id=license_id, limit=limit)
        return page

    def usage(
        self, *, metric: str | None = None, license_id: str | None = None, by: str | None = None
    ) -> list[dict[str, Any]]:
        """Totals per metric and license (and per value of attribution key `by`)."""
        return self.server.store.usage(metric=metric, license_id=license_id, by=by)

    def total(self, metric: str, license_id: str | None = None) -> int | float:
        """The stored total of one metric (for one license), 0 when nothing arrived."""
        return self.server.store.total(metric, license_id)

    def stats(self) -> dict[str, Any]:
        return self.server.store.stats()

    def rejections(self) -> list[dict[str, Any]]:
        """Rejected events, newest first: event_id, reason, license_id, metric, quantity,
        measurements, batch_id, received_at."""
        return self.server.store.rejections()

    def refusals(self, *, status: int | None = None) -> list[dict[str, Any]]:
        """Requests refused at the door (401, 404, 413, 429, malformed), newest first: status,
        method, path, key_prefix (never the key), reason, fix, events, received_at."""
        page, _ = self.server.store.refusal_page(status=status, limit=1000)
        return page

    # --- the event budget: what Doow counted, per minute ---

    def minutes(self, *, key: str | None = None) -> list[dict[str, Any]]:
        """Per minute, oldest first: offered (events in every request, refused ones
        included), stored, duplicates, refused (with 429 or 413), rate_limited_requests,
        requests; for one key (None: every key, summed)."""
        return self.server.store.minutes(key=key)

    def offered_events(self, *, key: str | None = None) -> int:
        """Events offered in all requests so far (what Doow's budget would see offered)."""
        return sum(m["offered"] for m in self.minutes(key=key))

    def stored_events(self, *, key: str | None = None) -> int:
        """Events stored so far (new ids; duplicates and refused events not counted)."""
        return sum(m["stored"] for m in self.minutes(key=key))

    def requests(
        self, *, path: str | None = None, include_in_flight: bool = False
    ) -> list[dict[str, Any]]:
        """The ingest requests received (to `path`, or all), in order: path, status,
        events, batch_id, event_ids, headers."""
        found = self.server.requests(include_in_flight=include_in_flight)
        return [r for r in found if path is None or r["path"] == path]


def _local_doow(request: Any) -> Iterator[LocalDoow]:
    """A fresh local Doow-compatible server for one test. A test marked
    `@pytest.mark.local_doow(events_per_minute=0, ...)` gets one made with those
    arguments (LocalDoow's keywords), say to send more than Doow's budget allows."""
    marker = request.node.get_closest_marker("local_doow")
    with LocalDoow(**(marker.kwargs if marker else {})) as doow:
        yield doow


def pytest_configure(config: Any) -> None:
    config.addinivalue_line(
        "markers",
        "local_doow(**kwargs): LocalDoow's arguments for this test's local_doow fixture "
        "(events_per_minute=, daily_cap=, known_metrics=, keys=)",
    )


try:  # the fixture, when pytest is there; LocalDoow works without it
    import pytest
except ImportError:  # pragma: no cover
    pass
else:
    local_doow = pytest.fixture(_local_doow, name="local_doow")
