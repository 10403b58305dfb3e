"""Lambda SnapStart: usage recorded during init is billed once, not once per environment
restored from the snapshot (issue 24, point 2), and each restored environment names its
windows, draws its randomness and opens its connections apart.

A restore is simulated as Lambda's runtime does it: the runtime client's own hook runner
(`awslambdaric.lambda_runtime_hooks_runner`) runs the before-snapshot hooks, the process
image is copied three times with no fork hook run (a raw fork: a restore runs none), and
each copy runs the after-restore hooks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from doow_otel_testing import LocalDoow
from helpers import child_env

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
    script = tmp_path / "app.py"
    script.write_text(APP)
    env = child_env(
        {
            "DOOW_TRACK_API_KEY": local_doow.api_key,
            "DOOW_TRACK_ENDPOINT": local_doow.url,
            "DOOW_SPOOL_DIR": str(tmp_path / "tmp" / "doow-spool"),
        }
    )
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    copies = [line.split() for line in done.stdout.splitlines() if line.startswith("copy")]
    assert len(copies) == 3 and all(ok == "True" for *_, ok in copies), done.stdout
    assert local_doow.total("warmup_calls", "lic_init") == 5  # not 15
    assert local_doow.total("served_calls", "lic_init") == 3
    snapshot = next(line.split()[1] for line in done.stdout.splitlines() if line[:8] == "snapshot")
    journals = {journal for _, _, journal, _, _ in copies}
    randoms = {value for _, _, _, value, _ in copies}
    assert len(journals) == 3 and snapshot not in journals  # windows named apart
    assert len(randoms) == 3  # backoff jitter drawn apart
