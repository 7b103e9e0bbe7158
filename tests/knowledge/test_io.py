"""Tests of t2v_automl.knowledge._io: the embeddings file format and the shared writer."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    KnowledgeBaseError,
)
from t2v_automl.knowledge import (
    EMBEDDINGS_FORMAT,
    KnowledgeBase,
    checksum,
    load_embeddings,
    save_embeddings,
)
from t2v_automl.knowledge._io import STALE_TEMP_AGE, STALE_TEMP_UNKNOWN_AGE, clean_stale_temps


def make_meta(**changes: Any) -> EmbeddingMeta:
    fields: dict[str, Any] = dict(probe="mobilenet_v2", weights_sha256="ab" * 32,
                                  method="montecarlo", input_size=64, layers="stages[4:19]",
                                  dim=5, n_images=0, settings={"seed": 0})
    fields.update(changes)
    return EmbeddingMeta(**fields)


def embeddings() -> list[Embedding]:
    rng = np.random.default_rng(0)
    return [Embedding(rng.random(5), make_meta(n_images=n), task_name=f"t{k}",
                      task_fingerprint=f"fp{k}") for k, n in enumerate((30, 40))]


def info() -> list[dict[str, Any]]:
    return [{"name": "t0", "n_images": 30, "fingerprint": "fp0", "embed_time_s": 0.5},
            {"name": "t1", "n_images": 40, "fingerprint": "fp1", "classes": ["a", "b"]}]


def test_round_trip(tmp_path: Path) -> None:
    embs = embeddings()
    npz, js = save_embeddings(tmp_path / "sub" / "e.npz", embs, info())
    assert (npz, js) == (tmp_path / "sub" / "e.npz", tmp_path / "sub" / "e.json")
    back = load_embeddings(npz)
    assert back is not None and len(back) == 2
    for a, b in zip(embs, back, strict=True):
        np.testing.assert_array_equal(a.values, b.values)
        assert (a.meta, a.task_name, a.task_fingerprint) == (b.meta, b.task_name,
                                                            b.task_fingerprint)
    doc = json.loads(js.read_text())
    assert doc["format"] == EMBEDDINGS_FORMAT and doc["tasks"] == info()
    assert doc["meta"]["n_images"] == 0
    with np.load(npz, allow_pickle=False) as z:
        assert sorted(z.files) == ["__meta__", "embeddings", "task_names"]
        assert json.loads(bytes(z["__meta__"]).decode()) == doc
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["e.json", "e.npz"]


def test_same_bytes_as_the_cli_writer(tmp_path: Path) -> None:
    cli = pytest.importorskip("t2v_automl.cli")
    if not hasattr(cli, "write_embeddings"):
        pytest.skip("the CLI no longer has its own writer")
    save_embeddings(tmp_path / "a.npz", embeddings(), info())
    cli.write_embeddings(tmp_path / "b.npz", embeddings(), info())
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_not_an_embeddings_file_gives_none(tmp_path: Path) -> None:
    assert load_embeddings(tmp_path / "absent.npz") is None
    (tmp_path / "x.txt").write_text("hello")
    assert load_embeddings(tmp_path / "x.txt") is None
    np.savez(tmp_path / "images.npz", images=np.zeros((2, 3)), labels=np.zeros(2))
    assert load_embeddings(tmp_path / "images.npz") is None
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    assert load_embeddings(tmp_path / "single.npz") is None
    kb = KnowledgeBase.empty(make_meta(), ["e"])
    kb.add("t", np.ones(5), {"e": 0.5})
    assert load_embeddings(kb.save(tmp_path / "kb.npz")) is None


def test_damaged_file_is_an_error(tmp_path: Path) -> None:
    npz, _ = save_embeddings(tmp_path / "e.npz", embeddings(), info())
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.raises(KnowledgeBaseError, match="cannot read embeddings file"):
        load_embeddings(npz)


def test_save_refuses_empty_and_mixed(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputTypeError, match="at least one"):
        save_embeddings(tmp_path / "e.npz", [], [])
    mixed = [embeddings()[0], Embedding(np.ones(5), make_meta(method="exact"))]
    with pytest.raises(IncompatibleEmbeddingError):
        save_embeddings(tmp_path / "e.npz", mixed, info())
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_old_files(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    npz, js = save_embeddings(tmp_path / "e.npz", embeddings(), info())
    old = npz.read_bytes(), js.read_bytes()

    def broken_savez(fh: Any, **arrays: Any) -> None:
        fh.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_embeddings(npz, embeddings()[:1], info()[:1])
    assert (npz.read_bytes(), js.read_bytes()) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json", "e.npz"]


def test_checksum_covers_json_and_arrays() -> None:
    arrays = {"a": np.zeros(3), "b": np.ones((2, 2))}
    doc = {"x": 1, "sha256": "ignored"}
    base = checksum(doc, arrays)
    assert base == checksum({"x": 1}, arrays) and len(base) == 64
    assert checksum({"x": 2}, arrays) != base
    assert checksum(doc, {**arrays, "b": np.ones((4,))}) != base
    assert checksum(doc, {**arrays, "__meta__": np.zeros(7, np.uint8)}) == base


# -- issue 18: bad targets never corrupt data or the machine ---------------------------------


def small_kb() -> KnowledgeBase:
    kb = KnowledgeBase.empty(make_meta(), ["e"])
    kb.add("t", np.ones(5), {"e": 0.5})
    return kb


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_writers_refuse_a_fifo_and_a_directory(tmp_path: Path) -> None:
    """As ``/dev/null``: a special file is never replaced by a regular file."""
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    (tmp_path / "folder.npz").mkdir()
    for target in (fifo, tmp_path / "folder.npz"):
        with pytest.raises(KnowledgeBaseError, match="refusing to write.*Name a regular"):
            small_kb().save(target)
        with pytest.raises(KnowledgeBaseError, match="refusing to write the embeddings"):
            save_embeddings(target, embeddings(), info())
    # the .json beside is checked before the .npz is written
    os.mkfifo(tmp_path / "e.json")
    with pytest.raises(KnowledgeBaseError, match="embeddings' metadata"):
        save_embeddings(tmp_path / "e.npz", embeddings(), info())
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and (tmp_path / "folder.npz").is_dir()
    assert stat.S_ISFIFO(os.lstat(tmp_path / "e.json").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json", "folder.npz",
                                                          "pipe.npz"]  # no temp file left
    # reading one is refused at once instead of blocking (a FIFO) or never ending (/dev/zero)
    with pytest.raises(KnowledgeBaseError, match="named pipe"):
        KnowledgeBase.load(fifo)
    with pytest.raises(KnowledgeBaseError, match="named pipe"):
        with KnowledgeBase.locked_update(fifo, make_meta(), timeout=5):
            pass


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes and links")
def test_one_symlink_rule_for_both_writers(tmp_path: Path) -> None:
    """A link is followed: the regular file it names is replaced, the link stays."""
    real = tmp_path / "real"
    real.mkdir()
    for name, write in (("kb.npz", lambda p: small_kb().save(p)),
                        ("e.npz", lambda p: save_embeddings(p, embeddings(), info()))):
        (real / name).write_bytes(b"old")
        link = tmp_path / name
        link.symlink_to(real / name)
        write(link)
        assert link.is_symlink() and os.readlink(link) == str(real / name)
        assert (real / name).read_bytes() != b"old" and (real / name).is_file()
    assert KnowledgeBase.load(tmp_path / "kb.npz").task_names == ["t"]
    assert [e.task_name for e in load_embeddings(tmp_path / "e.npz") or []] == ["t0", "t1"]
    # a link to a special file is refused like the file itself
    os.mkfifo(real / "pipe")
    (tmp_path / "to_pipe.npz").symlink_to(real / "pipe")
    with pytest.raises(KnowledgeBaseError, match="pipe.: it is a named pipe"):
        small_kb().save(tmp_path / "to_pipe.npz")
    with pytest.raises(KnowledgeBaseError, match="named pipe"):
        save_embeddings(tmp_path / "to_pipe.npz", embeddings(), info())
    assert stat.S_ISFIFO(os.stat(real / "pipe").st_mode)
    assert (tmp_path / "to_pipe.npz").is_symlink()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporary_files_of_dead_writers_are_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``kill -9`` in a save leaves is removed by the next save; live writers' stay."""
    path = tmp_path / "kb.npz"
    small_kb().save(path)
    dead, now = _dead_pid(), time.time()
    ages = {  # name -> seconds since its last change
        f".kb.npz.{dead}.abcd1234.tmp": 2 * STALE_TEMP_AGE,         # removed
        f".kb.npz.{dead}.fresh123.tmp": 0,                          # kept: still recent
        f".kb.npz.{os.getpid()}.live1234.tmp": 2 * STALE_TEMP_AGE,  # kept: writer alive
        ".kb.npz.legacy12.tmp": 2 * STALE_TEMP_UNKNOWN_AGE,         # removed (no pid)
        ".kb.npz.legacy34.tmp": 2 * STALE_TEMP_AGE,                 # kept (no pid, < 1 h)
        f".other.npz.{dead}.abcd1234.tmp": 2 * STALE_TEMP_AGE,      # another file's: kept
    }
    for name, age in ages.items():
        (tmp_path / name).write_bytes(b"partial")
        os.utime(tmp_path / name, (now - age, now - age))
    small_kb().save(path)
    left = {p.name for p in tmp_path.iterdir()}
    removed = {f".kb.npz.{dead}.abcd1234.tmp", ".kb.npz.legacy12.tmp"}
    assert left == {"kb.npz"} | (set(ages) - removed)
    # locked_update's lock cleans too, even when the block fails and nothing is saved
    fresh = tmp_path / f".kb.npz.{dead}.fresh123.tmp"
    os.utime(fresh, (now - 2 * STALE_TEMP_AGE,) * 2)
    with pytest.raises(RuntimeError, match="no save"):
        with KnowledgeBase.locked_update(path, make_meta(), timeout=5):
            raise RuntimeError("no save")
    assert not fresh.exists()
    assert KnowledgeBase.load(path).task_names == ["t"]
    # a writer's temporary file carries its pid, so that it is never taken for a dead one's
    seen: list[str] = []
    real_savez = np.savez

    def spying_savez(fh: Any, **arrays: Any) -> None:
        seen.extend(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))
        real_savez(fh, **arrays)

    monkeypatch.setattr(np, "savez", spying_savez)
    small_kb().save(path)
    mine = [n for n in seen if n.startswith(f".kb.npz.{os.getpid()}.")]
    assert len(mine) == 2 and clean_stale_temps(path) == []  # the live one and ours


def test_the_checksum_detects_damage_not_tampering(tmp_path: Path) -> None:
    """Documented: an edit whose sha256 is recomputed is accepted (no key)."""
    path = small_kb().save(tmp_path / "kb.npz")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    doc = json.loads(bytes(arrays["__meta__"]).decode())
    doc["task_names"] = ["edited"]
    edited = {k: v for k, v in arrays.items() if k != "__meta__"}
    np.savez(tmp_path / "bad.npz", **edited, __meta__=np.frombuffer(
        json.dumps(doc).encode(), dtype=np.uint8))
    with pytest.raises(KnowledgeBaseError, match="sha256 checksum does not match"):
        KnowledgeBase.load(tmp_path / "bad.npz")
    doc["sha256"] = checksum(doc, edited)
    np.savez(tmp_path / "resummed.npz", **edited, __meta__=np.frombuffer(
        json.dumps(doc).encode(), dtype=np.uint8))
    assert KnowledgeBase.load(tmp_path / "resummed.npz").task_names == ["edited"]
    from t2v_automl.knowledge import _io

    assert "detects *damage*, not *tampering*" in " ".join((_io.__doc__ or "").split())
