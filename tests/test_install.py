"""The README's install commands work on a fresh machine today: run as written, in a fresh
virtualenv, on a copy of the repository (the package is not on PyPI yet, issue 26)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def install_blocks() -> list[list[str]]:
    """The README's Install section: its bash blocks, as command lines without comments."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Install\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert len(blocks) == 2, "the Install section's two blocks: from the checkout, from wheels"
    return [
        [line.split("  #")[0].strip() for line in b.splitlines() if line.strip()] for b in blocks
    ]


def a_copy_of_the_repository(where: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    copy = where / "doow-otel"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


def run(script: str, cwd: Path) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_readme_install_commands_work_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    checkout, wheels = install_blocks()
    copy = a_copy_of_the_repository(tmp_path)
    works = (
        "doow-otel --help >/dev/null && doow-local --help >/dev/null && "
        "python -c 'import doow_otel, doow_otel_testing; print(doow_otel.__version__)'"
    )
    assert checkout[0].startswith("python3 -m venv .venv")
    out = run("\n".join([*checkout, works]), copy)
    assert out.strip().endswith("0.1.0")

    # from wheels: built once, installed into another fresh virtualenv
    script = [
        wheels[0],
        "python3 -m venv ../wheels-venv && . ../wheels-venv/bin/activate",
        *wheels[1:],
        works,
    ]
    out = run("\n".join(script), copy)
    assert out.strip().endswith("0.1.0")
    assert sorted(p.name.split("-")[0] for p in (copy / "dist").glob("*.whl")) == [
        "doow_otel",
        "doow_otel_testing",
    ]
