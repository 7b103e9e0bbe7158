"""Atomic file replacement for caches and build outputs (layer 0).

Readers of a file written by :func:`replace_atomically` see the old file or the new one,
never a part: the content goes to a temporary file in the target's directory, is flushed
and fsync-ed, and is moved over the target with :func:`os.replace`. The knowledge base
has a stricter writer of its own (``t2v_automl.knowledge``: file modes kept, stale
temporary files cleaned, links and special files refused) built for files users share.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def replace_atomically(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object],
                       *, mode: int = 0o644) -> Path:
    """Write ``path`` through ``write`` so that no reader sees a partial file.

    Parameters
    ----------
    path : str or path-like
        The file to (re)place; its directory is created if needed.
    write : callable
        Called once with the binary file object to fill.
    mode : int, default=0o644
        Permissions of the new file (a temporary file is private; a cache may be shared).

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    On any error, including ``KeyboardInterrupt``, the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
