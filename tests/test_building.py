"""Tests of the knowledge-base build (tiny real builds: raw pixels, small embedder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from t2v_automl.building import (
    DEFAULT_EXTRA_EMBEDDINGS,
    EvaluationNotCachedError,
    build_knowledge,
    build_knowledge_details,
)
from t2v_automl.estimators import Task2VecEmbedder
from t2v_automl.evaluation import evaluate_zoo
from t2v_automl.exceptions import InvalidInputTypeError, InvalidParameterError, UnknownNameError
from t2v_automl.knowledge import KnowledgeBase
from t2v_automl.tasks import Task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _small_embedder() -> Task2VecEmbedder:
    return Task2VecEmbedder(image_size=32, max_images=30, device="cpu")


@pytest.fixture(scope="module")
def pairs() -> list[tuple[Task, Task]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    out = []
    for k, digits in enumerate(((0, 1), (3, 8))):
        keep = np.flatnonzero(np.isin(d.target, digits))
        idx = np.random.default_rng(k).permutation(keep)
        tr, te = idx[:24], idx[24:84]
        out.append((Task.from_arrays(d.images[tr] / 16.0, d.target[tr], name=f"own{k}"),
                    Task.from_arrays(d.images[te] / 16.0, d.target[te], name=f"own{k}-test")))
    return out


def test_own_tasks(pairs: list[tuple[Task, Task]]) -> None:
    kb = build_knowledge(pairs, ["raw_pixels"], embedder=_small_embedder(),
                         extra_embeddings={"domain": {"method": "domain"}})
    assert isinstance(kb, KnowledgeBase)
    assert kb.task_names == ["own0", "own1"] and kb.extractor_names == ["raw_pixels"]
    zoo = evaluate_zoo(["raw_pixels"], pairs, input_size=64)
    np.testing.assert_array_equal(kb.scores, zoo.scores)
    np.testing.assert_array_equal(kb.stderr, zoo.stderr)
    emb = _small_embedder().fit().embed([tr for tr, _ in pairs])
    np.testing.assert_array_equal(kb.embeddings, np.stack([e.values for e in emb]))
    assert kb.extra_names == ["domain"]
    assert kb.extractor_info["raw_pixels"]["linear_head"].startswith("StandardScaler")
    assert kb.provenance[0]["evaluation"]["C"] == 1.0


def test_reuse_embeddings_takes_known_tasks_and_embeds_the_rest(
        pairs: list[tuple[Task, Task]], monkeypatch: pytest.MonkeyPatch) -> None:
    import t2v_automl.building as building

    extra = {"domain": {"method": "domain"}}
    first = build_knowledge(pairs[:1], ["raw_pixels"], embedder=_small_embedder(),
                            extra_embeddings=extra)
    calls: list[str] = []
    real = building._embed_cached

    def counting(key: dict, task: Task) -> dict:
        calls.append(task.name)
        return real(key, task)

    monkeypatch.setattr(building, "_embed_cached", counting)
    kb = build_knowledge(pairs, ["raw_pixels"], embedder=_small_embedder(),
                         extra_embeddings=extra, reuse_embeddings=first)
    assert calls == ["own1", "own1"]  # main and domain sets of the new task only
    np.testing.assert_array_equal(kb.embeddings[0], first.embeddings[0])
    np.testing.assert_array_equal(kb.extra_embeddings("domain")[1][0],
                                  first.extra_embeddings("domain")[1][0])
    assert kb.embed_time[0] == first.embed_time[0]
    full = build_knowledge(pairs, ["raw_pixels"], embedder=_small_embedder(),
                           extra_embeddings=extra)
    np.testing.assert_array_equal(kb.embeddings, full.embeddings)
    # other training images under the same name, or another embedder: embedded again
    calls.clear()
    tr1 = pairs[1][0]
    other = [(Task(tr1.images, tr1.labels, tr1.classes, "own0"),
              Task(pairs[0][1].images, pairs[0][1].labels, tr1.classes, "own0-test"))]
    build_knowledge(other, ["raw_pixels"], embedder=_small_embedder(),
                    extra_embeddings={}, reuse_embeddings=first)
    assert calls == ["own0"]
    calls.clear()
    build_knowledge(pairs[:1], ["raw_pixels"],
                    embedder=_small_embedder().set_params(image_size=40),
                    extra_embeddings={}, reuse_embeddings=first)
    assert calls == ["own0"]


def test_suite_with_cache_and_cached_only(tmp_path: Path) -> None:
    kw = {"seed": 0, "limit": 2, "embedder": _small_embedder(), "extra_embeddings": {},
          "test_cap": 20}
    with pytest.raises(EvaluationNotCachedError, match="evaluations='compute'"):
        build_knowledge("mini", ["raw_pixels"], memory=tmp_path, evaluations="cached", **kw)
    first = build_knowledge_details("mini", ["raw_pixels"], memory=tmp_path, **kw)
    assert first.n_computed == 2 and len(first.knowledge) == 2
    assert first.knowledge.provenance[0]["n_test_evaluated"] == 20
    again = build_knowledge_details("mini", ["raw_pixels"], memory=tmp_path,
                                    evaluations="cached", **kw)
    assert again.n_computed == 0
    np.testing.assert_array_equal(again.knowledge.scores, first.knowledge.scores)
    np.testing.assert_array_equal(again.knowledge.embeddings, first.knowledge.embeddings)
    # the shared extractor instances are left as they were
    from t2v_automl.extractors import get_extractor

    assert "transform" not in vars(get_extractor("raw_pixels"))


def test_bad_arguments(pairs: list[tuple[Task, Task]]) -> None:
    with pytest.raises(UnknownNameError):
        build_knowledge(pairs, ["nope"])
    with pytest.raises(InvalidInputTypeError, match="list of names"):
        build_knowledge(pairs, "raw_pixels")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputTypeError, match=r"tasks\[0\]"):
        build_knowledge([pairs[0][0]], ["raw_pixels"])  # type: ignore[list-item]
    with pytest.raises(InvalidParameterError, match="unique"):
        build_knowledge([pairs[0], pairs[0]], ["raw_pixels"])
    with pytest.raises(InvalidParameterError, match="needs memory"):
        build_knowledge(pairs, ["raw_pixels"], evaluations="cached")
    assert set(DEFAULT_EXTRA_EMBEDDINGS) == {"domain", "label_stat", "montecarlo_full"}


# ----------------------------------------------------------------------------- folders
def _png_class(folder: Path, pattern: int, n: int, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        base = np.zeros((16, 16, 3))
        base[:8] = 1 if pattern == 0 else 0
        base[:, :8] += 1 if pattern == 1 else 0
        base[::3] += 1 if pattern == 2 else 0
        img = np.clip(base * 150 + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/plain/<class>`` (2 classes x 8) and ``root/split/train|test/<class>`` (3)."""
    root = tmp_path_factory.mktemp("own-folders")
    for c, k in (("a", 0), ("b", 1)):
        _png_class(root / "plain" / c, k, 8, k)
    for split, n in (("train", 6), ("test", 3)):
        for c, k in (("a", 0), ("b", 1), ("c", 2)):
            _png_class(root / "split" / split / c, k, n, 10 * k + n)
    return root


class _Stopped(Exception):
    """Stands for a kill in the middle of a build."""


def _tiny_embedder() -> Task2VecEmbedder:
    return Task2VecEmbedder(probe="tiny_random", image_size=16, method="montecarlo",
                            max_images=40, device="cpu")


def test_task_folders_detects_the_layouts(folders: Path, tmp_path: Path) -> None:
    from t2v_automl.exceptions import ImageFolderError
    from t2v_automl.tasks import TaskFolder, task_folders

    assert task_folders(folders / "plain") == [TaskFolder(folders / "plain", folders / "plain")]
    assert task_folders(folders / "split") == [
        TaskFolder(folders / "split", folders / "split" / "train", folders / "split" / "test")]
    assert [t.name for t in task_folders(folders)] == ["plain", "split"]
    (tmp_path / "e" / "cats").mkdir(parents=True)
    with pytest.raises(ImageFolderError, match="no image files in the class folders"):
        task_folders(tmp_path / "e")
    with pytest.raises(ImageFolderError, match="does not exist"):
        task_folders(tmp_path / "nope")
    (tmp_path / "p" / "x" / "y").mkdir(parents=True)
    _png_class(tmp_path / "p" / "ok" / "a", 0, 2, 0)
    with pytest.raises(ImageFolderError, match=r"p/x'.*is not a task"):
        task_folders(tmp_path / "p")


def test_split_task_is_stratified_seeded_and_lazy(folders: Path) -> None:
    from t2v_automl.folders import split_task

    task = Task.from_folder(folders / "plain", image_size=16)
    train, test = split_task(task, 0.25, seed=3)
    assert train.is_lazy and test.is_lazy and test.name == "plain/test"
    assert np.bincount(test.labels).tolist() == [2, 2]
    assert np.bincount(train.labels).tolist() == [6, 6]
    again = split_task(task, 0.25, seed=3)[1]
    other = split_task(task, 0.25, seed=4)[1]
    assert again.fingerprint == test.fingerprint != other.fingerprint
    assert not set(test.images.files) & set(train.images.files)  # type: ignore[union-attr]
    with pytest.raises(InvalidParameterError, match="test_fraction"):
        split_task(task, 1.0)
    small = split_task(task.subset([0, 1, 2, 3, 8, 9, 10, 11, 12]), 0.9)
    assert [t.n_images for t in small] == [4, 5]  # at least 2 of each class on each side
    with pytest.raises(Exception, match="'a' of task 'plain' has 3 images.*needs 4"):
        split_task(task.subset([0, 1, 2, 8, 9, 10, 11]), 0.5)


def test_build_from_folders_resumes_and_matches(folders: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import t2v_automl.evaluation as evaluation
    from t2v_automl.folders import build_knowledge_from_folders, folder_tasks

    tasks = folder_tasks(folders, image_size=32)
    assert [t.name for t in tasks] == ["plain", "split"]
    assert tasks[0].provenance["split"] == {"test_fraction": 0.25, "seed": 0}
    assert tasks[1].provenance["split"] == "folders" and tasks[1].test.n_images == 9

    kw = {"embedder": _tiny_embedder(), "memory": tmp_path / "cache"}
    ref = build_knowledge_from_folders([folders], ["raw_pixels", "mnist_cnn"],
                                       embedder=_tiny_embedder())
    original, calls = evaluation.evaluate_extractor, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise _Stopped  # the build is stopped in its third evaluation
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_extractor", failing)
    with pytest.raises(_Stopped):
        build_knowledge_from_folders([folders], ["raw_pixels", "mnist_cnn"], **kw)
    calls.clear()
    kb = build_knowledge_from_folders([folders], ["raw_pixels", "mnist_cnn"], **kw)
    assert len(calls) == 2  # 4 evaluations, 2 of them cached before the stop
    assert kb.task_names == ref.task_names and kb.extra_names == ["domain"]
    np.testing.assert_array_equal(kb.scores, ref.scores)
    np.testing.assert_array_equal(kb.embeddings, ref.embeddings)
    np.testing.assert_array_equal(kb.extra_embeddings("domain")[1],
                                  ref.extra_embeddings("domain")[1])

    import joblib

    monkeypatch.undo()
    with joblib.parallel_config(backend="threading", n_jobs=2):
        par = build_knowledge_from_folders([folders], ["raw_pixels", "mnist_cnn"],
                                           embedder=_tiny_embedder(), extra_embeddings={})
    np.testing.assert_array_equal(par.scores, ref.scores)
    np.testing.assert_array_equal(par.embeddings, ref.embeddings)


def test_build_from_folders_bad_input(folders: Path, tmp_path: Path) -> None:
    from t2v_automl.exceptions import ImageFolderError, InvalidTaskError
    from t2v_automl.folders import build_knowledge_from_folders, folder_tasks

    _png_class(tmp_path / "one" / "a", 0, 3, 0)
    with pytest.raises(InvalidTaskError, match=r"one'.*at least 2 classes"):
        folder_tasks(tmp_path / "one")
    _png_class(tmp_path / "few" / "a", 0, 5, 0)
    _png_class(tmp_path / "few" / "b", 0, 3, 0)
    with pytest.raises(InvalidTaskError, match=r"few'.*'b'.*3 images.*needs 4"):
        folder_tasks(tmp_path / "few")
    with pytest.raises(UnknownNameError):
        build_knowledge_from_folders(folders, ["nope"])
    with pytest.raises(InvalidParameterError, match="takes no 'seed'|suites"):
        build_knowledge_from_folders(folders, ["raw_pixels"], limit=1)
    _png_class(tmp_path / "mixed" / "train" / "a", 0, 2, 0)
    _png_class(tmp_path / "mixed" / "train" / "b", 1, 2, 0)
    _png_class(tmp_path / "mixed" / "test" / "a", 0, 2, 0)
    _png_class(tmp_path / "mixed" / "test" / "z", 1, 2, 0)
    with pytest.raises(ImageFolderError, match="same class folders"):
        folder_tasks(tmp_path / "mixed")


def test_feature_sharing_survives_a_zoo_larger_than_the_instance_cache() -> None:
    """A build over more extractors than the old instance cache (32) kept loaded shares
    the features of a relabel pool between its label functions, as with a small zoo."""
    from collections import Counter

    import torch

    from t2v_automl.extractors import as_extractor, extractor_name, unregister_extractor
    from t2v_automl.extractors._registry import LOADED_EXTRACTORS_MAX
    from t2v_automl.suites import make_suite

    calls: Counter[int] = Counter()

    def make(k: int):  # noqa: ANN202
        def feats(x: torch.Tensor) -> torch.Tensor:
            calls[k] += 1
            return x.mean(dim=(2, 3)) * (k + 1)
        return as_extractor(feats, name=f"tiny-{k}",
                            preprocessing={"input_size": 8, "resizable": False})

    n = 40
    assert LOADED_EXTRACTORS_MAX > n
    specs = [make(k) for k in range(n)]
    relabel = [st for st in make_suite("mini") if st.kind == "relabel"]
    assert len(relabel) == 4
    try:
        names = [extractor_name(s) for s in specs]  # registers them
        r = build_knowledge_details(relabel, names, embedder=_small_embedder(),
                                    extra_embeddings={})
    finally:
        for s in specs:
            try:
                unregister_extractor(s.name)
            except UnknownNameError:
                pass
    # one call to size the features when loaded, then the pool's arrays once (the
    # training split in one batch, the test split in two)
    assert set(calls.values()) == {4}, calls
    assert r.knowledge.scores.shape == (4, n)
