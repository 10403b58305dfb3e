"""The testing package's own tests: the local server, its page, its faults (`local_doow`
comes from the package's pytest plugin)."""

from __future__ import annotations

import pytest

# Modules that start processes or a browser: `./dev test --fast` leaves them out.
SLOW_MODULES = {"test_server_page", "test_server_sdk_clients"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(getattr(item, "module", None), "__name__", "")
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
