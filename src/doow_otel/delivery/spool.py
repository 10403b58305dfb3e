"""The durable spool: batches that could not be delivered yet, kept on disk.

Every batch is written here *before* its first attempt (a write-ahead entry: one
small file, no fsync, so a process killed mid-request loses nothing), removed when
Doow has answered, and fsynced when its deadline passes undelivered. The next send
or flush replays entries oldest first with their original ids; Doow deduplicates
by event id, so a replay after an ambiguous failure never bills twice.

Guarantees beyond that:

- Entries belong to the endpoint and key that wrote them. Each file name starts with
  the owner: a salted hash of (endpoint, key) (the salt is a random file, `.salt`, in
  the spool directory; the key itself is never in any name or file). A client only
  lists, replays and evicts its own entries. Entries of other owners, and entries
  written before owners existed (no owner in the name: their endpoint and key are
  unknown), are never sent; they stay where they are, are counted in `others()` and
  reported once. `rebind()` moves a client's own entries to a new key (rotation).
- A directory that cannot be listed, read or written never raises: the problem is
  reported once and entries are journaled in memory instead (bounded by
  `max_memory_batches`; the oldest go first, counted and reported). A failed write
  removes its temporary file.
- Each entry carries its count of failed attempts and its creation time (in its name),
  so a batch the server keeps refusing can be set aside (`set_aside()`, into
  `set-aside/`) after a bounded number of attempts or a bounded age.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from doow_otel.delivery.journal import journal_windows
from doow_otel.delivery.reports import Reporter, key_hint
from doow_otel.delivery.wire import Batch
from doow_otel.errors import counted

try:
    import fcntl
except ImportError:  # Windows: no leases (processes sharing a spool may offer a batch twice)
    fcntl = None  # type: ignore[assignment]

__all__ = ["Entry", "Lease", "Owner", "Spool", "default_spool_dir"]

SUFFIX = ".batch"
STALE_TEMP_SECONDS = 60.0
SALT_FILE = ".salt"
OWNERS = ".owners"  # one small file per owner: its endpoint and the key's first characters
BUDGETS = ".budgets"  # one per owner: the event budget's log its processes share (pacing.py)
SET_ASIDE = "set-aside"
CORRUPT = "corrupt"
MEMORY = "(memory)"
# u<owner>-<created ns>-<batch id>[-n<events>]-a<failed attempts>.batch
_OWNED = re.compile(r"^u([0-9a-f]{16})-(\d{20})-(.+?)(?:-n(\d+))?-a(\d+)\.batch$")
REFRESH_SECONDS = 1.0
"""How stale this process's view of the directory may be: its own writes and removes
update the view at once; other processes' are seen within this long. A write or a
replay never lists the directory (its cost does not grow with the entries held)."""
_UNOWNED = re.compile(r"^(\d{20})-(.+)\.batch$")


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


@dataclass
class Owner:
    """The entries of one owner, as `Spool.owners()` lists them. `owner` is "" for entries
    written before owners existed; `endpoint` and `key_prefix` are None when unknown."""

    owner: str
    mine: bool
    endpoint: str | None = None
    key_prefix: str | None = None
    paths: list[Path] = field(default_factory=list)
    oldest_ns: int = 0
    attempts: int = 0  # the most failed attempts of any of its entries
    windows: list[Path] = field(default_factory=list)  # its journals' windows, not yet sealed


@dataclass(frozen=True)
class Entry:
    path: Path
    batch: Batch
    created_ns: int = 0  # wall clock, when the events were first journaled
    attempts: int = 0  # failed attempts so far (persisted across processes)


class Spool:
    """Bounded by bytes and entries; when full, the oldest entries are dropped and reported."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        max_batches: int = 10_000,
        max_memory_batches: int = 1_000,
        report: Reporter | None = None,
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_spool_dir()
        self.max_bytes = max_bytes
        self.max_batches = max_batches
        self.max_memory_batches = max_memory_batches
        self.report: Reporter = report or Reporter(None)  # a client binds its own
        self.dropped_full = 0  # events dropped because the spool (or memory journal) was full
        self._identity = b""
        self._owner: str | None = None
        self._ready = False
        self._lock = threading.Lock()
        self._memory: dict[Path, bytes] = {}
        self._gone: set[Path] = set()  # delivered, but the file could not be removed
        self._sizes: dict[str, int] = {}  # entry name -> bytes (an entry never changes)
        self._listing: set[str] | None = None  # the directory's names, as last seen
        self._listed_at = float("-inf")
        self._own: list[str] = []  # this owner's entry names, sorted (oldest first)
        self._own_bytes = 0  # their bytes, as far as known
        self._others = 0  # entries of other owners (or none), as last listed
        self._claimed: set[Path] = set()  # held by a send of this process (claim)
        self._problem_reported = False
        self._others_reported = False
        self._label: str | None = None  # this owner's label, until written once

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r})"

    # --- ownership ---

    def bind(self, endpoint: str, api_key: str, *, report: Reporter | None = None) -> None:
        """Entries written from now on belong to (endpoint, key); only theirs are listed.
        `report`: where the spool's problems go from now on (the client's reporter)."""
        if report is not None:
            self.report = report
        self._identity = hashlib.sha256(f"{endpoint}\0{api_key}".encode()).digest()
        self._owner = None
        self._listing = None  # this owner's entries are others: list again
        self._label = f"{endpoint}\n{key_hint(api_key)}\n"

    def rebind(self, endpoint: str, api_key: str) -> None:
        """Bind to a new key (a rotation) and take this owner's entries along."""
        mine = self.paths()
        self.bind(endpoint, api_key)
        for path in mine:
            parsed = _OWNED.match(path.name)
            if parsed is None:
                continue
            target = path.with_name(f"u{self.owner}-" + path.name.split("-", 1)[1])
            with self._lock:
                if path in self._memory:
                    self._memory[target] = self._memory.pop(path)
                    continue
            try:
                os.replace(path, target)
            except OSError as exc:
                self._problem(f"could not move an entry to the new key: {exc.strerror}")
        self._listing = None

    @property
    def owner(self) -> str:
        if self._owner is None:
            self._owner = self._owner_of(self._identity)
        return self._owner

    def budget_file(self) -> Path:
        """Where the processes sending with this endpoint and key keep their shared event
        budget (delivery/pacing.py); the directory is made when first written."""
        return self.directory / BUDGETS / self.owner

    def _owner_of(self, identity: bytes) -> str:
        return hashlib.sha256(self._salt() + identity).hexdigest()[:16]

    def adopt(self, endpoint: str | None, api_key: str | None) -> int:
        """Take over the entries of (endpoint, key), or with None the entries that have no
        owner (written before owners existed); returns how many batches were taken."""
        other = ""
        if endpoint is not None and api_key is not None:
            other = self._owner_of(hashlib.sha256(f"{endpoint}\0{api_key}".encode()).digest())
        return self.adopt_owner(other)

    def adopt_owner(self, owner: str) -> int:
        """Take over the entries of `owner` (an id as `owners()` lists it; "" for entries
        with no owner); returns how many batches were taken."""
        taken = 0
        for name in self._names():
            if owner and _OWNED.match(name) and name.startswith(f"u{owner}-"):
                target = f"u{self.owner}-" + name.split("-", 1)[1]
            elif not owner and (unowned := _UNOWNED.match(name)):
                target = f"u{self.owner}-{unowned[1]}-{unowned[2]}-a0{SUFFIX}"
            else:
                continue
            try:
                os.replace(self.directory / name, self.directory / target)
            except OSError as exc:
                self._problem(f"could not take over {name}: {exc.strerror or exc}")
                continue
            taken += 1
        self._others_reported = False  # report what is left, if anything
        self._listing = None
        return taken

    def _salt(self) -> bytes:
        path = self.directory / SALT_FILE
        with contextlib.suppress(OSError):
            return path.read_bytes()
        salt = os.urandom(16)  # what secrets.token_bytes does, without its imports
        temporary = self.directory / f".tmp-{uuid.uuid4().hex}"
        try:
            self._prepare()
            with open(temporary, "wb") as handle:
                handle.write(salt)
                handle.flush()
                os.fsync(handle.fileno())  # a lost salt would orphan every entry
            try:
                os.link(temporary, path)  # fails if another process made one meanwhile
            except FileExistsError:
                salt = path.read_bytes()
            self._fsync_directory()
        except OSError as exc:
            self._problem(f"cannot create {path}: {exc.strerror or exc}")
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink()
        return salt

    def owners(self) -> list[Owner]:
        """Every owner's entries in the directory (this one's first), with the endpoint and
        key prefix each was written for when known: what `doow-otel spool` shows."""
        found: dict[str, Owner] = {}
        for name in sorted(self._names()):
            owned, unowned = _OWNED.match(name), _UNOWNED.match(name)
            if owned is None and unowned is None:
                continue
            owner = owned[1] if owned else ""
            group = found.get(owner)
            if group is None:
                group = found[owner] = Owner(owner, mine=bool(owner) and owner == self.owner)
                group.endpoint, group.key_prefix = self._read_label(owner)
            group.paths.append(self.directory / name)
            created = int(owned[2]) if owned else int(unowned[1])  # type: ignore[index]
            group.oldest_ns = min(group.oldest_ns or created, created)
            group.attempts = max(group.attempts, int(owned[5]) if owned else 0)
        for owner, windows in journal_windows(self.directory).items():
            group = found.get(owner)
            if group is None:
                group = found[owner] = Owner(owner, mine=owner == self.owner)
                group.endpoint, group.key_prefix = self._read_label(owner)
            group.windows = windows
            with contextlib.suppress(OSError):
                written = min(path.stat().st_mtime_ns for path in windows)
                group.oldest_ns = min(group.oldest_ns or written, written)
        return sorted(found.values(), key=lambda group: (not group.mine, group.oldest_ns))

    def _read_label(self, owner: str) -> tuple[str | None, str | None]:
        try:
            endpoint, prefix = (self.directory / OWNERS / owner).read_text().splitlines()[:2]
        except (OSError, ValueError):
            return None, None
        return endpoint, prefix

    def write_label(self) -> None:
        """Once per process, with its first entry (or its journal's first window): which
        endpoint and key (its first characters only) this owner is, so that a person can
        tell whose usage waits."""
        label = self._label
        if label is None:
            return
        path = self.directory / OWNERS / self.owner
        with contextlib.suppress(OSError):  # no directory yet: with the first entry, then
            if not path.exists():
                path.parent.mkdir(exist_ok=True, mode=0o700)
                path.write_text(label)
            self._label = None

    def others(self) -> int:
        """Entries on disk that belong to another endpoint or key, or to no known owner."""
        self._refresh()
        return self._others

    # --- journal ---

    def _prepare(self) -> None:
        if not self._ready:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._set_aside_stale_temporaries()
            self._ready = True

    def write(
        self, batch: Batch, *, durable: bool, created_ns: int | None = None, attempts: int = 0
    ) -> Path:
        """Write atomically (temporary file, rename); fsync when `durable`.

        When the directory is unusable the entry is kept in memory instead (reported once).
        """
        created = created_ns if created_ns is not None else time.time_ns()
        name = f"u{self.owner}-{created:020d}-{batch.batch_id}-n{len(batch)}-a{attempts}{SUFFIX}"
        final = self.directory / name
        temporary = self.directory / f".tmp-{uuid.uuid4().hex}"
        body = batch.body()  # the bytes the client posts, made once
        try:
            self._prepare()
            try:
                with open(temporary, "wb") as handle:
                    handle.write(body)
                    if durable:
                        handle.flush()
                        os.fsync(handle.fileno())
                os.replace(temporary, final)
            finally:
                with contextlib.suppress(OSError):
                    temporary.unlink()
            if durable:
                self._fsync_directory()
        except OSError as exc:
            self._problem(f"cannot write to {self.directory}: {exc.strerror or exc}")
            return self._remember(name, body)
        self._listed(name, len(body))
        self.write_label()
        self._problem_reported = False  # the disk works again: report the next problem
        self._enforce_bounds(keep=final)
        return final

    def _remember(self, name: str, body: bytes) -> Path:
        path = self.directory / MEMORY / name
        with self._lock:
            self._memory[path] = body
            oldest = sorted(self._memory, key=lambda p: p.name)
            overflow = oldest[: max(0, len(oldest) - self.max_memory_batches)]
            dropped = [Batch.from_body(self._memory.pop(p)) for p in overflow]
        for batch in dropped:
            self._dropped_full(len(batch), f"memory journal full ({self.max_memory_batches})")
        return path

    def make_durable(self, path: Path) -> None:
        if path in self._memory:
            return
        try:
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
            self._fsync_directory()
        except OSError as exc:
            self._problem(f"cannot fsync {path.name}: {exc.strerror or exc}")

    def remove(self, path: Path) -> None:
        with self._lock:
            if self._memory.pop(path, None) is not None:
                return
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # delivered: never list it again in this process
            self._gone.add(path)
            self._problem(f"cannot remove {path.name}: {exc.strerror or exc}")
        self._unlisted(path.name)

    def claim(self, path: Path) -> Lease | None:
        """Hold the entry while it is sent, so that no other send (another thread, or
        another process sharing the spool) offers it at the same moment: no duplicate
        offers to Doow's budget. None when another holds it, or it is gone. The lease
        ends with the process, whatever kills it."""
        with self._lock:
            if path in self._claimed:
                return None
            self._claimed.add(path)
        if path in self._memory or fcntl is None:
            return Lease(None, lambda: self._unclaim(path))
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            self._unclaim(path)
            return None  # replayed and removed meanwhile by another process
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            self._unclaim(path)
            return None
        return Lease(fd, lambda: self._unclaim(path))

    def _unclaim(self, path: Path) -> None:
        with self._lock:
            self._claimed.discard(path)

    def paths(self) -> list[Path]:
        """This owner's entries (on disk and in memory), oldest first."""
        return list(self.oldest())

    def oldest(self) -> Iterator[Path]:
        """This owner's entries, oldest first, made one at a time (a replay takes the first
        few: its cost does not grow with the entries waiting)."""
        self._refresh()
        self._report_others()
        with self._lock:
            names = list(self._own)
            memory = list(self._memory)
            gone = set(self._gone)
        if memory:
            yield from sorted([self.directory / n for n in names] + memory, key=lambda p: p.name)
            return
        for name in names:
            path = self.directory / name
            if path not in gone:
                yield path

    def _report_others(self) -> None:
        others = self._others
        if others and not self._others_reported:
            self._others_reported = True
            self.report(
                "configuration",
                f"{counted(others, 'batch')} of usage in {self.directory} "
                f"{'was' if others == 1 else 'were'} written with another endpoint or API key "
                "and will not be sent with this one. To see whose: doow-otel spool. If it is "
                "yours: doow-otel spool adopt (sends it with the current key and endpoint); if "
                "not: doow-otel spool set-aside",
                count=others,
            )

    def __len__(self) -> int:
        self._refresh()
        with self._lock:
            count = len(self._own) + len(self._memory)
            if self._gone:  # delivered, but their files could not be removed
                own = set(self._own)
                count -= sum(1 for path in self._gone if path.name in own)
            return count

    def pending_events(self) -> int:
        """Events waiting in this owner's entries (as their names say)."""
        self._refresh()
        with self._lock:
            names = list(self._own) + [p.name for p in self._memory]
        return sum(_events_in(name) for name in names)

    def waiting(self) -> tuple[int, int | None]:
        """This owner's entries: (their bytes, the creation time of the oldest in Unix ns,
        None when there is none), for delivery health (`doow_otel.otel.self_metrics`)."""
        self._within_bounds()  # sizes the entries other processes wrote, once each
        with self._lock:
            gone = {path.name for path in self._gone}
            names = [name for name in self._own if name not in gone]
            size = self._own_bytes + sum(len(body) for body in self._memory.values())
            names += [path.name for path in self._memory]
        created = [int(parsed[2]) for parsed in map(_OWNED.match, names) if parsed]
        return size, min(created, default=None)

    def load(self, path: Path) -> Entry | None:
        """Read one entry; a corrupt one is set aside, reported, and skipped."""
        parsed = _OWNED.match(path.name)
        created, attempts = (int(parsed[2]), int(parsed[5])) if parsed else (0, 0)
        with self._lock:
            body = self._memory.get(path)
        try:
            if body is None:
                body = path.read_bytes()
            return Entry(path, Batch.from_body(body), created, attempts)
        except FileNotFoundError:
            return None  # replayed meanwhile by another process
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            self._move(path, CORRUPT, f"unreadable ({type(exc).__name__})")
            return None
        except OSError as exc:
            self._gone.add(path)
            self._problem(f"cannot read {path.name}: {exc.strerror or exc}")
            return None

    def record_attempt(self, path: Path) -> Path:
        """Count one more failed attempt for the entry; returns its (renamed) path."""
        parsed = _OWNED.match(path.name)
        if parsed is None:
            return path
        target = path.with_name(path.name[: parsed.start(5)] + f"{int(parsed[5]) + 1}{SUFFIX}")
        with self._lock:
            if path in self._memory:
                self._memory[target] = self._memory.pop(path)
                return target
        try:
            os.replace(path, target)
        except OSError:
            return path
        size = self._sizes.get(path.name, 0)
        self._unlisted(path.name)
        self._listed(target.name, size)
        return target

    def set_aside(self, path: Path, count: int) -> str:
        """Take the entry out of the queue, onto disk under `set-aside/`; says where it went
        (for the caller's report)."""
        with self._lock:
            body = self._memory.pop(path, None)
        where = self.directory / SET_ASIDE
        try:
            where.mkdir(exist_ok=True, mode=0o700)
            if body is not None:
                (where / path.name).write_bytes(body)
            else:
                os.replace(path, where / path.name)
            self._unlisted(path.name)
        except OSError as exc:
            self._gone.add(path)
            if body is not None:
                with self._lock:
                    self._memory[path] = body
            return (
                f"could not be moved to {where} ({exc.strerror or exc}); "
                "it is skipped until the process restarts"
            )
        return f"set aside in {where}"

    # --- internals ---

    def _mine(self, name: str) -> bool:
        return name.startswith(f"u{self.owner}-") and name.endswith(SUFFIX)

    def _names(self) -> list[str]:
        """The directory's names: this process's view, listed again when older than
        `REFRESH_SECONDS` (see there)."""
        self._refresh()
        with self._lock:
            return list(self._listing or ())

    def _refresh(self) -> None:
        if self._listing is not None and time.monotonic() - self._listed_at <= REFRESH_SECONDS:
            return
        try:
            names = os.listdir(self.directory) if self.directory.is_dir() else []
        except OSError as exc:
            self._problem(f"cannot list {self.directory}: {exc.strerror or exc}")
            names = []
        own = sorted(name for name in names if self._mine(name))
        others = sum(1 for name in names if _is_batch(name) and not self._mine(name))
        with self._lock:
            self._listing = set(names)
            self._listed_at = time.monotonic()
            self._own = own
            self._others = others
            self._own_bytes = sum(self._sizes.get(name, 0) for name in own)

    def _listed(self, name: str, size: int) -> None:
        """This process wrote `name` (`size` bytes): its view has it at once."""
        with self._lock:
            self._sizes[name] = size
            if self._listing is not None and name not in self._listing:
                self._listing.add(name)
                if self._mine(name):
                    bisect.insort(self._own, name)
                    self._own_bytes += size

    def _unlisted(self, name: str) -> None:
        """This process removed or renamed `name`."""
        with self._lock:
            size = self._sizes.pop(name, 0)
            if self._listing is not None and name in self._listing:
                self._listing.discard(name)
                index = bisect.bisect_left(self._own, name)
                if index < len(self._own) and self._own[index] == name:
                    del self._own[index]
                    self._own_bytes -= size

    def _problem(self, what: str) -> None:
        if not self._problem_reported:
            self._problem_reported = True
            self.report(
                "dropped",
                f"spool problem: {what}; undelivered events are kept in memory instead "
                f"(at most {self.max_memory_batches} batches) until the directory is usable",
            )

    def _dropped_full(self, count: int, why: str) -> None:
        with self._lock:
            self.dropped_full += count
        self.report(
            "dropped", f"{why}: dropped its oldest batch of {counted(count, 'event')}", count=count
        )

    def _move(self, path: Path, folder: str, why: str) -> None:
        target = self.directory / folder
        try:
            target.mkdir(exist_ok=True)
            os.replace(path, target / path.name.lstrip("."))
            self._unlisted(path.name)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._gone.add(path)
            self._problem(f"cannot move {path.name} to {target}: {exc.strerror or exc}")
        self.report("dropped", f"spool entry {path.name} set aside in {target}: {why}")

    def _set_aside_stale_temporaries(self) -> None:
        # A temporary left by a process killed mid-write was never renamed, so never sent.
        cutoff = time.time() - STALE_TEMP_SECONDS
        for path in self.directory.glob(".tmp-*"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    self._move(path, CORRUPT, "partly written (process stopped mid-write)")

    def _within_bounds(self) -> bool:
        """Whether this owner's entries are within the bounds, from this process's view: a
        journal write costs no listing and no stat per entry in the spool. Entries seen
        only in a listing are stat'ed once, when it is refreshed."""
        self._refresh()
        with self._lock:
            unsized = (
                [name for name in self._own if name not in self._sizes]
                if (len(self._sizes) < len(self._own))
                else []
            )
        for name in unsized:
            try:
                size = (self.directory / name).stat().st_size
            except FileNotFoundError:  # sent and removed by another process
                size = 0
            with self._lock:
                if name not in self._sizes:
                    self._sizes[name] = size
                    self._own_bytes += size
        return len(self._own) <= self.max_batches and self._own_bytes <= self.max_bytes

    def _enforce_bounds(self, keep: Path) -> None:
        if self._within_bounds():
            return
        with self._lock:
            entries = [self.directory / name for name in self._own]
        count, total = len(entries), self._own_bytes
        for path in entries:
            if count <= self.max_batches and total <= self.max_bytes:
                break
            if path == keep:
                continue
            size = self._sizes.get(path.name, 0)
            entry = self.load(path)
            self.remove(path)
            count -= 1
            total -= size
            limits = f"spool full ({self.max_batches} batches / {self.max_bytes} bytes)"
            self._dropped_full(len(entry.batch) if entry else 0, limits)

    def _fsync_directory(self) -> None:
        if sys.platform == "win32":
            return
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _is_batch(name: str) -> bool:
    return bool(_OWNED.match(name) or _UNOWNED.match(name))


def _events_in(name: str) -> int:
    parsed = _OWNED.match(name)
    return int(parsed[4]) if parsed and parsed[4] else 1


class Lease:
    """An entry held while it is sent (see `Spool.claim`)."""

    def __init__(self, fd: int | None, done: Callable[[], None]) -> None:
        self._fd = fd
        self._done: Callable[[], None] | None = done

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the lock goes with the descriptor
            self._fd = None
        if self._done is not None:
            self._done()
            self._done = None

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
