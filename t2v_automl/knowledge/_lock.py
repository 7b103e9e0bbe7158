"""Exclusive access to one knowledge-base file, across processes and threads.

:meth:`KnowledgeBase.locked_update <t2v_automl.knowledge.KnowledgeBase.locked_update>`
holds two locks while it loads, yields and saves:

- an in-process :class:`threading.Lock` per file, for the threads of this process (where
  ``flock`` is emulated with POSIX record locks, as on NFS, locks belong to the process and
  threads would not exclude each other); a forked child starts with fresh ones, since the
  threads that held its parent's are gone;
- a :class:`filelock.FileLock` on the sidecar ``<file>.lock``: ``flock`` on POSIX,
  ``msvcrt.locking`` on Windows. Both are released by the kernel when their holder dies,
  so a writer killed with ``kill -9`` in the middle of a save leaves the lock free. The
  soft (marker-file) fallback of filelock, which a killed holder would leave taken, is
  turned off: where the file system has no working lock the update fails with a message
  instead. The sidecar file stays in place after release (removing it would open a race).

Once both are held, the temporary files that writers killed in the middle of a save left
beside the file are removed (:func:`t2v_automl.knowledge._io.clean_stale_temps`: only those
of processes that are gone).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from t2v_automl.exceptions import KnowledgeBaseError
from t2v_automl.knowledge._io import clean_stale_temps

__all__ = ["exclusive_lock", "lock_path_for", "reset_thread_locks"]

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(target: Path) -> threading.Lock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(str(target), threading.Lock())


def reset_thread_locks() -> None:
    """Forget every in-process lock (run in a forked child: locks held by others are void).

    In a forked child only the forking thread survives, so an in-process lock another
    parent thread held at fork time would never be released. Registered with
    :func:`os.register_at_fork`; tests may call it too.
    """
    global _THREAD_LOCKS_GUARD
    _THREAD_LOCKS_GUARD = threading.Lock()
    _THREAD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reset_thread_locks)


def lock_path_for(target: Path) -> Path:
    """The sidecar lock file of the knowledge base ``target``: ``<target>.lock``."""
    return target.with_name(target.name + ".lock")


@cache
def _file_lock_options() -> dict[str, Any]:
    """Options that keep the lock a kernel lock with a persistent sidecar file.

    ``fallback_to_soft`` and ``preserve_lock_file`` exist from filelock 4 on; older
    versions never fall back to a marker file and keep the file on POSIX anyway.
    """
    import filelock

    params = inspect.signature(filelock.FileLock.__init__).parameters
    wanted = {"fallback_to_soft": False, "preserve_lock_file": True}
    return {k: v for k, v in wanted.items() if k in params}


@contextlib.contextmanager
def exclusive_lock(target: Path, timeout: float | None = None) -> Iterator[Path]:
    """Hold the thread lock and the file lock of the knowledge base ``target``.

    Parameters
    ----------
    target : pathlib.Path
        The real (link-resolved) path of the knowledge-base file; its directory must exist.
    timeout : float, optional
        Seconds to wait for both locks together; default: wait forever.

    Yields
    ------
    pathlib.Path
        The sidecar lock file.

    Raises
    ------
    KnowledgeBaseError
        The locks were not obtained within ``timeout``, or the file system cannot lock.
    """
    import filelock

    lock_path = lock_path_for(target)
    deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))

    def too_late() -> KnowledgeBaseError:
        return KnowledgeBaseError(
            f"could not lock {str(lock_path)!r} within {timeout} s: another process or "
            f"thread holds it. Retry later or raise the timeout."
        )

    def left() -> float:
        return -1 if deadline is None else max(0.0, deadline - time.monotonic())

    thread_lock = _thread_lock(target)
    if not thread_lock.acquire(timeout=left()):
        raise too_late()
    try:
        file_lock = filelock.FileLock(lock_path, **_file_lock_options())
        try:
            file_lock.acquire(timeout=left(), poll_interval=0.05)
        except filelock.Timeout:
            raise too_late() from None
        except OSError as exc:
            raise KnowledgeBaseError(
                f"cannot lock {str(lock_path)!r}: {exc}. The file system may not support "
                f"file locks (flock); put the knowledge base on a local disk, or write "
                f"separate files and merge() them."
            ) from exc
        try:
            clean_stale_temps(target)
            yield lock_path
        finally:
            file_lock.release()
    finally:
        thread_lock.release()
