"""Tests of t2v_automl.knowledge: storage, file format, safety and concurrency."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import t2v_automl.knowledge as knowledge
from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    KnowledgeBaseError,
    T2VError,
    UnknownNameError,
)
from t2v_automl.knowledge import FORMAT_VERSION, KnowledgeBase

DIM = 6


def make_meta(**changes: Any) -> EmbeddingMeta:
    fields: dict[str, Any] = dict(probe="mobilenet_v2", weights_sha256="ab" * 32,
                                  method="montecarlo", input_size=64, layers="stages[4:19]",
                                  dim=DIM, n_images=200,
                                  settings={"seed": 0, "label_samples": 1})
    fields.update(changes)
    return EmbeddingMeta(**fields)


def domain_meta() -> EmbeddingMeta:
    return make_meta(method="domain", dim=3, settings={})


def vec(seed: int, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=dim)


def filled_base() -> KnowledgeBase:
    kb = KnowledgeBase.empty(make_meta(), ["effnet", "pixels"])
    kb.add("fmnist-0-1", Embedding(vec(0), make_meta()), {"effnet": 0.9, "pixels": 0.75},
           stderr={"effnet": 0.01}, eval_time={"effnet": 3.5, "pixels": 0.2},
           provenance={"source": "fashion_mnist", "classes": [0, 1], "nested": {"a": None}},
           extra_embeddings={"domain": Embedding(vec(10, 3), domain_meta())},
           embed_time=1.25)
    kb.add("mnist-2-3", vec(1), {"pixels": 0.5, "mobilenet": 1.0},
           provenance={"source": "mnist", "note": "ünïcode"})
    kb.add("digits-all", vec(2).tolist(), {"effnet": 0.0},
           extra_embeddings={"domain": vec(12, 3)})
    kb.add_extractor("effnet", {"arch": "efficientnet_lite0", "trained_on": "imagenet"})
    return kb


def snapshot(kb: KnowledgeBase) -> dict[str, Any]:
    return {k: v.tobytes() if isinstance(v, np.ndarray) else v
            for k, v in kb.to_arrays().items()}


def assert_same(a: KnowledgeBase, b: KnowledgeBase) -> None:
    assert a.meta == b.meta
    assert a.task_names == b.task_names
    assert a.extractor_names == b.extractor_names
    for attr in ("embeddings", "scores", "stderr", "eval_time", "embed_time"):
        x, y = getattr(a, attr), getattr(b, attr)
        assert x.dtype == y.dtype == np.float64
        np.testing.assert_array_equal(x, y)
    assert a.provenance == b.provenance
    assert a.extractor_info == b.extractor_info
    assert a.extra_names == b.extra_names
    for name in a.extra_names:
        ma, va = a.extra_embeddings(name)
        mb, vb = b.extra_embeddings(name)
        assert ma == mb
        np.testing.assert_array_equal(va, vb)


# ------------------------------------------------------------------------ in memory


def test_add_builds_matrices() -> None:
    kb = filled_base()
    assert len(kb) == 3
    assert kb.task_names == ["fmnist-0-1", "mnist-2-3", "digits-all"]
    assert kb.extractor_names == ["effnet", "pixels", "mobilenet"]
    s = kb.scores
    np.testing.assert_array_equal(s[0], [0.9, 0.75, np.nan])
    np.testing.assert_array_equal(s[1], [np.nan, 0.5, 1.0])
    np.testing.assert_array_equal(s[2], [0.0, np.nan, np.nan])
    np.testing.assert_array_equal(kb.stderr[0], [0.01, np.nan, np.nan])
    np.testing.assert_array_equal(kb.eval_time[0], [3.5, 0.2, np.nan])
    np.testing.assert_array_equal(kb.embed_time, [1.25, np.nan, np.nan])
    np.testing.assert_array_equal(kb.embeddings[2], vec(2))
    meta, dom = kb.extra_embeddings("domain")
    assert meta == domain_meta()
    assert np.isnan(dom[1]).all() and np.isfinite(dom[[0, 2]]).all()
    assert "mnist-2-3" in kb and "nope" not in kb
    e = kb.embedding("mnist-2-3")
    assert isinstance(e, Embedding) and e.meta == kb.meta
    np.testing.assert_array_equal(e.values, vec(1))
    assert "n_tasks=3" in repr(kb)


def test_accessors_return_copies() -> None:
    kb = filled_base()
    kb.scores[:] = 0.0
    kb.embeddings[:] = 0.0
    kb.provenance[0]["source"] = "changed"
    kb.task_names.append("x")
    assert kb.scores[0, 0] == 0.9
    assert kb.provenance[0]["source"] == "fashion_mnist"
    assert len(kb.task_names) == 3


def test_add_score_and_overwrite() -> None:
    kb = filled_base()
    kb.add_score("mnist-2-3", "effnet", 0.8, stderr=0.02, eval_time=1.0)
    kb.add_score("mnist-2-3", "brand-new", 0.3)
    assert kb.extractor_names[-1] == "brand-new"
    i = kb.index("mnist-2-3")
    assert kb.scores[i, 0] == 0.8 and kb.stderr[i, 0] == 0.02
    assert np.isnan(kb.scores[0, -1])
    with pytest.raises(KnowledgeBaseError, match="overwrite=True"):
        kb.add_score("mnist-2-3", "effnet", 0.1)
    kb.add_score("mnist-2-3", "effnet", 0.1, overwrite=True)
    assert kb.scores[i, 0] == 0.1 and np.isnan(kb.stderr[i, 0])
    with pytest.raises(KnowledgeBaseError, match="no task named"):
        kb.add_score("unknown", "effnet", 0.5)


def test_overwrite_replaces_whole_entry() -> None:
    kb = filled_base()
    with pytest.raises(KnowledgeBaseError, match="already in the knowledge base"):
        kb.add("mnist-2-3", vec(5), {"effnet": 0.1})
    kb.add("mnist-2-3", vec(5), {"effnet": 0.1}, overwrite=True)
    assert len(kb) == 3
    i = kb.index("mnist-2-3")
    np.testing.assert_array_equal(kb.scores[i], [0.1, np.nan, np.nan])
    np.testing.assert_array_equal(kb.embeddings[i], vec(5))
    assert kb.provenance[i] == {}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"task_name": "mnist-2-3"}, KnowledgeBaseError, "already"),
        ({"embedding": np.r_[vec(7)[:-1], np.nan]}, KnowledgeBaseError, "non-finite"),
        ({"embedding": np.r_[vec(7)[:-1], np.inf]}, KnowledgeBaseError, "non-finite"),
        ({"embedding": vec(7, DIM + 1)}, IncompatibleEmbeddingError, "dim=6"),
        ({"embedding": Embedding(vec(7), make_meta(probe="resnet18"))},
         IncompatibleEmbeddingError, "probe"),
        ({"scores": {"effnet": 1.5}}, KnowledgeBaseError, r"\[0, 1\]"),
        ({"scores": {"effnet": -0.1}}, KnowledgeBaseError, r"\[0, 1\]"),
        ({"scores": {"new": 0.5, "effnet": float("nan")}}, KnowledgeBaseError, r"\[0, 1\]"),
        ({"scores": {"effnet": "high"}}, InvalidInputTypeError, "real number"),
        ({"stderr": {"pixels": 0.1}}, KnowledgeBaseError, "without a score"),
        ({"eval_time": {"effnet": -1.0}}, KnowledgeBaseError, ">= 0"),
        ({"provenance": {"path": Path("/x")}}, KnowledgeBaseError, "JSON"),
        ({"provenance": {"x": float("nan")}}, KnowledgeBaseError, "JSON"),
        ({"extra_embeddings": {"label_stat": vec(1, 3)}}, KnowledgeBaseError, "new embedding"),
        ({"extra_embeddings": {"domain": vec(1, 4)}}, IncompatibleEmbeddingError, "dim=3"),
        ({"extra_embeddings": {"domain": Embedding(vec(1, 3), make_meta(dim=3))}},
         IncompatibleEmbeddingError, "method"),
        ({"embed_time": float("inf")}, KnowledgeBaseError, "embed_time"),
    ],
)
def test_bad_input_changes_nothing(kwargs: dict[str, Any], error: type, match: str) -> None:
    kb = filled_base()
    before = snapshot(kb)
    args: dict[str, Any] = {"task_name": "new-task", "embedding": vec(7),
                            "scores": {"effnet": 0.5, "new-extractor": 0.4},
                            "extra_embeddings": {"domain": vec(3, 3)}}
    args.update(kwargs)
    with pytest.raises(error, match=match) as info:
        kb.add(**args)
    assert isinstance(info.value, T2VError)
    assert snapshot(kb) == before
    assert "new-extractor" not in kb.extractor_names


def test_incompatible_embedding_message_names_difference() -> None:
    kb = filled_base()
    other = make_meta(method="exact", input_size=224)
    with pytest.raises(IncompatibleEmbeddingError) as info:
        kb.add("t", Embedding(vec(1), other), {"effnet": 0.5})
    msg = str(info.value)
    assert "method: 'montecarlo' vs 'exact'" in msg and "input_size: 64 vs 224" in msg
    assert "probe:" not in msg  # the probe agrees, so it is not listed


def test_constructor_validates() -> None:
    m = make_meta()
    with pytest.raises(KnowledgeBaseError, match="unique"):
        KnowledgeBase(m, task_names=["a", "a"], embeddings=np.zeros((2, DIM)))
    with pytest.raises(KnowledgeBaseError, match="shape"):
        KnowledgeBase(m, task_names=["a"], embeddings=np.zeros((1, DIM + 1)))
    with pytest.raises(KnowledgeBaseError, match="without embeddings"):
        KnowledgeBase(m, task_names=["a"])
    with pytest.raises(KnowledgeBaseError, match=r"\[0, 1\]"):
        KnowledgeBase(m, task_names=["a"], embeddings=np.zeros((1, DIM)),
                      extractor_names=["e"], scores=[[2.0]])
    with pytest.raises(InvalidInputTypeError, match="EmbeddingMeta"):
        KnowledgeBase({"probe": "x"})  # type: ignore[arg-type]


def test_subset() -> None:
    kb = filled_base()
    sub = kb.subset(["digits-all", "fmnist-0-1"])
    assert sub.task_names == ["digits-all", "fmnist-0-1"]
    np.testing.assert_array_equal(sub.scores, kb.scores[[2, 0]])
    np.testing.assert_array_equal(sub.extra_embeddings("domain")[1],
                                  kb.extra_embeddings("domain")[1][[2, 0]])
    assert sub.provenance == [kb.provenance[2], kb.provenance[0]]
    assert sub.extractor_info == kb.extractor_info
    masked = kb.subset(np.array([False, True, False]))
    assert masked.task_names == ["mnist-2-3"]
    assert kb.subset([True, False, True]).task_names == ["fmnist-0-1", "digits-all"]
    assert len(kb.subset([])) == 0
    assert kb.subset([2, 0]).task_names == ["digits-all", "fmnist-0-1"]
    assert kb.subset(np.array([-1])).task_names == ["digits-all"]
    with pytest.raises(KnowledgeBaseError, match="indices"):
        kb.subset([3])
    with pytest.raises(KnowledgeBaseError, match="shape"):
        kb.subset(np.array([True, False]))
    with pytest.raises(KnowledgeBaseError, match="no task named"):
        kb.subset(["nope"])
    sub.add("extra-task", vec(9), {"effnet": 0.2})
    assert len(kb) == 3  # independent


def test_select_extractors() -> None:
    kb = filled_base()
    assert kb.extractor_names == ["effnet", "pixels", "mobilenet"]
    sel = kb.select_extractors(["mobilenet", "effnet"])
    assert sel.extractor_names == ["mobilenet", "effnet"]
    np.testing.assert_array_equal(sel.scores, kb.scores[:, [2, 0]])
    np.testing.assert_array_equal(sel.stderr, kb.stderr[:, [2, 0]])
    np.testing.assert_array_equal(sel.eval_time, kb.eval_time[:, [2, 0]])
    np.testing.assert_array_equal(sel.embeddings, kb.embeddings)
    assert sel.task_names == kb.task_names and sel.provenance == kb.provenance
    assert sel.extractor_info == {"effnet": kb.extractor_info["effnet"]}
    assert sel.extra_names == ["domain"]
    sel.add("new-task", vec(7), {"effnet": 0.1})
    assert len(kb) == 3 and kb.extractor_names == ["effnet", "pixels", "mobilenet"]
    with pytest.raises(UnknownNameError, match=r"\['vit'\] are not in this knowledge base"):
        kb.select_extractors(["effnet", "vit"])
    with pytest.raises(KnowledgeBaseError, match="distinct"):
        kb.select_extractors(["effnet", "effnet"])
    with pytest.raises(KnowledgeBaseError, match="at least one"):
        kb.select_extractors([])


def test_named_packaged_bases(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.resources

    with pytest.raises(UnknownNameError, match="'default', 'experts'"):
        KnowledgeBase.named("v3")
    empty = tmp_path / "t2v_automl"
    (empty / "data").mkdir(parents=True)
    monkeypatch.setattr(importlib.resources, "files", lambda package: empty)
    with pytest.raises(KnowledgeBaseError, match="'experts' knowledge base.*not installed.*"
                                                  "build_knowledge_v2.py"):
        KnowledgeBase.named("experts")
    filled_base().save(empty / "data" / knowledge.PACKAGED_KNOWLEDGE["experts"])
    assert KnowledgeBase.named("experts").task_names == filled_base().task_names


def test_merge() -> None:
    a = filled_base()
    b = KnowledgeBase.empty(make_meta())
    b.add("mnist-2-3", vec(1), {"effnet": 0.6}, provenance={"worker": 2})
    b.add("svhn-0-1", vec(4), {"vit": 0.7},
          extra_embeddings={"label_stat": Embedding(vec(4, 2), make_meta(method="ls", dim=2))})
    a.merge(b)
    assert a.task_names == ["fmnist-0-1", "mnist-2-3", "digits-all", "svhn-0-1"]
    assert a.extractor_names == ["effnet", "pixels", "mobilenet", "vit"]
    i = a.index("mnist-2-3")
    np.testing.assert_array_equal(a.scores[i], [0.6, 0.5, 1.0, np.nan])
    assert a.provenance[i] == {"source": "mnist", "note": "ünïcode", "worker": 2}
    assert a.extra_names == ["domain", "label_stat"]
    assert np.isnan(a.extra_embeddings("label_stat")[1][:3]).all()

    before = snapshot(a)
    c = KnowledgeBase.empty(make_meta())
    c.add("mnist-2-3", vec(1), {"effnet": 0.61})
    c.add("another", vec(8), {"effnet": 0.3})
    with pytest.raises(KnowledgeBaseError, match="disagree on 1 value"):
        a.merge(c)
    assert snapshot(a) == before
    a.merge(c, overwrite=True)
    assert a.scores[i, 0] == 0.61 and "another" in a

    with pytest.raises(IncompatibleEmbeddingError, match="weights_sha256"):
        a.merge(KnowledgeBase.empty(make_meta(weights_sha256="cd" * 32)))


def test_scores_frame() -> None:
    pd = pytest.importorskip("pandas")
    kb = filled_base()
    df = kb.scores_frame()
    assert isinstance(df, pd.DataFrame)
    assert list(df.index) == kb.task_names and list(df.columns) == kb.extractor_names
    np.testing.assert_array_equal(df.to_numpy(), kb.scores)


def test_scores_frame_without_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("no pandas")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="pip install pandas"):
        filled_base().scores_frame()


# ------------------------------------------------------------------------ file format


def test_round_trip_exact(tmp_path: Path) -> None:
    kb = filled_base()
    path = kb.save(tmp_path / "kb.npz")
    assert path == tmp_path / "kb.npz"
    loaded = KnowledgeBase.load(path)
    assert_same(kb, loaded)
    # saving again gives the same bytes' content and a base that still takes entries
    loaded.save(tmp_path / "kb2.npz")
    assert_same(kb, KnowledgeBase.load(tmp_path / "kb2.npz"))
    loaded.add("later", vec(20), {"pixels": 0.4})
    assert len(loaded) == 4


def test_round_trip_empty(tmp_path: Path) -> None:
    kb = KnowledgeBase.empty(make_meta(), ["a", "b"])
    kb.save(tmp_path / "kb.npz")
    assert_same(kb, KnowledgeBase.load(tmp_path / "kb.npz"))


def test_file_layout(tmp_path: Path) -> None:
    path = filled_base().save(tmp_path / "kb.npz")
    with np.load(path, allow_pickle=False) as npz:
        assert set(npz.files) == {"__meta__", "embeddings", "scores", "stderr", "eval_time",
                                  "embed_time", "extra_0"}
        doc = json.loads(npz["__meta__"].tobytes())
    assert doc["format"] == "t2v-automl.knowledge-base"
    assert doc["format_version"] == FORMAT_VERSION
    assert len(doc["sha256"]) == 64
    assert doc["extra"][0]["name"] == "domain"
    assert doc["meta"]["probe"] == "mobilenet_v2"


def test_atomic_write_leaves_no_temp_files(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    kb = filled_base()
    kb.save(tmp_path / "kb.npz")
    kb.save(tmp_path / "kb.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kb.npz"]
    good = (tmp_path / "kb.npz").read_bytes()

    def broken_savez(fh: Any, **arrays: Any) -> None:
        fh.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    kb.add("more", vec(30), {"effnet": 0.5})
    with pytest.raises(OSError, match="disk full"):
        kb.save(tmp_path / "kb.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kb.npz"]
    assert (tmp_path / "kb.npz").read_bytes() == good


def test_save_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match="does not exist"):
        filled_base().save(tmp_path / "no" / "kb.npz")


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match="does not exist"):
        KnowledgeBase.load(tmp_path / "absent.npz")


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, -1, -22])
def test_truncated_file_refused(tmp_path: Path, keep: float) -> None:
    data = filled_base().save(tmp_path / "kb.npz").read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    (tmp_path / "kb.npz").write_bytes(data[:n])
    with pytest.raises(KnowledgeBaseError, match="refusing"):
        KnowledgeBase.load(tmp_path / "kb.npz")


def test_flipped_bytes_refused(tmp_path: Path) -> None:
    kb = filled_base()
    data = kb.save(tmp_path / "kb.npz").read_bytes()
    refused = 0
    positions = range(0, len(data), 7)
    for pos in positions:
        bad = bytearray(data)
        bad[pos] ^= 0x01
        (tmp_path / "bad.npz").write_bytes(bytes(bad))
        try:
            loaded = KnowledgeBase.load(tmp_path / "bad.npz")
        except KnowledgeBaseError:
            refused += 1
        else:
            # only a flip in a zip field nothing reads (e.g. a timestamp) may pass, and then
            # the content must be intact; any other exception type fails the test
            assert_same(kb, loaded)
    assert refused >= 0.8 * len(positions)


def rewrite(path: Path, mutate: Any, *, fix_checksum: bool = True) -> None:
    """Rewrite the npz at ``path`` after ``mutate(doc, arrays)``, as a tamperer would."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    doc = json.loads(arrays.pop("__meta__").tobytes())
    mutate(doc, arrays)
    if fix_checksum:
        doc["sha256"] = knowledge.checksum(doc, arrays)
    arrays["__meta__"] = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def test_tampered_content_fails_checksum(tmp_path: Path) -> None:
    path = filled_base().save(tmp_path / "kb.npz")

    def edit_score(doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        arrays["scores"] = arrays["scores"].copy()
        arrays["scores"][0, 0] = 0.1

    rewrite(path, edit_score, fix_checksum=False)
    with pytest.raises(KnowledgeBaseError, match="checksum"):
        KnowledgeBase.load(path)

    path = filled_base().save(tmp_path / "kb2.npz")
    rewrite(path, lambda doc, arrays: doc["task_names"].reverse(), fix_checksum=False)
    with pytest.raises(KnowledgeBaseError, match="checksum"):
        KnowledgeBase.load(path)


@pytest.mark.parametrize("version", [0, FORMAT_VERSION + 1, "1", None])
def test_wrong_version_refused(tmp_path: Path, version: Any) -> None:
    path = filled_base().save(tmp_path / "kb.npz")
    rewrite(path, lambda doc, arrays: doc.__setitem__("format_version", version))
    with pytest.raises(KnowledgeBaseError, match="format version"):
        KnowledgeBase.load(path)


def test_wrong_format_refused(tmp_path: Path) -> None:
    path = filled_base().save(tmp_path / "kb.npz")
    rewrite(path, lambda doc, arrays: doc.__setitem__("format", "something-else"))
    with pytest.raises(KnowledgeBaseError, match="not a t2v-automl knowledge base"):
        KnowledgeBase.load(path)


@pytest.mark.parametrize("key", ["scores", "embed_time", "extra_0"])
def test_missing_array_refused(tmp_path: Path, key: str) -> None:
    path = filled_base().save(tmp_path / "kb.npz")
    rewrite(path, lambda doc, arrays: arrays.pop(key))
    with pytest.raises(KnowledgeBaseError, match=f"missing: \\['{key}'\\]"):
        KnowledgeBase.load(path)
    # even when the listing is edited to match, the base is inconsistent
    path = filled_base().save(tmp_path / "kb2.npz")

    def drop_everywhere(doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        arrays.pop(key)
        doc["arrays"].remove(key)

    rewrite(path, drop_everywhere)
    with pytest.raises(KnowledgeBaseError, match="refusing"):
        KnowledgeBase.load(path)


@pytest.mark.parametrize("field", ["task_names", "sha256", "meta"])
def test_missing_metadata_field_refused(tmp_path: Path, field: str) -> None:
    path = filled_base().save(tmp_path / "kb.npz")
    rewrite(path, lambda doc, arrays: doc.pop(field), fix_checksum=field != "sha256")
    with pytest.raises(KnowledgeBaseError, match=field):
        KnowledgeBase.load(path)


def test_missing_metadata_array_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "plain.npz", embeddings=np.zeros((2, 3)))
    with pytest.raises(KnowledgeBaseError, match="__meta__"):
        KnowledgeBase.load(tmp_path / "plain.npz")


def test_pickle_containing_npz_refused(tmp_path: Path) -> None:
    path = filled_base().save(tmp_path / "kb.npz")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["payload"] = np.array([{"evil": print}], dtype=object)
    np.savez(tmp_path / "evil.npz", **arrays)  # savez pickles object arrays
    with pytest.raises(KnowledgeBaseError, match="pickle"):
        KnowledgeBase.load(tmp_path / "evil.npz")
    # an object array in place of a required one is refused the same way
    arrays.pop("payload")
    arrays["scores"] = np.array([[0.5]], dtype=object)
    np.savez(tmp_path / "evil2.npz", **arrays)
    with pytest.raises(KnowledgeBaseError, match="pickle"):
        KnowledgeBase.load(tmp_path / "evil2.npz")


def test_not_an_npz_refused(tmp_path: Path) -> None:
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(KnowledgeBaseError, match="not a readable .npz"):
        KnowledgeBase.load(tmp_path / "text.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(KnowledgeBaseError, match="single array"):
        KnowledgeBase.load(tmp_path / "single.npy")
    with zipfile.ZipFile(tmp_path / "empty.npz", "w"):
        pass
    with pytest.raises(KnowledgeBaseError, match="__meta__"):
        KnowledgeBase.load(tmp_path / "empty.npz")


def test_invalid_values_in_file_refused(tmp_path: Path) -> None:
    path = filled_base().save(tmp_path / "kb.npz")

    def nan_embedding(doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        arrays["embeddings"] = arrays["embeddings"].copy()
        arrays["embeddings"][1, 2] = np.nan

    rewrite(path, nan_embedding)
    with pytest.raises(KnowledgeBaseError, match="finite"):
        KnowledgeBase.load(path)


def test_load_expected_meta(tmp_path: Path) -> None:
    path = filled_base().save(tmp_path / "kb.npz")
    assert len(KnowledgeBase.load(path, expected_meta=make_meta(n_images=10))) == 3
    assert len(KnowledgeBase.load(path, expected_meta=Embedding(vec(0), make_meta()))) == 3
    with pytest.raises(IncompatibleEmbeddingError, match="method: 'exact' vs 'montecarlo'"):
        KnowledgeBase.load(path, expected_meta=make_meta(method="exact"))
    with pytest.raises(IncompatibleEmbeddingError, match="probe"):
        KnowledgeBase.load(path, expected_meta=make_meta(probe="resnet18"))


# ------------------------------------------------------------------------ default()


def test_default_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(knowledge, "_default_resource", lambda: tmp_path / "absent.npz")
    with pytest.raises(KnowledgeBaseError, match="not installed") as info:
        KnowledgeBase.default()
    assert "KnowledgeBase.load" in str(info.value)


def test_default_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kb = filled_base()
    kb.save(tmp_path / "knowledge_default.npz")
    monkeypatch.setattr(knowledge, "_default_resource",
                        lambda: tmp_path / "knowledge_default.npz")
    assert_same(kb, KnowledgeBase.default())
    with pytest.raises(IncompatibleEmbeddingError):
        KnowledgeBase.default(expected_meta=make_meta(dim=DIM + 1))


def test_default_resource_points_into_package() -> None:
    res = knowledge.default_resource()
    assert res.name == "knowledge_default.npz"
    assert "t2v_automl" in str(res) and "data" in str(res)


# ------------------------------------------------------------------------ locking


def test_locked_update_creates_and_saves(tmp_path: Path) -> None:
    path = tmp_path / "kb.npz"
    with pytest.raises(KnowledgeBaseError, match="no meta"):
        with KnowledgeBase.locked_update(path):
            pass
    with KnowledgeBase.locked_update(path, make_meta(), ["effnet"]) as kb:
        kb.add("t0", vec(0), {"effnet": 0.5})
    with KnowledgeBase.locked_update(path) as kb:
        assert kb.task_names == ["t0"]
        kb.add("t1", vec(1), {"effnet": 0.6})
    assert KnowledgeBase.load(path).task_names == ["t0", "t1"]
    # a failing block saves nothing
    with pytest.raises(RuntimeError):
        with KnowledgeBase.locked_update(path) as kb:
            kb.add("t2", vec(2), {"effnet": 0.7})
            raise RuntimeError("boom")
    assert KnowledgeBase.load(path).task_names == ["t0", "t1"]
    with pytest.raises(IncompatibleEmbeddingError):
        with KnowledgeBase.locked_update(path, make_meta(method="exact")):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kb.npz", "kb.npz.lock"]


def test_locked_update_timeout(tmp_path: Path) -> None:
    import fcntl

    path = tmp_path / "kb.npz"
    with open(str(path) + ".lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        with pytest.raises(KnowledgeBaseError, match="could not lock"):
            with KnowledgeBase.locked_update(path, make_meta(), timeout=0.2):
                pass
    assert not path.exists()


def _writer(path: str, worker: int, n_adds: int) -> None:
    for k in range(n_adds):
        with KnowledgeBase.locked_update(path, make_meta(), ["shared"]) as kb:
            kb.add(f"w{worker}-t{k}", vec(100 * worker + k),
                   {"shared": (worker + k / 100) / 10, f"only-w{worker}": 0.5},
                   provenance={"worker": worker, "k": k})


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs the fork start method")
    ctx = multiprocessing.get_context("fork")
    path = str(tmp_path / "kb.npz")
    n_workers, n_adds = 4, 10
    procs = [ctx.Process(target=_writer, args=(path, w, n_adds)) for w in range(n_workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * n_workers
    kb = KnowledgeBase.load(path)
    expected = {f"w{w}-t{k}" for w in range(n_workers) for k in range(n_adds)}
    assert set(kb.task_names) == expected and len(kb) == n_workers * n_adds
    assert set(kb.extractor_names) == {"shared"} | {f"only-w{w}" for w in range(n_workers)}
    for name, prov, emb, row in zip(kb.task_names, kb.provenance, kb.embeddings, kb.scores,
                                    strict=True):
        w, k = prov["worker"], prov["k"]
        assert name == f"w{w}-t{k}"
        np.testing.assert_array_equal(emb, vec(100 * w + k))
        assert row[kb.extractor_names.index("shared")] == (w + k / 100) / 10
    leftovers = sorted(p for p in os.listdir(tmp_path) if p not in ("kb.npz", "kb.npz.lock"))
    assert leftovers == []
