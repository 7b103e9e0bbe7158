from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from t2v_automl.baselines import TransferabilitySelector
from t2v_automl.estimators import (
    ExtractorSelector,
    HybridSelector,
    Task2VecEmbedder,
    blend_with_transferability,
)
from t2v_automl.exceptions import InvalidInputTypeError, InvalidParameterError
from t2v_automl.tasks import Task
from tests.conftest import make_digit_task

NAMES = ["raw_pixels", "mnist_cnn"]


def test_novelty_is_relative_distance_to_nearest_known_task():
    rng = np.random.default_rng(0)
    E = rng.random((30, 8)) + 0.1
    Y = rng.uniform(0.5, 1.0, (30, 2))
    sel = ExtractorSelector().fit(E, Y)
    assert sel.typical_distance_ > 0
    assert np.allclose(sel.novelty(E), 0.0)  # every known task is its own nearest
    far = E[:2] * 0 + 50.0 * (np.arange(8) == 0)  # mass on one dimension
    assert (sel.novelty(far + 1e-3) > 3).all()
    # the asymmetric distance can be negative: novelty uses the symmetric one instead
    asym = ExtractorSelector(metric="asymmetric").fit(E, Y)
    assert (asym.novelty(E) >= 0).all()


def test_blend_gate_moves_from_prior_to_transfer():
    prior = np.array([[0.9, 0.5, 0.7]] * 3)
    transfer = np.array([[1.0, 3.0, 2.0]] * 3)
    mixed, gate = blend_with_transferability(prior, transfer, [0.0, 1.5, 10.0])
    assert gate[0] < 0.01 and gate[1] == pytest.approx(0.5) and gate[2] > 0.99
    assert np.argmax(mixed[0]) == 0 and np.argmax(mixed[2]) == 1
    # a row without transferability scores keeps the prior ranking whatever its novelty
    transfer[2] = np.nan
    mixed, gate = blend_with_transferability(prior, transfer, [0.0, 1.5, 10.0])
    assert gate[2] == 0 and np.argmax(mixed[2]) == 0
    # NaN inside a row counts as that row's lowest score
    mixed, _ = blend_with_transferability(prior[:1], [[np.nan, 3.0, 2.0]], [10.0])
    assert mixed[0, 0] == pytest.approx(mixed[0].min())
    with pytest.raises(InvalidInputTypeError, match="same shape"):
        blend_with_transferability(prior, transfer[:, :2], [0.0, 1.0, 2.0])


@pytest.fixture(scope="module")
def known(digits):
    classes = [(0, 1), (0, 7), (1, 7), (2, 3), (3, 8), (2, 8)]
    tasks = [make_digit_task(digits, c, n_per_class=15, seed=i) for i, c in enumerate(classes)]
    Y = pd.DataFrame(np.random.default_rng(0).uniform(0.5, 1.0, (len(tasks), 2)),
                     columns=NAMES)
    return tasks, Y


def _hybrid(**params):
    return HybridSelector(
        embedder=Task2VecEmbedder(probe="tiny_random", image_size=16, max_images=30,
                                  head_epochs=2),
        transferability=TransferabilitySelector(measure="knn_accuracy", max_images=30),
        **params)


def test_hybrid_follows_the_gate(known, digits):
    tasks, Y = known
    new = [make_digit_task(digits, (4, 9), n_per_class=15, seed=9)]
    near = _hybrid(novelty_center=1e6).fit(tasks, Y)  # never novel
    assert near.extractor_names_ == NAMES
    assert near.predict(new)[0] == near.selector_.predict(
        near.embedder_.embed(new))[0]
    assert near.gate_[0] < 1e-6 and not hasattr(near.transferability_, "times_")
    far = _hybrid(novelty_center=-1e6).fit(tasks, Y)  # always novel
    direct = far.transferability_.predict_scores(new)
    assert far.predict(new)[0] == NAMES[int(np.argmax(direct[0]))]
    assert far.gate_[0] > 1 - 1e-6 and far.novelty_.shape == (1,)
    assert far.rank(new).shape == (1, 2)
    # scikit-learn conventions: clone keeps the parameters, a pickled fit predicts the same
    assert clone(far).get_params()["novelty_center"] == -1e6
    again = pickle.loads(pickle.dumps(far))
    assert np.array_equal(again.predict_scores(new), far.predict_scores(new))


def test_hybrid_bad_input(known):
    tasks, Y = known
    with pytest.raises(InvalidInputTypeError, match="single task"):
        _hybrid().fit(tasks[0], Y)
    with pytest.raises(InvalidParameterError):
        _hybrid(novelty_steepness=-1.0).fit(tasks, Y)


def test_domain_screen_skips_the_fisher_for_unknown_images(known, digits, monkeypatch):
    tasks, Y = known
    new = [make_digit_task(digits, (4, 9), n_per_class=15, seed=9)]
    rng = np.random.default_rng(3)
    noise = Task.from_arrays(rng.uniform(0, 255, (30, 8, 8)).astype(np.uint8),
                             np.repeat([0, 1], 15), name="noise")
    hyb = _hybrid(domain_screen=1e9).fit(tasks, Y)  # screen on, never triggered
    assert hyb.screen_selector_ is not None and hyb.screen_embedder_.method == "domain"
    hyb.predict_scores([new[0], noise])
    # images unlike the known ones are farther in the domain embedding than new digits
    assert hyb.domain_novelty_[1] > hyb.domain_novelty_[0] >= 0
    assert not hyb.screened_.any() and np.isfinite(hyb.novelty_).all()
    unscreened = _hybrid(domain_screen=None).fit(tasks, Y)
    assert unscreened.screen_selector_ is None
    assert np.array_equal(unscreened.predict_scores(new), hyb.predict_scores(new))
    assert np.isnan(unscreened.domain_novelty_).all()

    # a screen that sends every task to the transferability score: no Fisher pass at all
    screened = _hybrid(domain_screen=0.0).fit(tasks, Y)

    def no_fisher(*args, **kwargs):
        raise AssertionError("the Fisher embedding of a screened task was computed")

    monkeypatch.setattr(screened.embedder_, "embed", no_fisher)
    scores = screened.predict_scores(new)
    assert screened.screened_.all() and np.isnan(screened.novelty_).all()
    assert screened.gate_[0] == 1.0
    direct = screened.transferability_.predict_scores(new)
    assert np.argmax(scores[0]) == np.argmax(direct[0])
    # given embeddings, the screen does not run (the Fisher is already paid for)
    emb = hyb.embedder_.embed(new)
    monkeypatch.undo()
    screened.predict_scores(new, embeddings=emb)
    assert not screened.screened_.any() and np.isnan(screened.domain_novelty_).all()


def test_domain_screen_bad_value(known):
    tasks, Y = known
    with pytest.raises(InvalidParameterError, match="domain_screen"):
        _hybrid(domain_screen=-1.0).fit(tasks, Y)


def _stripes(n: int = 40, seed: int = 0) -> Task:
    """Horizontal vs vertical noisy stripes: images unlike any task of the shipped base."""
    rng = np.random.default_rng(seed)
    x = np.arange(32, dtype=np.float64)
    images, labels = [], []
    for i in range(n):
        axis = i % 2
        wave = np.sin(rng.uniform(0.2, 0.8) * (x[:, None] if axis else x[None, :])
                      + rng.uniform(0, 6)) * np.ones((32, 32))
        g = ((wave + 1) * 127 + rng.normal(0, 20, (32, 32))).clip(0, 255)
        images.append(np.stack([g, 0.5 * g, 255 - g], axis=-1).astype(np.uint8))
        labels.append(axis)
    return Task.from_arrays(np.array(images), np.array(labels), name="stripes")


@pytest.mark.slow
def test_default_screens_images_unlike_the_knowledge_base():
    hyb = HybridSelector.default(device="cpu")
    assert hyb.screen_selector_ is not None  # the shipped base has its domain embeddings
    assert hyb.screen_embedder_.embedding_meta_.method == "domain"
    stripes = _stripes()
    scores = hyb.predict_scores([stripes])
    assert hyb.screened_[0] and hyb.domain_novelty_[0] >= hyb.domain_screen
    assert np.isnan(hyb.novelty_[0]) and hyb.gate_[0] == 1.0
    transfer = hyb.transfer_scores_[0]
    assert np.isfinite(transfer).sum() >= 2
    assert np.argmax(scores[0]) == np.nanargmax(transfer)
