"""`doow-local lambda`: a function run locally under AWS's real Lambda Runtime Interface
Emulator, with and without the otelcol-doow extension layer, in one command (issue 26)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
EVENT = '{"license_id": "lic_local", "text": "one two three"}'
LAMBDA = [sys.executable, "-m", "doow_otel_testing.cli", "lambda"]
HANDLER = str(ROOT / "examples" / "lambda" / "handler.py") + ":handler"


def doow_local(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOOW_")}
    return subprocess.run(
        [*LAMBDA, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_without_the_emulator_it_says_how_to_get_it(tmp_path: Path) -> None:
    done = doow_local(HANDLER, "--rie", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert done.returncode == 2
    assert "aws-lambda-rie not found" in done.stderr
    assert "bash scripts/install-lambda-rie.sh" in done.stderr


def test_a_handler_that_is_not_file_colon_function_is_named(tmp_path: Path) -> None:
    done = doow_local("handler.handler", cwd=tmp_path)
    assert done.returncode == 2 and "give FILE.py:FUNCTION" in done.stderr


def _installed(script: str) -> Path:
    if not sys.platform.startswith("linux") or shutil.which("go") is None:
        pytest.skip("the emulator is built with Go, on Linux")
    pytest.importorskip("awslambdaric")
    done = subprocess.run(["bash", script], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else ROOT


@pytest.fixture(scope="module")
def rie() -> Path:
    return _installed("scripts/install-lambda-rie.sh")


@pytest.fixture(scope="module")
def layer() -> Path:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("the layer is mounted on a private /opt: needs root and unshare(1)")
    _installed("collector/build-lambda-layer.sh")
    return ROOT / "collector" / "_build" / "otelcol-doow-lambda-layer.zip"


def test_in_process_one_command_runs_the_handler_and_shows_what_arrived(rie: Path) -> None:
    done = doow_local(HANDLER, "--event", EVENT, "--event", EVENT, "--rie", str(rie))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "handler.handler under aws-lambda-rie, usage sent in-process" in out
    assert out.count('"statusCode": 200') == 2
    assert "arrived: words 6 for lic_local (2 events)" in out
    assert "arrived: api_calls 2 for lic_local (2 events)" in out


def test_with_the_extension_layer_the_usage_goes_through_it(rie: Path, layer: Path) -> None:
    done = doow_local(HANDLER, "--event", EVENT, "--with-extension", "--rie", str(rie),
                      "--layer", str(layer))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "usage sent through the otelcol-doow extension" in done.stdout
    assert "extension: stopped at SHUTDOWN with nothing left to deliver" in done.stdout
    assert "arrived: words 3 for lic_local (1 event)" in done.stdout


def test_at_shutdown_the_extension_says_what_became_of_undelivered_usage(
    rie: Path, layer: Path
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # Doow unreachable
    done = doow_local(HANDLER, "--event", EVENT, "--with-extension", "--rie", str(rie),
                      "--layer", str(layer), "--endpoint", nobody,
                      "--api-key", "dk_local_example_key")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "extension: shutting down with usage not yet delivered: it stays in the " in done.stdout
    assert "persistent queue on disk" in done.stdout
    assert "dk_local_example_key" not in done.stdout + done.stderr


def test_usage_a_real_endpoint_did_not_take_is_kept_not_deleted(rie: Path) -> None:
    """With --endpoint (Doow itself, not the throwaway local server), the spool of usage
    that did not arrive stays on disk, and the command says where."""
    nobody = f"http://127.0.0.1:{free_port()}"  # Doow unreachable
    done = doow_local(HANDLER, "--event", EVENT, "--rie", str(rie), "--endpoint", nobody,
                      "--api-key", "dk_local_example_key")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"usage not yet delivered is kept in (\S+) ", done.stdout)
    assert found, done.stdout
    kept = Path(found.group(1))
    try:
        assert list((kept / "spool").rglob("*.batch")), "the spooled usage is on disk"
    finally:
        shutil.rmtree(kept, ignore_errors=True)
    assert "dk_local_example_key" not in done.stdout + done.stderr
