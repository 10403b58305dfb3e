"""Process lifecycle hooks: fork and SIGTERM, for the tracker and the exporters.

Hooks hold their owner weakly and never raise into a fork or a signal. What each owner
does at those moments stays with the owner (`DoowTracker._before_fork`, ...); this
module only wires it to the process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["at_fork", "at_snapshot", "flush_on_sigterm", "forget_on_sigterm", "handles_sigterm"]


def at_fork(
    owner: Any,
    *,
    before: Callable[[Any], object] | None = None,
    after_in_parent: Callable[[Any], object] | None = None,
    after_in_child: Callable[[Any], object] | None = None,
) -> None:
    """`os.register_at_fork` for a method of `owner` (called with the owner), held weakly:
    an owner that is gone costs nothing at later forks."""
    if not hasattr(os, "register_at_fork"):
        return
    ref = weakref.ref(owner)

    def call(hook: Callable[[Any], object] | None) -> Callable[[], None]:
        def run() -> None:
            alive = ref()
            if alive is not None and hook is not None:
                with contextlib.suppress(Exception):  # never break a fork
                    hook(alive)

        return run

    os.register_at_fork(
        before=call(before),
        after_in_parent=call(after_in_parent),
        after_in_child=call(after_in_child),
    )


# --- Lambda SnapStart: before the snapshot, and in every environment restored from it ---


def at_snapshot(
    owner: Any,
    *,
    before: Callable[[Any], object],
    after_restore: Callable[[Any], object],
) -> bool:
    """Lambda SnapStart's runtime hooks (`snapshot_restore_py`, in Lambda's Python managed
    runtimes) for methods of `owner`, held weakly; False where there are none (not on
    Lambda, or SnapStart's library absent). A restore runs no fork hook: every restored
    environment is a copy of the snapshot's process, which must make itself unique."""
    try:
        from snapshot_restore_py import (  # type: ignore[import-untyped,unused-ignore]
            register_after_restore,
            register_before_snapshot,
        )
    except ImportError:
        return False
    ref = weakref.ref(owner)

    def call(hook: Callable[[Any], object]) -> Callable[[], None]:
        def run() -> None:
            alive = ref()
            if alive is not None:
                with contextlib.suppress(Exception):  # never break a snapshot or a restore
                    hook(alive)

        return run

    register_before_snapshot(call(before))
    register_after_restore(call(after_restore))
    return True


# --- SIGTERM (container stop): flush, then die as SIGTERM would have made us ---

_flushes: dict[Callable[[], object], float] = {}  # flush -> its budget in seconds
_flush_thread: threading.Thread | None = None
_flushed = threading.Event()
_installed = False
DIE_MARGIN = 0.5
"""Seconds past the longest budget before the process dies whatever the flushes do."""


def flush_on_sigterm(flush: Callable[[], object], budget: float) -> None:
    """Run `flush` when SIGTERM arrives, unless the application handles SIGTERM itself;
    the process dies `budget` seconds after the signal at the latest."""
    global _installed
    _flushes[flush] = budget
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # the application (or its server) handles SIGTERM itself
        signal.signal(signal.SIGTERM, _on_sigterm)
        _installed = True
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        pass


def handles_sigterm() -> bool:
    """Whether SIGTERM runs Doow's flush (False: the default action, or the
    application's own handler)."""
    return signal.getsignal(signal.SIGTERM) is _on_sigterm


def forget_on_sigterm(flush: Callable[[], object]) -> None:
    _flushes.pop(flush, None)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Flush on another thread and return at once.

    The signal may interrupt the main thread anywhere: inside a flush holding the SDK's
    export lock, inside `track()` holding an aggregation lock. Flushing here would wait
    for those locks forever; returning lets the main thread release them. When the
    flush is done, or its budget is spent (a flush already in progress may hold the
    export lock that long), the thread signals again, and we die. Nothing is lost by
    dying mid-request: every batch is in the spool before its first request.
    """
    global _flush_thread
    if _flushed.is_set():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    if _flush_thread is None:
        # Not a daemon: an interpreter that exits meanwhile waits for the flush.
        _flush_thread = threading.Thread(target=_flush_then_die, name="doow-sigterm")
        _flush_thread.start()


def _flush_then_die() -> None:
    budget = max(_flushes.values(), default=0.0) + DIE_MARGIN
    worker = threading.Thread(target=_run_flushes, name="doow-sigterm-flush", daemon=True)
    worker.start()
    worker.join(budget)
    _flushed.set()
    os.kill(os.getpid(), signal.SIGTERM)  # the handler, on the main thread, ends us


def _run_flushes() -> None:
    for flush in list(_flushes):
        with contextlib.suppress(Exception):
            flush()
