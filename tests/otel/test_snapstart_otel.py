"""Lambda SnapStart with plain OpenTelemetry (`metric_reader()` in the application's own
MeterProvider): usage recorded during init is exported before the snapshot, so it is
billed once, not once per restored environment (issue 24, point 2). The restore is
simulated as in tests/tracker/test_snapstart.py: the runtime client's own hook runner,
raw copies of the process (no fork hook runs), each copy running the after-restore hooks."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from doow_otel_testing import LocalDoow
from helpers import run_restored_copies

APP = textwrap.dedent(
    """
    import ctypes, os, random
    from awslambdaric import lambda_runtime_hooks_runner as hooks
    from opentelemetry.sdk.metrics import MeterProvider
    from doow_otel import metric_reader

    provider = MeterProvider(metric_readers=[metric_reader(interval=3600)])
    calls = provider.get_meter("app").create_counter("calls")
    for _ in range(5):  # init: usage recorded before the snapshot
        calls.add(1, {"doow.license_id": "lic_init", "phase": "warmup"})
    hooks.run_before_snapshot()
    fork = ctypes.PyDLL(None).fork  # libc's fork, holding the GIL: no Python fork hook runs
    children = []
    for copy in range(3):
        pid = fork()
        if pid == 0:  # a restored environment
            hooks.run_after_restore()
            calls.add(1, {"doow.license_id": "lic_init", "phase": "served"})
            ok = provider.force_flush(10_000)
            os.write(1, f"copy {copy} {random.random()} {ok}\\n".encode())  # one write
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="a raw fork from libc")
def test_usage_recorded_before_the_snapshot_is_billed_once(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    copies, _ = run_restored_copies(APP, local_doow, tmp_path)
    totals = {row["phase"]: row["total"] for row in local_doow.usage(metric="calls", by="phase")}
    assert totals == {"warmup": 5, "served": 3}  # not 15 warmup calls
    assert len({value for _, _, value, _ in copies}) == 3  # each copy its own randomness
