from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline

from t2v_automl import distances
from t2v_automl.estimators import Task2VecEmbedder
from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    InvalidParameterError,
    InvalidTaskError,
    SlowEmbeddingWarning,
    UnknownNameError,
)

FAST = dict(probe="tiny_random", image_size=16, max_images=40, head_epochs=3)


def test_transform_shape_metadata_and_repeatability(digit_tasks):
    emb = Task2VecEmbedder(**FAST)
    E = emb.fit_transform(digit_tasks)
    assert E.shape == (4, emb.n_features_out_) == (4, 40)
    assert np.isfinite(E).all() and (E >= 0).all()
    assert np.array_equal(E, emb.transform(digit_tasks))  # probe not mutated
    embs = emb.embed(digit_tasks[:2])
    assert embs[0].meta.probe == "tiny_random" and embs[0].meta.method == "exact"
    assert embs[0].meta.n_images == 40 and embs[0].task_name == digit_tasks[0].name
    assert embs[0].task_fingerprint == digit_tasks[0].fingerprint


def test_inputs_as_pairs_and_folders(digit_tasks, tmp_path):
    from PIL import Image

    t = digit_tasks[0]
    sel = np.r_[np.flatnonzero(t.labels == 0)[:6], np.flatnonzero(t.labels == 1)[:6]]
    for i, (img, lab) in enumerate(zip(t.images[sel], t.labels[sel], strict=True)):
        d = tmp_path / f"c{lab}"
        d.mkdir(exist_ok=True)
        Image.fromarray((img.transpose(1, 2, 0) * 255).astype(np.uint8)).save(d / f"{i}.png")
    emb = Task2VecEmbedder(**FAST).fit()
    E = emb.transform([(t.images, t.classes[t.labels]), str(tmp_path)])
    assert E.shape == (2, 40)


def test_sklearn_api(digit_tasks, tmp_path):
    emb = Task2VecEmbedder(**FAST, method="montecarlo", random_state=3)
    c = clone(emb)
    assert c.get_params() == emb.get_params()
    c.set_params(method="empirical")
    assert c.method == "empirical" and emb.method == "montecarlo"
    emb.fit()
    path = tmp_path / "emb.joblib"
    joblib.dump(emb, path)
    loaded = joblib.load(path)
    assert np.array_equal(loaded.transform(digit_tasks[:2]), emb.transform(digit_tasks[:2]))
    assert emb.get_feature_names_out()[0] == "task2vec0"


def test_pipeline_and_grid_search(digit_tasks):
    y = np.array([0.9, 0.8, 0.6, 0.5])
    pipe = make_pipeline(Task2VecEmbedder(**FAST), KNeighborsRegressor(n_neighbors=1))
    pipe.fit(digit_tasks, y)
    assert pipe.predict(digit_tasks).shape == (4,)
    gs = GridSearchCV(pipe, {"task2vecembedder__method": ["exact", "label_stat"]}, cv=2,
                      scoring="neg_mean_absolute_error")
    gs.fit(digit_tasks, y)
    assert gs.best_params_["task2vecembedder__method"] in ("exact", "label_stat")


def test_grid_search_over_embedder_settings_with_the_selector(digit_tasks, tmp_path):
    """The README's recipe: tune the embedder by the selector's ranking quality, the
    pipeline's ``memory`` embedding each (setting, fold) once."""
    import pandas as pd

    from t2v_automl.estimators import ExtractorSelector

    Y = pd.DataFrame({"a": [0.9, 0.85, 0.6, 0.55], "b": [0.6, 0.65, 0.9, 0.95]})
    pipe = make_pipeline(Task2VecEmbedder(**FAST), ExtractorSelector(n_neighbors=1),
                         memory=str(tmp_path))
    gs = GridSearchCV(pipe, {"task2vecembedder__method": ["exact", "domain"],
                             "extractorselector__metric": ["hellinger", "normalized_cosine"]},
                      cv=2)
    gs.fit(digit_tasks, Y)
    assert set(gs.best_params_) == {"task2vecembedder__method", "extractorselector__metric"}
    assert np.isfinite(gs.cv_results_["mean_test_score"]).all()
    assert gs.predict(digit_tasks[:1]).shape == (1, 2)  # scores, like Y
    best = gs.best_estimator_
    assert best[-1].select(best[:-1].transform(digit_tasks[:1]))[0] in ("a", "b")


def test_random_state_controls_montecarlo(digit_tasks):
    a = Task2VecEmbedder(**FAST, method="montecarlo", random_state=0).fit_transform(digit_tasks)
    b = Task2VecEmbedder(**FAST, method="montecarlo", random_state=0).fit_transform(digit_tasks)
    c = Task2VecEmbedder(**FAST, method="montecarlo", random_state=1).fit_transform(digit_tasks)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_memory_caches_by_fingerprint_and_settings(digit_tasks, tmp_path):
    emb = Task2VecEmbedder(**FAST, memory=str(tmp_path / "cache")).fit()
    a = emb.transform(digit_tasks[:2])
    n_files = sum(1 for _ in (tmp_path / "cache").rglob("output.pkl"))
    assert n_files == 2
    b = emb.transform(digit_tasks[:2])
    assert np.array_equal(a, b)
    assert sum(1 for _ in (tmp_path / "cache").rglob("output.pkl")) == 2
    emb.set_params(head_epochs=4).fit()
    emb.transform(digit_tasks[:1])
    assert sum(1 for _ in (tmp_path / "cache").rglob("output.pkl")) == 3
    # a failing task caches nothing
    bad = Task2VecEmbedder(**{**FAST, "max_images": 4}, memory=str(tmp_path / "cache")).fit()
    with pytest.raises(InvalidTaskError):
        bad.transform(digit_tasks[3:])
    assert sum(1 for _ in (tmp_path / "cache").rglob("output.pkl")) == 3


def test_parallel_equals_serial(digit_tasks):
    serial = Task2VecEmbedder(**FAST).fit_transform(digit_tasks)
    parallel = Task2VecEmbedder(**FAST, n_jobs=2).fit_transform(digit_tasks)
    assert np.array_equal(serial, parallel)


@pytest.mark.parametrize("params, match", [
    (dict(max_images=4), "too small for a task of 3 classes"),
    (dict(image_size=4), "image_size"),
    (dict(method="variational"), "method must be one of"),
    (dict(skip_layers=7), "out of range"),
    (dict(probe="vgg"), "unknown probe"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_settings_are_clear(digit_tasks, params, match):
    with pytest.raises((InvalidTaskError, UnknownNameError), match=match):
        Task2VecEmbedder(**{**FAST, **params}).fit().transform(digit_tasks[2:3])


def test_image_size_is_bounded_and_many_classes_warn_once_per_task(digit_tasks, monkeypatch):
    import warnings

    import t2v_automl.fisher as fisher

    with pytest.raises(InvalidParameterError, match=r"image_size=20000 is above the 1024 px "
                                                    r"bound: the 40 images .* 192.0 GB"):
        Task2VecEmbedder(**{**FAST, "image_size": 20000}).fit()
    monkeypatch.setattr(fisher, "EXACT_WARN_CLASSES", 2)  # 3 classes count as many: cheap
    few, many = digit_tasks[0], digit_tasks[2]
    emb = Task2VecEmbedder(**{**FAST, "head_epochs": 1}).fit()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        emb.transform([many, few, many])
    slow = [str(w.message) for w in rec if issubclass(w.category, SlowEmbeddingWarning)]
    assert len(slow) == 2  # once per many-class task, in the caller; none from the workers
    assert f"task {many.name!r} of 3 classes takes 2 backward passes" in slow[0]
    assert "montecarlo" in slow[0]


def test_bad_x(digit_tasks):
    emb = Task2VecEmbedder(**FAST).fit()
    with pytest.raises(InvalidInputTypeError, match="Wrap it in a list"):
        emb.transform(digit_tasks[0])
    with pytest.raises(InvalidTaskError, match="no tasks"):
        emb.transform([])
    with pytest.raises(InvalidInputTypeError, match="list of tasks"):
        emb.transform(np.zeros((3, 4)))


def test_mixing_probes_is_refused(digit_tasks):
    a = Task2VecEmbedder(**FAST).fit().embed(digit_tasks[:1])
    b = Task2VecEmbedder(**{**FAST, "image_size": 32}).fit().embed(digit_tasks[:1])
    with pytest.raises(IncompatibleEmbeddingError, match="input_size"):
        distances.symmetric(a[0], b[0])


@pytest.mark.slow
def test_real_probe_separates_domains(digits):
    """mobilenet_v2 on real data: digit tasks are nearer each other than to Fashion-MNIST."""
    from t2v_automl.datasets import load_pool
    from t2v_automl.tasks import Task
    from tests.conftest import make_digit_task

    fm = load_pool("fashion_mnist")
    rng = np.random.default_rng(0)

    def fm_task(classes):
        idx = np.concatenate([rng.choice(np.flatnonzero(fm.labels == c), 30, replace=False)
                              for c in classes])
        return Task.from_arrays(fm.images[idx], fm.labels[idx])

    tasks = [make_digit_task(digits, (0, 1)), make_digit_task(digits, (3, 8)),
             fm_task((0, 1)), fm_task((5, 7))]
    emb = Task2VecEmbedder(probe="mobilenet_v2", max_images=60, image_size=64)
    D = distances.pairwise_distances(emb.fit_transform(tasks))
    within = (D[0, 1] + D[2, 3]) / 2
    across = (D[0, 2] + D[0, 3] + D[1, 2] + D[1, 3]) / 4
    assert within < across
    assert D[0, 1] < min(D[0, 2], D[0, 3], D[1, 2], D[1, 3])


def test_cuda_without_cuda_falls_back_with_a_warning(digit_tasks, caplog):
    import torch

    from t2v_automl.exceptions import DeviceFallbackWarning

    if torch.cuda.is_available():
        pytest.skip("tests the fallback where CUDA is absent")
    with pytest.warns(DeviceFallbackWarning, match="using the CPU"), \
            caplog.at_level("WARNING", logger="t2v_automl"):
        emb = Task2VecEmbedder(**FAST, device="cuda", amp=True, channels_last=True).fit()
    assert emb.device_ == "cpu"
    assert any("CUDA is not available" in r.getMessage() for r in caplog.records)
    ref = Task2VecEmbedder(**FAST, device="cpu").fit().transform(digit_tasks[:2])
    np.testing.assert_allclose(emb.transform(digit_tasks[:2]), ref, rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize("params, match", [
    (dict(amp="fp8"), "amp must be"),
    (dict(channels_last="yes"), "channels_last must be"),
])
def test_bad_device_settings_are_clear(params, match):
    from t2v_automl.exceptions import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=match):
        Task2VecEmbedder(**{**FAST, **params}).fit()


@pytest.mark.slow
def test_pickle_carries_the_probe_by_name_not_its_tensors(digit_tasks):
    import pickle

    emb = Task2VecEmbedder(probe="mobilenet_v2", image_size=32, max_images=20,
                           head_epochs=1).fit()
    blob = pickle.dumps(emb)
    assert len(blob) < 100_000  # the probe's 14 MB of weights are not in it
    again = pickle.loads(blob)
    assert again.probe_ is emb.probe_  # reloaded by name (cached per process)
    assert again.embedding_meta_ == emb.embedding_meta_
    assert np.array_equal(again.transform(digit_tasks[:1]), emb.transform(digit_tasks[:1]))
