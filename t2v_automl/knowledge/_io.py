"""The byte formats: a knowledge base file, and an embeddings file.

Both are ``.npz`` archives written with :func:`numpy.savez` (no pickle: they are read back
with ``allow_pickle=False``, so loading a file somebody else made cannot run code) whose
``__meta__`` array holds UTF-8 JSON, and both are written atomically by
:func:`atomic_write`: to a temporary file in the target's directory, fsync-ed, moved into
place with :func:`os.replace`, then the directory is fsync-ed.

One rule for every writer (:meth:`KnowledgeBase.save
<t2v_automl.knowledge.KnowledgeBase.save>`, ``locked_update``, :func:`save_embeddings`,
hence ``t2v-automl embed``): the path must name a regular file or a new one. A symbolic link
is followed: the file it points to is replaced atomically and the link stays. A directory,
a device (``/dev/null``), a named pipe or a socket is refused with
:class:`~t2v_automl.exceptions.KnowledgeBaseError` before anything is written (replacing
``/dev/null`` by a regular file would break it for the whole machine). The same goes for
reading: :func:`read_file_bytes` refuses what is not a regular file (reading ``/dev/zero``
would never end).

Temporary files are named ``.<file name>.<pid>.<random>.tmp``. A writer killed with
``kill -9`` leaves its own behind; the next write (or ``locked_update``'s lock) of the same
file removes those of writers whose process is gone (on this machine) once they have not
been modified for :data:`STALE_TEMP_AGE` seconds, so another writer's temporary file is never
removed while it writes (one on another machine sharing the directory could be, if it
stayed untouched that long in the middle of a write). Files of unknown origin (older
names, or where process ids cannot be checked, e.g. on Windows) are removed after
:data:`STALE_TEMP_UNKNOWN_AGE` seconds.

Knowledge base (:data:`FORMAT_NAME`, version :data:`FORMAT_VERSION`)
    Arrays ``embeddings`` ``(n_tasks, dim)``; ``scores``, ``stderr``, ``eval_time``
    ``(n_tasks, n_extractors)``; ``embed_time`` ``(n_tasks,)``; ``extra_0``,
    ``extra_1``... (extra embedding sets), all little-endian float64 with NaN = missing.
    The JSON has the keys ``format``, ``format_version``, ``created_by``, ``meta``,
    ``task_names``, ``extractor_names``, ``provenance``, ``extractor_info``, ``extra``
    (list of ``{"name", "key", "meta"}``), ``arrays`` (sorted array keys besides
    ``__meta__``) and ``sha256`` (see :func:`checksum`). A truncated or corrupted file, or
    one edited without recomputing the checksum, fails that check (or the zip's CRC) and is
    refused with :class:`~t2v_automl.exceptions.KnowledgeBaseError`. The checksum detects
    *damage*, not *tampering*: it is not keyed, so whoever edits the file can recompute it
    and the file is accepted. Trust a knowledge base as you trust its source (loading one
    never runs code: no pickle).

Embeddings (:data:`EMBEDDINGS_FORMAT`, written by ``t2v-automl embed``)
    Arrays ``embeddings`` ``(n, dim)`` float64, ``task_names`` (unicode) and ``__meta__``
    whose JSON has ``format``, ``format_version``, ``created_by``, ``meta``
    (:meth:`EmbeddingMeta.to_dict` with ``n_images`` 0) and ``tasks`` (one dict per row;
    its ``n_images`` and ``fingerprint`` are read back). The same JSON, indented, is
    written beside it as ``<name>.json`` for people to read.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import io
import json
import os
import re
import stat
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import IO, Any

import numpy as np

from t2v_automl._logging import logger
from t2v_automl.embedding import Embedding, EmbeddingMeta, check_compatible, stack_embeddings
from t2v_automl.exceptions import InvalidInputTypeError, KnowledgeBaseError
from t2v_automl.knowledge._validate import json_copy

__all__ = [
    "DEFAULT_KNOWLEDGE_FILE", "PACKAGED_KNOWLEDGE", "EMBEDDINGS_FORMAT", "FORMAT_NAME",
    "FORMAT_VERSION",
    "MATRIX_KEYS", "META_KEY", "STALE_TEMP_AGE", "STALE_TEMP_UNKNOWN_AGE", "atomic_write",
    "check_writable", "checksum", "clean_stale_temps", "decode_knowledge", "default_resource",
    "encode_knowledge", "load_embeddings", "read_file_bytes", "real_target", "refusal",
    "save_embeddings", "write_npz",
]

#: Value of the ``format`` field of a knowledge base's JSON metadata.
FORMAT_NAME = "t2v-automl.knowledge-base"
#: Version of the knowledge-base format written here (and the only one read).
FORMAT_VERSION = 1
#: File name of the knowledge base shipped as package data (``t2v_automl/data/``).
DEFAULT_KNOWLEDGE_FILE = "knowledge_default.npz"
#: The knowledge bases shipped in ``t2v_automl/data/``, by the name
#: :meth:`~t2v_automl.knowledge.KnowledgeBase.named` takes: the default base (13
#: built-in extractors) and the expert zoo's (the 13 + 22 experts of
#: :mod:`t2v_automl.experts`, whose weights ``benchmarks/build_knowledge_v2.py`` rebuilds).
PACKAGED_KNOWLEDGE = {"default": DEFAULT_KNOWLEDGE_FILE, "experts": "knowledge_experts.npz"}
#: Value of the ``format`` field of an embeddings file (``t2v-automl embed``).
EMBEDDINGS_FORMAT = "t2v-automl.embeddings"
#: Version of the embeddings format written here.
EMBEDDINGS_FORMAT_VERSION = 1

#: Name of the array holding the JSON metadata, in both formats.
META_KEY = "__meta__"
#: Arrays every knowledge-base file has.
MATRIX_KEYS = ("embeddings", "scores", "stderr", "eval_time", "embed_time")
#: Seconds without a change after which a dead writer's temporary file is removed.
STALE_TEMP_AGE = 60.0
#: The same for a temporary file whose writer cannot be checked (older name, no pid check).
STALE_TEMP_UNKNOWN_AGE = 3600.0


def default_resource() -> Traversable:
    """Where the packaged default knowledge base lives.

    Returns
    -------
    importlib.resources.abc.Traversable
        ``t2v_automl/data/knowledge_default.npz`` (it may be absent from a source checkout
        without the data).
    """
    return importlib.resources.files("t2v_automl").joinpath("data", DEFAULT_KNOWLEDGE_FILE)


def package_version() -> str:
    """The installed t2v-automl version, or ``"unknown"`` (informative field only)."""
    try:
        from importlib.metadata import version

        return version("t2v-automl")
    except Exception:  # noqa: BLE001 - informative field only
        return "unknown"


def real_target(path: str | os.PathLike[str]) -> Path:
    """``path`` with symbolic links resolved: the file that is really read and replaced.

    Writers that name one knowledge base through different links (``~/kb.npz`` ->
    ``/shared/kb.npz``) must lock the same sidecar file and replace the real file, not the
    link; otherwise their updates diverge and some are lost.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    pathlib.Path
    """
    return Path(os.path.realpath(os.fspath(path)))


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, word in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link that "
                                                                   "cannot be resolved")):
        if test(mode):
            return word
    return "not a regular file"


def check_writable(path: str | os.PathLike[str], what: str | None = None) -> Path:
    """The file a writer would replace for ``path``, refused unless regular or new.

    Parameters
    ----------
    path : str or path-like
        What the caller was asked to write; a symbolic link is followed.
    what : str, optional
        How messages name what is written (``"the embeddings"``).

    Returns
    -------
    pathlib.Path
        :func:`real_target` of ``path``: a regular file, or a path where nothing exists yet.

    Raises
    ------
    KnowledgeBaseError
        ``path`` is (or a link leads to) a directory, a device such as ``/dev/null``, a
        named pipe, a socket, or a link that cannot be resolved (a loop).
    """
    target = real_target(path)
    written = f" {what}" if what else ""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return target
    except OSError as exc:
        raise KnowledgeBaseError(f"cannot write{written} to {str(path)!r}: {exc}.") from exc
    if not stat.S_ISREG(mode):
        shown = str(path) if str(path) == str(target) else f"{str(path)} -> {str(target)}"
        raise KnowledgeBaseError(
            f"refusing to write{written} to {shown!r}: it is {_kind(mode)}, which a write "
            f"would replace by a regular file. Name a regular file or a new path."
        )
    return target


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def _pid_alive(pid: int) -> bool | None:
    """Whether process ``pid`` exists on this machine (None: cannot tell here)."""
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


_TEMP_MIDDLE = re.compile(r"(?:(?P<pid>\d+)\.)?[a-z0-9_]{8}")


def clean_stale_temps(target: Path, now: float | None = None) -> list[Path]:
    """Remove the temporary files that dead writers of ``target`` left (``kill -9``).

    A file ``.<target name>.<pid>.<random>.tmp`` beside ``target`` is removed when process
    ``pid`` no longer exists here and the file has not changed for :data:`STALE_TEMP_AGE`
    seconds; one without a pid (older versions) or whose pid cannot be checked, after
    :data:`STALE_TEMP_UNKNOWN_AGE` seconds. A live writer's file is never removed. Errors
    (a file removed meanwhile, no permission) are ignored.

    Parameters
    ----------
    target : pathlib.Path
        The real (link-resolved) path of the file written.
    now : float, optional
        The current time (:func:`time.time`); for tests.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    prefix = _temp_prefix(target)
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        m = _TEMP_MIDDLE.fullmatch(name[len(prefix):-len(".tmp")])
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        alive = _pid_alive(int(m["pid"])) if m["pid"] else None
        limit = STALE_TEMP_UNKNOWN_AGE if alive is None else STALE_TEMP_AGE
        if alive or now - st.st_mtime < limit:
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    if removed:
        logger.info("removed %d temporary file(s) left by dead writers of %s: %s",
                    len(removed), target, ", ".join(p.name for p in removed))
    return removed


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - not supported on every platform
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(target: str | os.PathLike[str],
                 write: Callable[[IO[bytes]], object]) -> Path:
    """Write a file atomically: readers see the old file or the new one, never a part.

    ``write`` fills a temporary file ``.<name>.<pid>.<random>.tmp`` in the target's
    directory, which is flushed, fsync-ed, given the mode of the file it replaces (0o644
    for a new one) and moved over the target with :func:`os.replace`; the directory is then
    fsync-ed. On any error the temporary file is removed and the target is left as it was.
    Stale temporary files of the same target are removed first
    (:func:`clean_stale_temps`).

    Parameters
    ----------
    target : str or path-like
        The file to (re)place; its directory must exist. A symbolic link is followed (the
        file it points to is replaced, the link stays); it must name a regular file or a
        new path (:func:`check_writable`).
    write : callable
        Called once with the binary file object to write.

    Returns
    -------
    pathlib.Path
        The file written (links resolved).

    Raises
    ------
    KnowledgeBaseError
        ``target`` is a directory, a device, a named pipe, a socket or an unresolvable link;
        nothing is written.
    """
    target = check_writable(target)
    directory = target.parent
    clean_stale_temps(target)
    fd, tmp_name = tempfile.mkstemp(dir=directory, suffix=".tmp",
                                    prefix=f"{_temp_prefix(target)}{os.getpid()}.")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        check_writable(target)  # it may have become something else meanwhile
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(directory)
    return target


def write_npz(target: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> Path:
    """:func:`atomic_write` of ``arrays`` as an uncompressed ``.npz`` (:func:`numpy.savez`)."""
    return atomic_write(target, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]


def checksum(meta_doc: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    """The ``sha256`` field of a knowledge-base file.

    Parameters
    ----------
    meta_doc : mapping
        The JSON metadata (its ``sha256`` key, if any, is left out).
    arrays : mapping of str to ndarray
        The arrays of the file (``__meta__`` is left out).

    Returns
    -------
    str
        Hex sha256 of the canonical JSON (sorted keys, no spaces) followed, for each array
        key in sorted order, by the key, dtype, shape and raw bytes.
    """
    doc = {k: v for k, v in meta_doc.items() if k != "sha256"}
    h = hashlib.sha256()
    h.update(json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode())
    for key in sorted(arrays):
        if key == META_KEY:
            continue
        a = np.ascontiguousarray(arrays[key])
        h.update(b"\0" + key.encode() + b"\0" + a.dtype.str.encode() + b"\0")
        h.update(repr(tuple(int(s) for s in a.shape)).encode() + b"\0")
        h.update(a.tobytes())
    return h.hexdigest()


def encode_knowledge(
    meta: EmbeddingMeta, task_names: Sequence[str], extractor_names: Sequence[str],
    matrices: Mapping[str, np.ndarray], provenance: Sequence[Mapping[str, Any]],
    extractor_info: Mapping[str, Mapping[str, Any]],
    extra: Mapping[str, tuple[EmbeddingMeta, np.ndarray]],
) -> dict[str, np.ndarray]:
    """The arrays of a knowledge-base file, ``__meta__`` (JSON with checksum) included.

    Parameters
    ----------
    meta : EmbeddingMeta
    task_names, extractor_names : sequence of str
    matrices : mapping of str to ndarray
        The arrays named in :data:`MATRIX_KEYS`.
    provenance : sequence of dict
    extractor_info : mapping of str to dict
    extra : mapping of str to (EmbeddingMeta, ndarray)
        Extra embedding sets; stored as ``extra_<k>`` in sorted name order.

    Returns
    -------
    dict of str to ndarray
        Ready for :func:`write_npz`.
    """
    arrays: dict[str, np.ndarray] = {k: matrices[k] for k in MATRIX_KEYS}
    extra_doc = []
    for k, name in enumerate(sorted(extra)):
        emeta, vals = extra[name]
        key = f"extra_{k}"
        arrays[key] = vals
        extra_doc.append({"name": name, "key": key, "meta": emeta.to_dict()})
    arrays = {k: np.ascontiguousarray(v, dtype="<f8") for k, v in arrays.items()}
    doc: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "created_by": f"t2v-automl {package_version()}",
        "meta": meta.to_dict(),
        "task_names": list(task_names),
        "extractor_names": list(extractor_names),
        "provenance": list(provenance),
        "extractor_info": dict(extractor_info),
        "extra": extra_doc,
        "arrays": sorted(arrays),
    }
    doc = json_copy(doc, "the knowledge base metadata (including meta.settings)")
    doc["sha256"] = checksum(doc, arrays)
    blob = json.dumps(doc, sort_keys=True, allow_nan=False).encode("utf-8")
    arrays[META_KEY] = np.frombuffer(blob, dtype=np.uint8)
    return arrays


def read_file_bytes(path: Path) -> bytes:
    """The bytes of a knowledge-base file; :class:`KnowledgeBaseError` if it cannot be read.

    Only a regular file (or a link to one) is read: a directory, a device (``/dev/zero``
    would never end), a named pipe (which would block) or a socket is refused.
    """
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise KnowledgeBaseError(
                f"cannot read knowledge base file {str(path)!r}: it is {_kind(mode)}, not a "
                f"regular file."
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise KnowledgeBaseError(
            f"knowledge base file {str(path)!r} does not exist; check the path, or build "
            f"one with KnowledgeBase.empty(...).save(path)."
        ) from None
    except OSError as exc:
        raise KnowledgeBaseError(
            f"cannot read knowledge base file {str(path)!r}: {exc}."
        ) from exc


def refusal(source: str, msg: str, exc: BaseException | None = None) -> KnowledgeBaseError:
    """The error refusing the knowledge base ``source`` because of ``msg`` (cause ``exc``)."""
    err = KnowledgeBaseError(f"refusing knowledge base {source!r}: {msg}")
    if exc is not None:
        err.__cause__ = exc
    return err


def _read_arrays(data: bytes, source: str) -> dict[str, np.ndarray]:
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any reader error means a bad file
        raise refusal(source,
            f"it is not a readable .npz file ({type(exc).__name__}: {exc}); it may be "
            f"truncated or corrupted. Restore it from a copy or rebuild it.", exc) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise refusal(source, "it holds a single array, not a knowledge base (.npz archive).")
    arrays: dict[str, np.ndarray] = {}
    with npz:
        for key in npz.files:
            try:
                arrays[key] = npz[key]
            except ValueError as exc:
                if "pickle" in str(exc).lower():
                    raise refusal(source,
                        f"array {key!r} holds pickled Python objects, which a knowledge "
                        f"base never contains; loading it could run code. Do not use this "
                        f"file.", exc) from None
                raise refusal(source,
                              f"array {key!r} cannot be read ({exc}); the file is corrupted.",
                              exc) from None
            except Exception as exc:  # noqa: BLE001 - CRC errors, truncation...
                raise refusal(source,
                    f"array {key!r} cannot be read ({type(exc).__name__}: {exc}); the file "
                    f"is truncated or corrupted. Restore it from a copy or rebuild it.",
                    exc) from None
    return arrays


def _read_doc(arrays: dict[str, np.ndarray], source: str) -> dict[str, Any]:
    """Pop and check the JSON metadata of a knowledge-base file (format, version, fields)."""
    if META_KEY not in arrays:
        raise refusal(source, f"it has no {META_KEY!r} metadata array (arrays: "
                              f"{sorted(arrays)}); it is not a t2v-automl knowledge base.")
    blob = arrays.pop(META_KEY)
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise refusal(source, f"the {META_KEY!r} array must be 1-D uint8; got {blob.dtype} "
                              f"{blob.shape}.")
    try:
        doc = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise refusal(source, f"its metadata is not valid JSON ({exc}); the file is "
                              f"corrupted.", exc) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise refusal(source, f"its metadata format is {got!r}, expected {FORMAT_NAME!r}; it "
                              f"is not a t2v-automl knowledge base.")
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        hint = ("upgrade t2v-automl to read it" if isinstance(version, int)
                and version > FORMAT_VERSION else "rebuild it with this t2v-automl")
        raise refusal(source, f"it has format version {version!r}; this t2v-automl reads "
                              f"version {FORMAT_VERSION} only. "
                              f"{hint[0].upper() + hint[1:]}.")
    required = ("meta", "task_names", "extractor_names", "provenance", "extractor_info",
                "extra", "arrays", "sha256")
    missing = [k for k in required if k not in doc]
    if missing:
        raise refusal(source, f"its metadata lacks the field(s) {missing}; the file is "
                              f"damaged.")
    return doc


def decode_knowledge(data: bytes, source: str) -> tuple[EmbeddingMeta, dict[str, Any]]:
    """Parse and verify the bytes of a knowledge-base file.

    Parameters
    ----------
    data : bytes
        The whole file.
    source : str
        Where the bytes came from, for the error messages.

    Returns
    -------
    meta : EmbeddingMeta
    kwargs : dict
        Keyword arguments of the :class:`~t2v_automl.knowledge.KnowledgeBase` constructor
        (``task_names``, ``embeddings``, ``extractor_names``, ``scores``, ``stderr``,
        ``eval_time``, ``embed_time``, ``provenance``, ``extractor_info``,
        ``extra_embeddings``); the caller validates them by constructing the base.

    Raises
    ------
    KnowledgeBaseError
        Not an ``.npz``, pickled arrays, truncated or corrupted data, wrong format or
        version, missing fields or arrays, a dtype other than float64, a checksum mismatch.
    """
    arrays = _read_arrays(data, source)
    doc = _read_doc(arrays, source)
    listed = doc["arrays"]
    if not isinstance(listed, list) or sorted(map(str, listed)) != sorted(arrays):
        absent = sorted(set(map(str, listed)) - set(arrays)) if isinstance(
            listed, list) else []
        unexpected = sorted(set(arrays) - set(map(str, listed))) if isinstance(
            listed, list) else sorted(arrays)
        raise refusal(source, f"its arrays do not match its metadata (missing: {absent}, "
                              f"unexpected: {unexpected}); the file is damaged or was edited.")
    for key in MATRIX_KEYS:
        if key not in arrays:
            raise refusal(source, f"the required array {key!r} is missing.")
    for key, a in arrays.items():
        if a.dtype != np.dtype("<f8"):
            raise refusal(source, f"array {key!r} has dtype {a.dtype}; expected "
                                  f"little-endian float64.")
    expected_sum = doc["sha256"]
    try:
        actual_sum = checksum(doc, arrays)
    except (TypeError, ValueError) as exc:
        raise refusal(source, f"its metadata cannot be checked ({exc}); the file is "
                              f"damaged.", exc) from None
    if expected_sum != actual_sum:
        raise refusal(source, f"its sha256 checksum does not match its content (recorded "
                              f"{str(expected_sum)[:16]}..., computed {actual_sum[:16]}...); "
                              f"the file was truncated, corrupted or edited. Restore it from "
                              f"a copy or rebuild it.")
    try:
        meta = EmbeddingMeta.from_dict(doc["meta"])
        extra: dict[str, tuple[EmbeddingMeta, np.ndarray]] = {}
        for entry in doc["extra"]:
            extra[str(entry["name"])] = (EmbeddingMeta.from_dict(entry["meta"]),
                                         arrays[str(entry["key"])])
    except (KnowledgeBaseError, InvalidInputTypeError, KeyError, TypeError,
            ValueError) as exc:
        raise refusal(source, f"its content is inconsistent ({exc}).", exc) from None
    return meta, {
        "task_names": doc["task_names"], "embeddings": arrays["embeddings"],
        "extractor_names": doc["extractor_names"], "scores": arrays["scores"],
        "stderr": arrays["stderr"], "eval_time": arrays["eval_time"],
        "embed_time": arrays["embed_time"], "provenance": doc["provenance"],
        "extractor_info": doc["extractor_info"], "extra_embeddings": extra,
    }


# ----------------------------------------------------------------------------------------
# Embeddings files (``t2v-automl embed``)
# ----------------------------------------------------------------------------------------


def save_embeddings(path: str | os.PathLike[str], embeddings: Sequence[Embedding],
                    tasks_info: Sequence[Mapping[str, Any]]) -> tuple[Path, Path]:
    """Write embeddings to ``path`` (``.npz``, no pickle) and a readable ``.json`` beside it.

    Both files are written atomically (see :func:`atomic_write`); the directory is created
    if needed. Each path must be a regular file, a link to one, or new: both are checked
    before either is written.

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file; the JSON goes to the same name with the suffix ``.json``.
    embeddings : sequence of Embedding
        At least one; all made the same way (one meta).
    tasks_info : sequence of dict
        One JSON-friendly dict per embedding (name, path, fingerprint, n_images, sizes,
        time...). Its ``n_images`` and ``fingerprint`` are restored by
        :func:`load_embeddings`.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The ``.npz`` and ``.json`` paths.

    Raises
    ------
    InvalidInputTypeError
        ``embeddings`` is empty.
    IncompatibleEmbeddingError
        The embeddings were made differently.
    KnowledgeBaseError
        ``path`` or its ``.json`` is a directory, a device, a named pipe or a socket.
    """
    from t2v_automl import __version__

    path = Path(path)
    embeddings = list(embeddings)
    meta = check_compatible(embeddings)
    if meta is None:
        raise InvalidInputTypeError(
            f"save_embeddings() needs at least one Embedding to write to {str(path)!r}; got "
            f"none. Embed the tasks first."
        )
    doc = {"format": EMBEDDINGS_FORMAT, "format_version": EMBEDDINGS_FORMAT_VERSION,
           "created_by": f"t2v-automl {__version__}",
           "meta": {**meta.to_dict(), "n_images": 0}, "tasks": list(tasks_info)}
    text = json.dumps(doc, indent=2, sort_keys=False)
    json_path = path.with_suffix(".json")
    check_writable(path, "the embeddings")  # both checked before either is written
    check_writable(json_path, "the embeddings' metadata")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_npz(path, {
        "embeddings": stack_embeddings(embeddings),
        "task_names": np.asarray([e.task_name for e in embeddings], dtype=str),
        META_KEY: np.frombuffer(text.encode(), dtype=np.uint8)})
    atomic_write(json_path, lambda fh: fh.write((text + "\n").encode()))
    logger.debug("saved %d embedding(s) to %s", len(embeddings), path)
    return path, json_path


def load_embeddings(path: str | os.PathLike[str]) -> list[Embedding] | None:
    """Embeddings from a file written by :func:`save_embeddings`.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    list of Embedding or None
        One per row, with its task name, ``n_images`` and fingerprint. **None** (not an
        error) when ``path`` is not an embeddings file: no ``.npz`` suffix, not a file,
        or an ``.npz`` without ``__meta__`` and ``embeddings`` or whose JSON ``format`` is
        not :data:`EMBEDDINGS_FORMAT` (e.g. a task's images, or a knowledge base). Callers
        use this to tell stored embeddings from datasets.

    Raises
    ------
    KnowledgeBaseError
        The file looks like an ``.npz`` but cannot be read (truncated, corrupted, pickled
        arrays, invalid JSON).
    """
    path = Path(path)
    if path.suffix != ".npz" or not path.is_file():
        return None
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a single array: not ours
            return None
        with loaded as z:
            if META_KEY not in z or "embeddings" not in z:
                return None
            doc = json.loads(bytes(z[META_KEY]).decode())
            if not isinstance(doc, dict) or doc.get("format") != EMBEDDINGS_FORMAT:
                return None
            values, names = z["embeddings"], z["task_names"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise KnowledgeBaseError(
            f"cannot read embeddings file {str(path)!r}: {exc}. Write it again with "
            f"`t2v-automl embed` (or save_embeddings())."
        ) from exc
    tasks = doc.get("tasks", [])
    out = []
    for i, (v, n) in enumerate(zip(values, names, strict=True)):
        info = tasks[i] if i < len(tasks) else {}
        meta = EmbeddingMeta.from_dict({**doc["meta"], "n_images": info.get("n_images", 0)})
        out.append(Embedding(v, meta, task_name=str(n),
                             task_fingerprint=str(info.get("fingerprint", ""))))
    return out
