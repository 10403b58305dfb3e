"""The Lambda extension forwards to a gateway tier instead of Doow with one setting
(DOOW_GATEWAY_ENDPOINT), under the real Lambda Runtime Interface Emulator as in
tests/test_lambda_extension.py: every invocation's usage reaches the gateway
(collector/gateway.yaml, aggregating) after the response, and the gateway delivers exact
totals to the local Doow server, aggregated per stream and window."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from doow_otel_testing import LocalDoow
from helpers import (
    running_gateway,
)
from lambda_emulator import Emulator, await_totals, emulator, expected_totals, opt, rie, usage

pytestmark = pytest.mark.slow

__all__ = ["emulator", "opt", "rie"]  # the fixtures, from lambda_emulator


@pytest.fixture
def gateway(
    local_doow: LocalDoow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """A gateway on loopback, and the function's environment pointing at it."""
    with running_gateway(local_doow, tmp_path, window="2s") as (port, sender):
        # the one setting (and the fleet's credentials); the function's own DOOW_API_KEY
        # is left at the local server's by the emulator, and unused
        monkeypatch.setenv("DOOW_GATEWAY_ENDPOINT", f"https://127.0.0.1:{port}")
        monkeypatch.setenv("DOOW_GATEWAY_TOKEN", sender["DOOW_GATEWAY_TOKEN"])
        monkeypatch.setenv("DOOW_GATEWAYS_CA_FILE", sender["DOOW_GATEWAYS_CA_FILE"])
        yield


def test_the_extension_forwards_to_the_gateway_which_delivers_exact_totals(
    gateway: None, emulator: Callable[[], Emulator], local_doow: LocalDoow
) -> None:
    lam = emulator()
    for n in range(30):
        lam.invoke(usage(n))
    lam.terminate()  # SHUTDOWN: the extension drains what is left to the gateway
    expected = expected_totals(range(30))
    await_totals(local_doow, expected, limit=20)
    # aggregated at the gateway: far fewer events than the 330 records of the calls
    events = {e["event_id"] for e in local_doow.events(limit=10_000)}
    assert len(events) < 100, len(events)
