"""Tests of t2v_automl.knowledge._io: the embeddings file format and the shared writer."""

from __future__ import annotations

import json
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
