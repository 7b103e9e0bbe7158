from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from t2v_automl.estimators import (
    ExtractorSelector,
    HybridSelector,
    Task2VecEmbedder,
    TransferabilitySelector,
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
    assert near.select(new)[0] == near.selector_.select(
        near.embedder_.embed(new))[0]
    ex = near.explain(new)
    assert ex.gate[0] < 1e-6 and not ex.transfer_computed[0]
    assert (ex.transfer_seconds == 0).all()
    far = _hybrid(novelty_center=-1e6).fit(tasks, Y)  # always novel
    direct = far.transferability_.predict_scores(new)
    assert far.select(new)[0] == NAMES[int(np.argmax(direct[0]))]
    ex = far.explain(new)
    assert ex.gate[0] > 1 - 1e-6 and ex.novelty.shape == (1,)
    assert np.array_equal(ex.transfer_scores, direct) and (ex.transfer_seconds > 0).all()
    assert np.array_equal(far.predict(new), ex.scores)
    assert ex.embeddings[0] is not None and ex.embeddings[0].meta == far.embedding_meta_
    assert far.rank(new).shape == (1, 2)
    # scikit-learn conventions: clone keeps the parameters, a pickled fit predicts the same
    assert clone(far).get_params()["novelty_center"] == -1e6
    again = pickle.loads(pickle.dumps(far))
    assert np.array_equal(again.predict_scores(new), far.predict_scores(new))


def test_an_uninstalled_candidate_is_named_with_the_fix(known, caplog):
    tasks, Y = known
    Y = Y.assign(**{"expert-not-built": Y["raw_pixels"] - 0.01})
    with caplog.at_level("WARNING", logger="t2v_automl"):
        fitted = _hybrid().fit(tasks, Y)
    assert "['expert-not-built'] are not installed" in caplog.text
    assert "read_zoo(path)" in caplog.text and "build_experts(out_dir)" in caplog.text
    assert fitted.transferability_.get_params()["extractors"] == NAMES


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
    ex = hyb.explain([new[0], noise])
    # images unlike the known ones are farther in the domain embedding than new digits
    assert ex.domain_novelty[1] > ex.domain_novelty[0] >= 0
    assert not ex.screened.any() and np.isfinite(ex.novelty).all()
    assert all(d is not None for d in ex.domain_embeddings)
    unscreened = _hybrid(domain_screen=None).fit(tasks, Y)
    assert unscreened.screen_selector_ is None
    assert np.array_equal(unscreened.predict_scores(new), hyb.predict_scores(new))
    assert np.isnan(unscreened.explain(new).domain_novelty).all()

    # a screen that sends every task to the transferability score: no Fisher pass at all
    screened = _hybrid(domain_screen=0.0).fit(tasks, Y)

    def no_fisher(*args, **kwargs):
        raise AssertionError("the Fisher embedding of a screened task was computed")

    monkeypatch.setattr(screened.embedder_, "embed", no_fisher)
    ex = screened.explain(new)
    assert ex.screened.all() and np.isnan(ex.novelty).all() and ex.embeddings == [None]
    assert ex.gate[0] == 1.0
    direct = screened.transferability_.predict_scores(new)
    assert np.argmax(ex.scores[0]) == np.argmax(direct[0])
    # given domain embeddings only, the screen runs on them (no tasks needed for those)
    again = screened.explain(None, domain_embeddings=ex.domain_embeddings)
    assert again.screened.all() and not again.transfer_computed.any()
    # given embeddings, the screen does not run (the Fisher is already paid for)
    emb = hyb.embedder_.embed(new)
    monkeypatch.undo()
    ex = screened.explain(new, embeddings=emb)
    assert not ex.screened.any() and np.isnan(ex.domain_novelty).all()
    # given both, the screen runs on the domain embeddings and the rest uses the Fisher
    dom = screened.screen_embedder_.embed(new)
    both = screened.explain(new, embeddings=emb, domain_embeddings=dom)
    assert both.screened.all() and both.domain_embeddings[0] is dom[0]


def test_explain_writes_nothing_and_warns_without_images(known, digits):
    tasks, Y = known
    new = [make_digit_task(digits, (4, 9), n_per_class=15, seed=9)]
    far = _hybrid(novelty_center=-1e6, domain_screen=None).fit(tasks, Y)
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(far).items()}
    emb = far.embedder_.embed(new)
    with pytest.warns(UserWarning, match="only their embeddings"):
        ex = far.explain(None, embeddings=emb)
    assert not ex.transfer_computed.any() and ex.gate[0] == 0.0
    assert np.allclose(ex.scores, far.selector_.predict(emb))
    far.explain(new)
    assert vars(far).keys() == before.keys()
    with pytest.warns(FutureWarning, match="explain"):
        assert far.gate_.shape == (1,)  # deprecated: the last explanation
    with pytest.raises(InvalidInputTypeError, match="explain needs"):
        far.explain()
    with pytest.raises(InvalidInputTypeError, match="one entry per task"):
        far.explain(new, embeddings=emb + emb)


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
    ex = hyb.explain([stripes])
    scores = ex.scores
    assert ex.screened[0] and ex.domain_novelty[0] >= hyb.domain_screen
    assert np.isnan(ex.novelty[0]) and ex.gate[0] == 1.0
    transfer = ex.transfer_scores[0]
    assert np.isfinite(transfer).sum() >= 2
    assert np.argmax(scores[0]) == np.nanargmax(transfer)


def test_evidence_weight_and_blend():
    from t2v_automl.estimators import evidence_blend, evidence_weight, rank_standardise

    assert np.allclose(evidence_weight([0, 10, 30], half=10), [0.0, 0.5, 0.75])
    assert np.allclose(evidence_weight([5.0], half=0), [1.0])
    with pytest.raises(InvalidInputTypeError, match="half"):
        evidence_weight([5.0], half=-1)
    # ranks: ties averaged, NaN lowest, standardised
    r = rank_standardise(np.array([[3.0, 1.0, 1.0, np.nan]]))
    assert r[0, 0] == r.max() and r[0, 3] == r.min() and r[0, 1] == r[0, 2]
    assert abs(r.mean()) < 1e-12
    transfer = np.array([[1.0, 100.0, 2.0], [1.0, 100.0, 2.0]])
    prior = np.array([0.9, 0.5, 0.6])
    mixed, w = evidence_blend(transfer, prior, [1.0, 1000.0], half=20.0)
    assert np.argmax(mixed[0]) == 0  # one image per class: the best on average wins
    assert np.argmax(mixed[1]) == 1  # a thousand: the task's own score wins
    assert w[0] < 0.05 < 0.95 < w[1]
    # the outlier value 100 counts as one rank, not as a hundred standard units
    by_rank, _ = evidence_blend(transfer[:1], prior, [20.0], half=20.0)
    by_value, _ = evidence_blend(transfer[:1], prior, [20.0], half=20.0, ranks=False)
    assert by_rank[0, 1] < by_value[0, 1]
    # a row without transferability scores stays undefined
    none, _ = evidence_blend(np.full((1, 3), np.nan), prior, [5.0], half=5.0)
    assert np.isnan(none).all()
    with pytest.raises(InvalidInputTypeError, match="global_prior"):
        evidence_blend(transfer, prior[:2], [1.0, 1.0], half=5.0)


def test_hybrid_mixes_the_global_prior_into_novel_tasks(known, digits):
    tasks, Y = known
    new = [make_digit_task(digits, (4, 9), n_per_class=15, seed=9)]
    Yb = Y.copy()
    Yb["raw_pixels"], Yb["mnist_cnn"] = 0.9, 0.5  # raw_pixels best on every known task
    old = _hybrid(novelty_center=-1e6, evidence_half=None).fit(tasks, Yb)
    ex_old = old.explain(new)
    assert ex_old.evidence_weight is None
    # no evidence at all (a huge half): the global prior alone orders a novel task
    prior_only = _hybrid(novelty_center=-1e6, evidence_half=1e9).fit(tasks, Yb)
    ex = prior_only.explain(new)
    assert np.allclose(prior_only.global_prior_, [0.9, 0.5])
    assert np.array_equal(ex.global_prior, prior_only.global_prior_)
    assert ex.evidence_weight[0] < 1e-6 and prior_only.select(new)[0] == "raw_pixels"
    # evidence only (half 0): the transferability ranking, as before the blend
    evidence_only = _hybrid(novelty_center=-1e6, evidence_half=0.0).fit(tasks, Yb)
    assert evidence_only.select(new)[0] == old.select(new)[0]
    assert evidence_only.explain(new).evidence_weight[0] == pytest.approx(1.0)
    # 15 images per class: weight 15 / (15 + half)
    mid = _hybrid(novelty_center=-1e6, evidence_half=15.0).fit(tasks, Yb)
    assert mid.explain(new).evidence_weight[0] == pytest.approx(0.5)
    with pytest.raises(InvalidParameterError):
        _hybrid(evidence_half=-1.0).fit(tasks, Y)


def test_prescreen_scores_only_the_best_on_average(known, digits):
    tasks, Y = known
    new = [make_digit_task(digits, (4, 9), n_per_class=15, seed=9)]
    Yb = Y.copy()
    Yb["raw_pixels"], Yb["mnist_cnn"] = 0.6, 0.8
    hyb = _hybrid(novelty_center=-1e6, prescreen=1).fit(tasks, Yb)
    ex = hyb.explain(new)
    assert np.isfinite(ex.transfer_scores[0, 1]) and np.isnan(ex.transfer_scores[0, 0])
    assert ex.transfer_seconds[0, 0] == 0.0
    assert clone(hyb).get_params()["prescreen"] == 1
    with pytest.raises(InvalidParameterError):
        _hybrid(prescreen=0).fit(tasks, Y)
