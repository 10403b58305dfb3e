"""The durable spool: batches that could not be delivered yet, kept on disk.

Every batch is written here *before* its first attempt (a write-ahead entry: one
small file, no fsync, so a process killed mid-request loses nothing), removed when
Doow has answered, and fsynced when its deadline passes undelivered. The next send
or flush replays entries oldest first with their original ids; Doow deduplicates
by event id, so a replay after an ambiguous failure never bills twice.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from doow_otel.errors import Reporter
from doow_otel.wire import Batch

__all__ = ["Spool", "default_spool_dir"]

SUFFIX = ".batch"
STALE_TEMP_SECONDS = 60.0


def default_spool_dir() -> Path:
    """`DOOW_SPOOL_DIR`, else `/tmp/doow-spool` on Lambda, else the user cache directory."""
    configured = os.environ.get("DOOW_SPOOL_DIR")
    if configured:
        return Path(configured)
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return Path("/tmp/doow-spool")
    if sys.platform == "darwin":
        cache = Path.home() / "Library" / "Caches"
    elif sys.platform == "win32":
        cache = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "doow-otel" / "spool"


@dataclass(frozen=True)
class Entry:
    path: Path
    batch: Batch


class Spool:
    """Bounded by bytes and entries; when full, the oldest entries are dropped and reported."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        max_batches: int = 10_000,
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_spool_dir()
        self.max_bytes = max_bytes
        self.max_batches = max_batches
        self.report: Reporter = Reporter(None)
        self._ready = False

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r})"

    def _prepare(self) -> None:
        if not self._ready:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._set_aside_stale_temporaries()
            self._ready = True

    def write(self, batch: Batch, *, durable: bool) -> Path:
        """Write atomically (temporary file, rename); fsync when `durable`."""
        self._prepare()
        name = f"{time.time_ns():020d}-{batch.batch_id}{SUFFIX}"
        final = self.directory / name
        temporary = self.directory / f".tmp-{uuid.uuid4().hex}"
        with open(temporary, "wb") as handle:
            handle.write(batch.body())
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, final)
        if durable:
            self._fsync_directory()
        self._enforce_bounds(keep=final)
        return final

    def make_durable(self, path: Path) -> None:
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
        self._fsync_directory()

    def remove(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def paths(self) -> list[Path]:
        """Entries, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(
            p for p in self.directory.iterdir() if p.name.endswith(SUFFIX) and p.is_file()
        )

    def __len__(self) -> int:
        return len(self.paths())

    def load(self, path: Path) -> Entry | None:
        """Read one entry; a corrupt one is set aside, reported, and skipped."""
        try:
            return Entry(path, Batch.from_body(path.read_bytes()))
        except FileNotFoundError:
            return None  # replayed meanwhile by another process
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            self._set_aside(path, f"unreadable ({type(exc).__name__})")
            return None

    def _set_aside(self, path: Path, why: str) -> None:
        corrupt = self.directory / "corrupt"
        corrupt.mkdir(exist_ok=True)
        try:
            os.replace(path, corrupt / path.name.lstrip("."))
        except FileNotFoundError:
            return
        self.report("dropped", f"spool entry {path.name} set aside in {corrupt}: {why}")

    def _set_aside_stale_temporaries(self) -> None:
        # A temporary left by a process killed mid-write was never renamed, so never sent.
        cutoff = time.time() - STALE_TEMP_SECONDS
        for path in self.directory.glob(".tmp-*"):
            if path.stat().st_mtime < cutoff:
                self._set_aside(path, "partly written (process stopped mid-write)")

    def _enforce_bounds(self, keep: Path) -> None:
        entries = self.paths()
        sizes = {p: p.stat().st_size for p in entries}
        total = sum(sizes.values())
        for path in entries:
            if len(entries) <= self.max_batches and total <= self.max_bytes:
                break
            if path == keep:
                continue
            entry = self.load(path)
            self.remove(path)
            entries.remove(path)
            total -= sizes[path]
            count = len(entry.batch) if entry else 0
            self.report(
                "dropped",
                f"spool full ({self.max_batches} batches / {self.max_bytes} bytes): "
                f"dropped its oldest batch of {count} events",
                count=count,
            )

    def _fsync_directory(self) -> None:
        if sys.platform == "win32":
            return
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
