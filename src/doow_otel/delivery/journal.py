"""The usage journal: usage is on disk from the moment `track()` returns.

Each tracked amount is appended to the open window's file with one `write()` (O_APPEND):
a process killed at any instant (SIGKILL, the OOM killer, a Lambda timeout) leaves every
amount whose `track()` returned in the page cache, and the next process on the same spool
directory recovers it. Power loss is a separate choice (`fsync` when a window is sealed:
`Recorder(durable=True)`).

Layout, in `<spool>/journal/`:
- `<owner>-<journal>.lock`: held (flock) by the living process for its whole life. A
  journal whose lock nobody holds is a dead process's: the next process takes the lock and
  recovers its windows (the lock dies with its holder, whatever kills it).
- `<owner>-<journal>-<window>.wal`: one file per window; a window's file is removed once
  its events are in the spool (or the collector took them). What is left is undelivered.

A file is a sequence of frames: `u32 size | u8 type | payload | u32 crc32(type+payload)`.
Types: `W` the window (its number and start), `R` a route (its number and what it is:
metric, unit, license, attribution), `A`/`F` an integer/float amount for a route, `E` a
usage record (its fields, its id fixed). A frame is written whole or not at all (one
write); a torn tail (power loss) is cut at the first frame that does not check.

Bounded: the open window's file is compacted (its sums rewritten, one frame per route)
once it passes `COMPACT_BYTES`, so a window merged over a long outage holds its routes,
not its calls. The owner (a salted hash of endpoint and key, as the spool's) keeps one
key's usage from ever being sent with another.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doow_otel.model.fields import AttributeValue

try:
    import fcntl
except ImportError:  # Windows: journals are recovered only by the process that wrote them
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "COMPACT_BYTES",
    "Journal",
    "Route",
    "WindowContent",
    "adopt_journals",
    "dead_journals",
    "journal_windows",
    "set_aside_journals",
]

JOURNAL_DIR = "journal"
COMPACT_BYTES = 1 << 20
_U32 = struct.Struct("<I")
_ADD_INT = struct.Struct("<Iq")
_ADD_FLOAT = struct.Struct("<Id")
_ROUTE = struct.Struct("<I")


@dataclass(frozen=True, eq=False)
class Route:
    """What one amount of usage is for: a metric (and unit) of a license, with attribution.

    Made once per distinct (metric, unit, license, attribution) by the tracker and reused
    for every call: `number` names it in the journal's files.
    """

    metric: str
    unit: str | None
    license_id: str
    attribution: Mapping[str, AttributeValue]
    number: int
    folded: Route | None = None
    """Where its usage goes past the recorder's route limit: the same metric, unit and
    license with the attribution folded away (None: it is that route)."""

    def describe(self) -> list[Any]:
        return [self.metric, self.unit, self.license_id, list(self.attribution.items())]


@dataclass
class WindowContent:
    """A window as its file holds it: the sums per route and the records, in order."""

    window: int
    start_ns: int
    resource: dict[str, str] = field(default_factory=dict)
    """What the sink may name the window's source by (a collector's OTLP resource)."""
    sums: dict[Route, int | float] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    intact: bool = True  # False: a torn tail was cut


def _frame(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return _U32.pack(len(body)) + body + _U32.pack(zlib.crc32(body))


class Journal:
    """This process's journal in `directory` (None: nothing on disk). Not thread-safe: the
    recorder calls it under its lock."""

    def __init__(self, directory: Path | None, owner: str) -> None:
        self.directory = directory / JOURNAL_DIR if directory is not None else None
        self.owner = owner
        self.id = os.urandom(8).hex()
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._window = -1
        self._size = 0
        self._defined: set[int] = set()  # routes described in the open window's file

    def __repr__(self) -> str:
        return f"Journal({self.id}, {self.directory})"

    @property
    def on_disk(self) -> bool:
        return self.directory is not None

    def path(self, window: int) -> Path:
        assert self.directory is not None
        return self.directory / f"{self.owner}-{self.id}-{window:08d}.wal"

    # --- writing: each raises OSError when the disk fails (the recorder reports it) ---

    def add(self, window: WindowContent, route: Route, quantity: int | float) -> None:
        kind, shape = (b"A", _ADD_INT) if type(quantity) is int else (b"F", _ADD_FLOAT)
        frame = _frame(kind, shape.pack(route.number, quantity))
        if route.number not in self._defined:
            frame = self._describe(route) + frame  # one write: the pair lands whole
        self._write(window, frame)
        self._defined.add(route.number)

    def record(self, window: WindowContent, fields: Mapping[str, Any]) -> None:
        self._write(window, _frame(b"E", json.dumps(fields).encode()))

    def compact_if_large(self, content: WindowContent) -> None:
        """Rewrite the open window's file as its sums when it has grown past COMPACT_BYTES."""
        if self._fd is None or self._size < COMPACT_BYTES:
            return
        path = self.path(content.window)
        frames = [_frame(b"W", _window_header(content))]
        for route, total in content.sums.items():
            frames.append(self._describe(route))
            kind, shape = (b"A", _ADD_INT) if type(total) is int else (b"F", _ADD_FLOAT)
            if type(total) is int and not -(2**63) <= total < 2**63:  # past int64: in parts
                frames += [_frame(b"A", _ADD_INT.pack(route.number, p)) for p in _parts(total)]
                continue
            frames.append(_frame(kind, shape.pack(route.number, total)))
        frames.extend(_frame(b"E", json.dumps(r).encode()) for r in content.records)
        temporary = path.with_suffix(".compact")
        data = b"".join(frames)
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
        self._close_window()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._window, self._size = content.window, len(data)
        self._defined = {route.number for route in content.sums}

    def seal(self, *, durable: bool) -> None:
        """The open window is done: its file is complete (fsynced when `durable`); the next
        amount opens the next window's file."""
        if durable and self._fd is not None:
            os.fsync(self._fd)
        self._close_window()

    def discard(self, window: int) -> None:
        """A sealed window's events are safe elsewhere: its file goes."""
        if self.directory is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path(window).unlink()

    def close(self) -> None:
        """Close the files (this process's journal stays on disk for a successor)."""
        self._close_window()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock: recoverable from here on
            self._lock_fd = None

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's files and lock are the parent's. Closing the
        inherited descriptors leaves the parent's lock held (it holds its own)."""
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = None
        self.id = os.urandom(8).hex()
        self._window, self._size, self._defined = -1, 0, set()

    def _write(self, window: WindowContent, frame: bytes) -> None:
        if self.directory is None:
            return
        if self._fd is None or self._window != window.window:
            self._open(window.window)
            frame = _frame(b"W", _window_header(window)) + frame
        assert self._fd is not None
        written = os.write(self._fd, frame)
        self._size += written
        if written != len(frame):
            raise OSError(28, "short write (disk full?)")

    def _open(self, window: int) -> None:
        assert self.directory is not None
        self._close_window()
        if self._lock_fd is None:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock_fd = _hold(self.directory / f"{self.owner}-{self.id}.lock")
        self._fd = os.open(
            self.path(window), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600
        )
        self._window, self._size, self._defined = window, 0, set()

    def _close_window(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._window = -1
        self._defined = set()  # the next window's file describes its routes again

    def _describe(self, route: Route) -> bytes:
        return _frame(b"R", _ROUTE.pack(route.number) + json.dumps(route.describe()).encode())


def _window_header(window: WindowContent) -> bytes:
    return json.dumps([window.window, window.start_ns, window.resource]).encode()


def _parts(total: int) -> Iterator[int]:
    step = 2**63 - 1 if total > 0 else -(2**63)
    while total:
        part = step if abs(total) > abs(step) else total
        yield part
        total -= part


def _hold(path: Path) -> int | None:
    """Create and hold the lock file (None where the platform has no flock)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


# --- reading: a window's file, and the journals of dead processes ---


def read_window(path: Path, routes: dict[int, Route] | None = None) -> WindowContent:
    """The content of one window's file; `routes` (number -> Route) is filled as read."""
    data = path.read_bytes()
    routes = {} if routes is None else routes
    content = WindowContent(window=-1, start_ns=0)
    at = 0
    while at + 4 <= len(data):
        (size,) = _U32.unpack_from(data, at)
        end = at + 4 + size + 4
        body = data[at + 4 : at + 4 + size]
        if size < 1 or end > len(data) or _U32.unpack_from(data, end - 4)[0] != zlib.crc32(body):
            content.intact = False
            break
        kind, payload = body[:1], body[1:]
        if kind == b"W":
            content.window, content.start_ns, content.resource = json.loads(payload)
        elif kind == b"R":
            (number,) = _ROUTE.unpack_from(payload)
            metric, unit, license_id, items = json.loads(payload[_ROUTE.size :])
            routes[number] = Route(metric, unit, license_id, dict(items), number)
        elif kind in (b"A", b"F"):
            number, amount = (_ADD_INT if kind == b"A" else _ADD_FLOAT).unpack(payload)
            route = routes.get(number)
            if route is None:  # an amount before its route: not this journal's writing
                content.intact = False
                break
            content.sums[route] = content.sums.get(route, 0) + amount
        elif kind == b"E":
            content.records.append(json.loads(payload))
        at = end
    if at < len(data):
        content.intact = False
    return content


@dataclass
class DeadJournal:
    """A dead process's journal, held (its lock taken) while it is recovered."""

    directory: Path
    owner: str
    id: str
    windows: list[Path]
    lock_fd: int | None

    def release(self) -> None:
        """Done: what was recovered is gone; the lock file goes (held until now)."""
        with contextlib.suppress(OSError):
            (self.directory / f"{self.owner}-{self.id}.lock").unlink()
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    def let_go(self) -> None:
        """Not done (the windows could not all be delivered): leave it for a later try."""
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def dead_journals(directory: Path, owner: str, own_id: str) -> list[DeadJournal]:
    """The journals of `owner` in `directory` whose process is gone, each held by this
    process now (another recoverer skips it); oldest windows first."""
    where = directory / JOURNAL_DIR
    try:
        names = os.listdir(where)
    except OSError:
        return []
    windows: dict[str, list[Path]] = {}
    prefix = f"{owner}-"
    for name in names:
        if name.startswith(prefix) and name.endswith(".wal"):
            journal_id = name[len(prefix) :].split("-", 1)[0]
            if journal_id != own_id:
                windows.setdefault(journal_id, []).append(where / name)
    found = []
    for journal_id, paths in sorted(windows.items()):
        held, fd = _try_hold(where / f"{owner}-{journal_id}.lock")
        if held:  # else alive, or being recovered by another process
            found.append(DeadJournal(where, owner, journal_id, sorted(paths), fd))
    return found


def _try_hold(path: Path) -> tuple[bool, int | None]:
    """(True, the lock file's descriptor) when this process holds it now; (True, None)
    where there is no flock (the journal is taken as dead); (False, None) when another
    process holds it."""
    if fcntl is None:
        return True, None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False, None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False, None
    return True, fd


def journal_windows(directory: Path) -> dict[str, list[Path]]:
    """Every owner's window files in `directory`'s journal, living processes' included:
    usage recorded and not yet in the spool (what `doow-otel spool` lists)."""
    try:
        names = sorted(os.listdir(directory / JOURNAL_DIR))
    except OSError:
        return {}
    found: dict[str, list[Path]] = {}
    for name in names:
        if name.endswith(".wal") and "-" in name:
            found.setdefault(name.split("-", 1)[0], []).append(directory / JOURNAL_DIR / name)
    return found


def adopt_journals(directory: Path, owner: str, new_owner: str) -> int:
    """Take over the dead journals of `owner` (another endpoint or key) for `new_owner`:
    their window files renamed, their ids kept (the events made from them are the same,
    so a window already delivered is not billed twice); the next recovery under
    `new_owner` sends them. A living process's journal is left alone. Returns the windows
    taken."""
    return _move_dead(
        directory, owner, lambda path: path.with_name(new_owner + path.name[len(owner) :])
    )


def set_aside_journals(directory: Path, owner: str, into: Path) -> int:
    """Move the dead journals of `owner` into `into` (never sent, kept to read); returns
    the windows moved."""
    into.mkdir(parents=True, exist_ok=True, mode=0o700)
    return _move_dead(directory, owner, lambda path: into / path.name)


def _move_dead(directory: Path, owner: str, target: Callable[[Path], Path]) -> int:
    moved = 0
    for journal in dead_journals(directory, owner, own_id=""):
        for path in journal.windows:
            with contextlib.suppress(OSError):
                os.replace(path, target(path))
                moved += 1
        journal.release()
    return moved
