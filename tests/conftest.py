"""Fixtures shared by the test modules (`local_doow` comes from doow_otel.testing)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from doow_otel.testing import LocalDoow
from doow_otel.tracker import DoowTracker


@pytest.fixture
def meter(local_doow: LocalDoow, tmp_path: Path) -> Iterator[DoowTracker]:
    """A tracker on the local server that exports only when flushed."""
    tracker = DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path / "spool",
        flush_interval=3600,
        handle_sigterm=False,
    )
    yield tracker
    tracker.shutdown()
