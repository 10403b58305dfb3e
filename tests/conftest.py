"""Fixtures shared by the test modules (`local_doow` comes from doow_otel_testing)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from doow_otel.tracker import DoowTracker
from doow_otel_testing import LocalDoow

# Modules that start processes (the collector, Lambda runtimes, apps under
# opentelemetry-instrument, forks, the benchmarks), a browser, or wait on real time:
# `./dev test --fast` (pytest -m "not slow") leaves them out.
SLOW_MODULES = {
    "test_bench",
    "test_cli",
    "test_collector",
    "test_crash_recovery",
    "test_demo",
    "test_docs_troubleshooting",
    "test_fault_matrix",
    "test_fault_matrix_processes",
    "test_fleet",
    "test_flush_outcome",
    "test_key_never_echoed",
    "test_fork",
    "test_install",
    "test_lambda_extension",
    "test_lambda_local",
    "test_over_budget",
    "test_serverless_lambda",
    "test_sigterm",
    "test_tracker_edges",
    "test_zero_code",
    "test_zero_code_stop",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(getattr(item, "module", None), "__name__", "")
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


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
