"""Tests of the brute-force evaluation (fast ones use raw_pixels on sklearn digits)."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from t2v_automl import evaluation
from t2v_automl.evaluation import EvalResult, ZooResults, evaluate_extractor, evaluate_zoo
from t2v_automl.exceptions import InvalidInputTypeError, InvalidTaskError, UnknownNameError
from t2v_automl.tasks import Task

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One torch thread: with 2 shared cores, 2 threads thrash when another job is busy."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits_pair() -> tuple[Task, Task]:
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.flatnonzero(d.target < 3)
    rng = np.random.default_rng(0)
    idx = rng.permutation(keep)
    tr, te = idx[:45], idx[45:245]
    return (Task.from_arrays(d.images[tr] / 16.0, d.target[tr], name="digits012"),
            Task.from_arrays(d.images[te] / 16.0, d.target[te], name="digits012-test"))


def test_evaluate_extractor_result(digits_pair: tuple[Task, Task]) -> None:
    train, test = digits_pair
    r = evaluate_extractor("raw_pixels", train, test)
    assert isinstance(r, EvalResult)
    assert r.extractor == "raw_pixels" and r.task == "digits012"
    assert r.correct.dtype == bool and r.correct.shape == (test.n_images,)
    assert r.score == pytest.approx(r.correct.mean())
    assert r.stderr == pytest.approx(math.sqrt(r.score * (1 - r.score) / test.n_images))
    assert r.score > 0.8  # three easy digit classes
    assert (r.n_train, r.n_test, r.n_classes, r.input_size) == (45, 200, 3, 16)
    assert r.time_s == pytest.approx(r.extract_time_s + r.fit_time_s) and r.time_s > 0
    assert r.train_fingerprint == train.fingerprint
    d = r.to_dict()
    assert d["score"] == r.score and len(d["correct"]) == 200


def test_evaluation_is_deterministic(digits_pair: tuple[Task, Task]) -> None:
    a = evaluate_extractor("raw_pixels", *digits_pair, random_state=3)
    b = evaluate_extractor("raw_pixels", *digits_pair, random_state=3)
    np.testing.assert_array_equal(a.correct, b.correct)
    assert a.score == b.score


def test_C_grid_is_chosen_by_cross_validation(digits_pair: tuple[Task, Task]) -> None:
    r = evaluate_extractor("raw_pixels", *digits_pair, C=[1e-4, 1.0], n_splits=3)
    assert r.C in (1e-4, 1.0)
    with pytest.raises(ValueError, match="C must be a positive number"):
        evaluate_extractor("raw_pixels", *digits_pair, C=-1.0)
    with pytest.raises(ValueError, match="n_splits"):
        evaluate_extractor("raw_pixels", *digits_pair, n_splits=1)


def test_mismatched_classes_are_rejected(digits_pair: tuple[Task, Task]) -> None:
    train, test = digits_pair
    other = test.subset(np.flatnonzero(test.labels < 2))  # classes [0, 1] vs [0, 1, 2]
    with pytest.raises(InvalidTaskError, match="classes differ"):
        evaluate_extractor("raw_pixels", train, other)
    with pytest.raises(InvalidTaskError, match="classes differ"):
        evaluate_zoo(["raw_pixels"], [(train, test), (train, other)])
    with pytest.raises(InvalidInputTypeError, match="must be a Task"):
        evaluate_extractor("raw_pixels", train, test.images)  # type: ignore[arg-type]


def test_unknown_extractor_is_rejected(digits_pair: tuple[Task, Task]) -> None:
    with pytest.raises(UnknownNameError, match="known extractors"):
        evaluate_extractor("nope", *digits_pair)
    with pytest.raises(UnknownNameError, match="known extractors"):
        evaluate_zoo(["raw_pixels", "nope"], [digits_pair])
    with pytest.raises(InvalidInputTypeError, match="list of names"):
        evaluate_zoo("raw_pixels", [digits_pair])  # type: ignore[arg-type]
    with pytest.raises(InvalidTaskError, match="pairs is empty"):
        evaluate_zoo(["raw_pixels"], [])


def test_evaluate_zoo_matches_single_evaluations(digits_pair: tuple[Task, Task],
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    train, test = digits_pair
    swapped = (test.subset(np.arange(60), name="swapped"), train)
    pairs = [digits_pair, swapped]
    z = evaluate_zoo(["raw_pixels"], pairs, memory=tmp_path, verbose=1)
    assert isinstance(z, ZooResults)
    assert z.extractors == ["raw_pixels"] and z.tasks == ["digits012", "swapped"]
    assert z.scores.shape == z.stderr.shape == z.times.shape == (2, 1)
    single = evaluate_extractor("raw_pixels", train, test)
    assert z.scores[0, 0] == single.score
    np.testing.assert_array_equal(z.correct("digits012", "raw_pixels"), single.correct)
    assert len(z.to_records()) == 2 and "correct" not in z.to_records()[0]

    # the second run is served by the cache: evaluating anything would fail
    def boom(*args, **kwargs):
        raise AssertionError("not cached")

    monkeypatch.setattr(evaluation, "evaluate_extractor", boom)
    again = evaluate_zoo(["raw_pixels"], pairs, memory=str(tmp_path))
    np.testing.assert_array_equal(again.scores, z.scores)
    np.testing.assert_array_equal(again.correct(1, 0), z.correct(1, 0))
    # other settings are another cache entry
    with pytest.raises(AssertionError, match="not cached"):
        evaluate_zoo(["raw_pixels"], pairs, memory=tmp_path, C=0.5)


@pytest.mark.slow
def test_parallel_equals_serial(digits_pair: tuple[Task, Task]) -> None:
    pairs = [digits_pair, digits_pair[::-1]]
    serial = evaluate_zoo(["raw_pixels"], pairs, n_jobs=1)
    parallel = evaluate_zoo(["raw_pixels"], pairs, n_jobs=2)  # loky workers
    np.testing.assert_array_equal(serial.scores, parallel.scores)


def _idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


@pytest.mark.slow
def test_pretrained_beats_controls_on_shifted_fashion_mnist() -> None:
    if not (FASHION / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not installed under {FASHION} "
                    "(apt-get install dataset-fashion-mnist)")
    X = _idx(FASHION / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    y = _idx(FASHION / "t10k-labels-idx1-ubyte.gz", 8)
    rng = np.random.default_rng(0)
    classes = [0, 1, 2, 3]  # t-shirt, trouser, pullover, dress
    tr = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:20] for c in classes])
    te = np.concatenate([rng.permutation(np.flatnonzero(y == c))[20:70] for c in classes])

    def shifted(imgs: np.ndarray) -> np.ndarray:  # random placement on a 40 px canvas
        out = np.zeros((len(imgs), 40, 40), np.uint8)
        for k, im in enumerate(imgs):
            i, j = rng.integers(0, 13, 2)
            out[k, i:i + 28, j:j + 28] = im
        return out

    train = Task.from_arrays(shifted(X[tr]), y[tr], name="fashion-shifted")
    test = Task.from_arrays(shifted(X[te]), y[te], name="fashion-shifted")
    z = evaluate_zoo(["mobilenet_v2", "random_mobilenet_v2", "raw_pixels"], [(train, test)],
                     input_size=64)
    pre, rand, raw = z.scores[0]
    se = z.stderr[0].max()
    assert pre > rand + 3 * se and pre > raw + 3 * se, z.scores


def test_make_linear_head_is_the_knowledge_bases_classifier() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from t2v_automl.evaluation import make_linear_head

    head = make_linear_head(0.1, random_state=3)
    scaler, lr = (step for _, step in head.steps)
    assert isinstance(scaler, StandardScaler) and isinstance(lr, LogisticRegression)
    assert (lr.C, lr.max_iter, lr.random_state) == (0.1, 2000, 3)
    assert make_linear_head().steps[1][1].C == 1.0


def test_make_probe_is_a_deprecated_alias() -> None:
    from t2v_automl.evaluation import make_probe

    with pytest.warns(FutureWarning, match="make_linear_head"):
        head = make_probe(0.1, random_state=3)
    assert head.steps[1][1].C == 0.1 and head.steps[1][1].random_state == 3
