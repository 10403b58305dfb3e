"""The README's main command: `doow-otel demo` runs every path against the local server."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_runs_every_example_and_reports_exact_totals() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "doow_otel.cli", "demo"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "skipped" not in out  # the dev extra has every runtime the demo drives
    rows = {tuple(line.split()[:4]) for line in out.splitlines() if line.startswith("   ")}
    for row in [
        ("words", "lic_initech", "6", "lambda"),
        ("words", "lic_hooli", "6", "vercel"),
        ("words", "lic_stark", "5", "azure"),
        ("exports", "lic_umbrella", "300", "client"),
        ("pages_rendered", "lic_globex", "15", "otel-sdk"),
        ("api_calls", "lic_acme", "3", "process"),
    ]:
        assert row in rows, out
    assert re.search(r"accepted 316, rejected 0", out), out
