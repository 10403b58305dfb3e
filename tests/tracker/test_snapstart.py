"""Lambda SnapStart: usage recorded during init is billed once, not once per environment
restored from the snapshot (issue 24, point 2), and each restored environment names its
windows, draws its randomness and opens its connections apart.

A restore is simulated as Lambda's runtime does it: the runtime client's own hook runner
(`awslambdaric.lambda_runtime_hooks_runner`) runs the before-snapshot hooks, the process
image is copied three times with no fork hook run (a raw fork: a restore runs none), and
each copy runs the after-restore hooks."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from doow_otel_testing import LocalDoow
from helpers import run_restored_copies

APP = textwrap.dedent(
    """
    import ctypes, os, random, sys
    from awslambdaric import lambda_runtime_hooks_runner as hooks
    from doow_otel import DoowTracker

    meter = DoowTracker(flush_interval=3600, handle_sigterm=False)
    for _ in range(5):  # init: usage recorded before the snapshot
        meter.track(metric="warmup_calls", quantity=1, license_id="lic_init")
    hooks.run_before_snapshot()
    fork = ctypes.PyDLL(None).fork  # libc's fork, holding the GIL: no Python fork hook runs
    children = []
    for copy in range(3):
        pid = fork()
        if pid == 0:  # a restored environment
            hooks.run_after_restore()
            meter.track(metric="served_calls", quantity=1, license_id="lic_init")
            journal = meter._recorder._journal.id
            ok = meter.flush(timeout=10)
            line = f"copy {copy} {journal} {random.random()} {ok}\\n"
            os.write(1, line.encode())  # one write: the copies share the pipe
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    print("snapshot", meter._recorder._journal.id, flush=True)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="a raw fork from libc")
def test_usage_recorded_before_the_snapshot_is_billed_once(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    copies, out = run_restored_copies(APP, local_doow, tmp_path)
    assert local_doow.total("warmup_calls", "lic_init") == 5  # not 15
    assert local_doow.total("served_calls", "lic_init") == 3
    snapshot = next(line.split()[1] for line in out.splitlines() if line[:8] == "snapshot")
    journals = {journal for _, _, journal, _, _ in copies}
    randoms = {value for _, _, _, value, _ in copies}
    assert len(journals) == 3 and snapshot not in journals  # windows named apart
    assert len(randoms) == 3  # backoff jitter drawn apart
