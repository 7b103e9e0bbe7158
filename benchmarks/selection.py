"""How well does each method choose a feature extractor for a new task? (issue 5, item 3)

Every method sees the *known* tasks of the knowledge base (their embeddings and the scores
of every extractor on them) and ranks the extractors for each *held-out* task; the
ranking is compared with the held-out task's true scores. Three protocols:

``loto`` (leave one task out)
    Each task in turn is held out; all the others are known. The reference "best of the
    same source dataset" is :class:`~t2v_automl.estimators.BestOnAverage` fitted on the
    known tasks of the held-out task's source dataset only: on class-subset tasks the
    nearest known tasks mostly come from the same dataset, so a selector that merely
    recognises the dataset does as well as this reference.
``loso`` (leave one source dataset out)
    Each source dataset in turn: all its tasks (subsets and relabellings) are held out
    together; the tasks of the other datasets are known.
``lolo`` (leave one label function out; relabel tasks only)
    For each label-function *name* (e.g. ``"parity"``), every relabel task that uses a
    label function of that name is held out together, **in every image pool** (so
    ``mnist/relabel-a/parity``, ``mnist/relabel-b/parity``, ``digits/relabel-a/parity``
    and ``digits/relabel-b/parity`` go out at once); everything else stays known,
    including the *other* label functions of the same image pools (same images, other
    meaning of the labels) and every class-subset task. This is the choice that asks the
    question of the relabelled tasks — can the selector tell what the labels mean on
    images it has seen — without letting it look up the same labelling on a twin pool.
    The references "best of the same source dataset" and "best of the same image pool"
    (BestOnAverage on the known tasks of that dataset / pool) show what recognising the
    images alone gives.

The plain selectors go through scikit-learn: ``cross_val_predict`` with
``LeaveOneGroupOut`` (groups: the task for ``loto``, the source dataset for ``loso``) of
the selector wrapped so that its prediction is its :meth:`rank` (``_common.RankScores``);
``lolo`` is not a partition of the tasks (the subset tasks are always known), so it fits
and ranks fold by fold, the same computation.

Methods (hyper-parameters are **fixed in advance**: the library defaults, listed in the
results; nothing is tuned on the held-out tasks. One extra row, ``model2vec sym (inner
CV)``, chooses ``temperature`` of the model2vec selector among 0.003, 0.01 and 0.03 by an
inner leave-one-source-dataset-out cross-validation (lowest mean regret) on the known
tasks of each fold only; it is run in ``loso`` and ``lolo``, whose few folds make it
affordable):

- ``optimal`` (oracle: the true scores; its time is brute force, the sum of the
  evaluation times of all extractors) and ``chance`` (the expected value of a uniformly
  random extractor: exact for regret and top-3, a 200-permutation average for tau);
- ``ImageNet default``: :class:`~t2v_automl.estimators.FixedExtractor` with
  ``efficientnet_lite0`` (the class's default; the strongest single extractor of the
  design prototype, so the hardest fixed default to beat);
- ``best on average`` (:class:`~t2v_automl.estimators.BestOnAverage`) and ``meta-feature
  kNN`` (:class:`~t2v_automl.estimators.MetaFeatureKNN`, k=5, on the four meta-features
  of each task's training split);
- :class:`~t2v_automl.estimators.ExtractorSelector` on the main (Fisher) embedding:
  ``nearest`` (k=3, inverse-distance weights) with the symmetric, asymmetric and
  Hellinger distances (Hellinger: ``ExtractorSelector()``, the embedding-only default),
  ``model2vec`` (symmetric distance), and both strategies with ``normalized_cosine`` (the
  metric the cheap embeddings must use);
- the **default**, :class:`~t2v_automl.estimators.HybridSelector` itself: per fold
  ``HybridSelector.from_knowledge(kb.subset(known), transferability=
  TransferabilitySelector(memory=<the shared feature cache>), <the row's parameters>)``,
  then ``explain(tasks, embeddings=<the base's Fisher embeddings of the held-out tasks>,
  domain_embeddings=<their domain embeddings>)`` (the domain ones only when the screen is
  on). Defaults: ``ExtractorSelector()`` on the Fisher embedding blended with LogME by the
  task's novelty (gate centre 1.5, steepness 4, ``min_gate`` 0.1, domain screen 4.0);
  rows with centres 1.0 and 2.0, without the screen, with the screen at 2.5 and with
  ``min_gate`` 0.01 show the sensitivity. One row the estimator cannot express — the
  domain embedding in the place of the Fisher, from the features the LogME pass computes
  anyway — is composed of the public gate functions
  (:func:`~t2v_automl.estimators.novelty_gate`,
  :func:`~t2v_automl.estimators.blend_with_transferability`);
- the same selectors on the extra embedding sets: ``montecarlo_full`` (a Fisher as well:
  all four distances), ``domain`` and ``label_stat`` (``normalized_cosine``);
- transferability scores (LogME, LEEP, NCE, H-score, 5-NN accuracy) of each candidate's
  features of the held-out task's *training* images (what a user has), at the input size
  of the brute force (64 px for the resizable ImageNet networks), by the product's
  :class:`~t2v_automl.estimators.TransferabilitySelector` (its defaults: at most 500
  images, which every training split here is); LEEP and NCE use the extractor's own
  source head and rank extractors without one last.

Metrics per method: mean weighted Kendall tau (:func:`~t2v_automl.metrics.weighted_tau`,
tasks whose true scores are all tied are left out), top-1 regret in accuracy points with
a percentile-bootstrap 95 % CI over held-out tasks, top-3 hit rate (a true best extractor,
ties included, is among the first three predicted) and the time per new task:

- plain selectors: the embedding time (``kb.embed_time`` or the extra set's recorded
  time) + the CPU seconds of fitting the selector on the known tasks (counted in full for
  every new task, an upper bound) + ranking;
- the hybrid rows: the recorded embedding times (the domain embedding when the screen is
  on; the Fisher of the tasks not screened) + the CPU seconds of ``explain`` (less those
  of its transferability call, whose features come from the cache) + ``explain``'s
  ``transfer_seconds`` of the tasks it computed a score for. **Changed** from the runs
  before the hybrid rows called the estimator: fitting the hybrid on the known tasks
  (``from_knowledge``) is no longer counted (it is done once for any number of new
  tasks), and the transferability seconds are those ``task_features`` recorded, the wall
  seconds of the run that computed the features (they were CPU seconds of one thread);
- transferability rows: the same recorded feature seconds of every candidate + the score;
- brute force: the sum of ``kb.eval_time`` over the extractors (features of train and
  test images + probe fit, charged in full to each task of a relabel pool).

Usage::

    python benchmarks/selection.py --precompute-only   # fill the feature cache, stop
    python benchmarks/selection.py                     # all protocols and methods

The transferability pass builds the tasks again with ``iter_suite`` (same suite and seed
as the knowledge base), runs on one thread and reads or fills the benchmarks' one feature
cache, ``benchmarks/.cache/features`` (``t2v_automl.transferability.task_features`` on a
joblib ``Memory``, keyed by extractor weights, task fingerprint, output kind and input
size); the hybrid rows read the same cache through their ``TransferabilitySelector``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# the benchmarks are scripts, not a package: the shared helpers are imported from the
# script's own folder
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    FEATURE_CACHE,
    MEASURES,
    PROTOCOLS,
    BenchData,
    RankScores,
    bootstrap_ci,
    cv_rank_scores,
    feature_memory,
    folds,
    held_out,
    machine,
    md_table,
    ranking_metrics,
    task_inputs,
    task_transferability,
    top3_hit,
    transfer_inputs,
    write_results,
)

from t2v_automl.estimators import (  # noqa: E402
    NOVELTY_CENTER,
    NOVELTY_STEEPNESS,
    BestOnAverage,
    ExtractorSelector,
    FixedExtractor,
    HybridSelector,
    MetaFeatureKNN,
    TransferabilitySelector,
    blend_with_transferability,
    novelty_gate,
)
from t2v_automl.knowledge import KnowledgeBase  # noqa: E402
from t2v_automl.metrics import top1_regret, weighted_tau  # noqa: E402

__all__ = ["CACHE", "MEASURES", "PROTOCOLS", "BenchData", "Method", "chance_metrics",
           "folds", "hybrid_predictor", "main", "methods", "run_protocol", "top3_hit",
           "transfer_inputs"]

ROOT = Path(__file__).resolve().parents[1]
#: The feature cache the transferability pass reads and fills (``--cache-dir``).
CACHE = FEATURE_CACHE
PROTOCOL_TITLES = {
    "loto": "Leave one task out",
    "loso": "Leave one source dataset out",
    "lolo": "Leave one label function out (relabelled tasks)",
}
MEASURE_TITLES = {"logme": "LogME", "logme_pca": "LogME-PCA", "leep": "LEEP", "nce": "NCE",
                  "h_score": "H-score", "knn_accuracy": "kNN accuracy"}
#: The ImageNet default of the paper's Table 1 (see the module docstring); ``--imagenet``
#: names another (``mobilenet_v2``, the experts' own base, for expert selection).
IMAGENET_DEFAULT = "efficientnet_lite0"
#: The method the Goal of issue 5 is about: ``HybridSelector.default()`` (the Fisher
#: embedding, ``ExtractorSelector()`` = nearest/Hellinger, LogME where the task is novel).
DEFAULT_METHOD = "hybrid: Fisher nearest hellinger + LogME (default)"
#: ``ExtractorSelector()``: the embedding-only default.
SELECTOR_DEFAULT = "Fisher: nearest hellinger (ExtractorSelector default)"
#: Novelty centres of the sensitivity rows of the hybrid (the default is NOVELTY_CENTER).
HYBRID_CENTERS = (1.0, 2.0)
#: Sensitivity rows of the hybrid: another domain-screen threshold, the former min_gate.
HYBRID_SCREEN_ALT = 2.5
HYBRID_MIN_GATE_ALT = 0.01
#: Inner-CV grid of the default selector (``temperature``, ``reg``).
INNER_GRID = ((0.003, 0.1), (0.01, 0.1), (0.03, 0.1))


# ----------------------------------------------------------------------------- metrics
def imagenet_row(name: str = IMAGENET_DEFAULT) -> str:
    """The name of the ``ImageNet default`` row."""
    return f"ImageNet default ({name})"


def chance_metrics(y_true: np.ndarray, n_perm: int = 200, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected tau, regret and top-3 hit of a uniformly random ranking, per task.

    Parameters
    ----------
    y_true : ndarray of shape (n_tasks, n_extractors)
    n_perm : int, default=200
        Random permutations averaged for tau (regret and top-3 are exact).
    seed : int, default=0

    Returns
    -------
    tau, regret, top3 : ndarray of shape (n_tasks,)
    """
    rng = np.random.default_rng(seed)
    n, _ = y_true.shape
    tau, reg, hit = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        known = ~np.isnan(y_true[i])
        m = int(known.sum())
        if m == 0:
            continue
        y = y_true[i, known]
        reg[i] = 100.0 * (y.max() - y.mean())
        b = int((y == y.max()).sum())
        k = min(3, m)
        hit[i] = 1.0 - math.comb(m - b, k) / math.comb(m, k)
        if m >= 2 and np.ptp(y) > 0:
            perms = np.stack([rng.permutation(m) for _ in range(n_perm)]).astype(float)
            tau[i] = float(np.mean(weighted_tau(np.tile(y, (n_perm, 1)), perms)))
    return tau, reg, hit



# ----------------------------------------------------------------------------- methods
#: A method over one protocol: ``(data, protocol) -> (predicted scores, seconds per task)``,
#: rows = the held-out tasks in :func:`folds` order.
Predictor = Callable[[BenchData, str], tuple[np.ndarray, np.ndarray]]
#: A method on one fold: ``(data, known indices, test indices) -> (scores, seconds)``.
FoldPredictor = Callable[[BenchData, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Method:
    """One row of a results table.

    Attributes
    ----------
    name : str
    group : str
        ``"reference"``, ``"baseline"``, ``"task2vec"``, ``"cheap embedding"``,
        ``"transferability"`` or ``"hybrid"``.
    predict : Predictor or None
        None for ``chance`` (computed in closed form).
    params : str
        The fixed hyper-parameters (or how they were chosen).
    protocols : tuple of str
        Protocols the row is run in.
    """

    name: str
    group: str
    predict: Predictor | None
    params: str = ""
    protocols: tuple[str, ...] = PROTOCOLS


def by_fold(fn: FoldPredictor) -> Predictor:
    """A :data:`Predictor` that runs ``fn`` on every fold of the protocol."""
    def run(data: BenchData, protocol: str) -> tuple[np.ndarray, np.ndarray]:
        preds, times = [], []
        for _, test, known in folds(data, protocol):
            p, t = fn(data, np.flatnonzero(known), test)
            preds.append(p)
            times.append(np.broadcast_to(np.asarray(t, dtype=float), (len(test),)))
        return np.vstack(preds), np.concatenate(times).astype(float)
    return run


def selector_predictor(embedding: str, make: Callable[[], Any]) -> Predictor:
    """An embedding-based selector, cross-validated over the protocol's folds.

    Parameters
    ----------
    embedding : str
        Key of :attr:`BenchData.embeddings`.
    make : callable
        Returns a fresh, unfitted selector.
    """
    def run(data: BenchData, protocol: str) -> tuple[np.ndarray, np.ndarray]:
        pred, secs = cv_rank_scores(make(), data.embeddings[embedding], data, protocol)
        return pred, data.embed_time[embedding][held_out(data, protocol)] + secs
    return run


def table_predictor(make: Callable[[], Any], use_meta: bool = False) -> Predictor:
    """A selector that needs no embedding (or the meta-features), cross-validated."""
    def run(data: BenchData, protocol: str) -> tuple[np.ndarray, np.ndarray]:
        if use_meta:
            if data.meta_features is None or data.meta_time is None:
                raise RuntimeError("meta-features were not computed")
            X, extra = data.meta_features, data.meta_time[held_out(data, protocol)]
        else:
            X, extra = np.zeros((len(data), 1)), 0.0
        pred, secs = cv_rank_scores(make(), X, data, protocol)
        return pred, extra + secs
    return run


def group_best_predictor(attr: str) -> FoldPredictor:
    """BestOnAverage over the known tasks sharing ``attr`` (``"source"``/``"pool"``)."""
    def run(data: BenchData, known: np.ndarray, test: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        groups = getattr(data, attr)
        m = data.n_extractors
        pred = np.full((len(test), m), np.nan)
        times = np.zeros(len(test))
        for i, t in enumerate(test):
            same = known[groups[known] == groups[t]]
            if same.size == 0:
                continue
            est = RankScores(BestOnAverage(), data.extractor_names)
            out = est.fit(np.zeros((len(same), 1)), data.scores[same]).predict(
                np.zeros((1, 1)))[0]
            pred[i], times[i] = out[:m], out[m] + out[m + 1]
        return pred, times
    return run


def oracle_predictor(data: BenchData, known: np.ndarray, test: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The true scores; time = brute force over the zoo."""
    return data.scores[test], np.nansum(data.eval_time[test], axis=1)


def transfer_predictor(measure: str) -> FoldPredictor:
    """The transferability scores of the held-out tasks (from the transferability pass)."""
    def run(data: BenchData, known: np.ndarray, test: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        s, t = data.transfer[measure]
        return s[test], t[test]
    return run


class _TimedTransferability(TransferabilitySelector):
    """The product's :class:`TransferabilitySelector`, unchanged, that also adds up the CPU
    seconds of its ``predict_scores`` calls (``call_seconds_``): what ``explain`` spent in
    it (reading the cached features and scoring them), so that the hybrid's own seconds can
    be told from the transferability's (charged as recorded, ``transfer_seconds``)."""

    def predict_scores(self, X: Any, return_times: bool = False
                       ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        t0 = time.process_time()
        try:
            return super().predict_scores(X, return_times=return_times)
        finally:
            self.call_seconds_ = getattr(self, "call_seconds_", 0.0) \
                + time.process_time() - t0


def hybrid_predictor(metric: str = "hellinger", center: float = NOVELTY_CENTER,
                     steepness: float = NOVELTY_STEEPNESS, min_gate: float | None = None,
                     domain_screen: float | None = None, use_screen: bool = True,
                     **extra: Any) -> FoldPredictor:
    """:class:`~t2v_automl.estimators.HybridSelector` itself, fitted on the known tasks.

    Per fold: ``HybridSelector.from_knowledge(kb.subset(known), transferability=
    TransferabilitySelector(memory=<shared cache>), ...)`` with the row's parameters
    (``min_gate`` and ``domain_screen`` default to the estimator's; ``use_screen=False``:
    ``domain_screen=None``), then ``explain`` of the held-out tasks given their training
    splits, the base's Fisher embeddings of them and, when the screen is on, their domain
    embeddings.

    Time per task: the recorded embedding times (domain with the screen; Fisher unless
    screened) + the CPU seconds of ``explain`` less those of its transferability call,
    shared among the fold's tasks + ``explain.transfer_seconds`` (the recorded feature
    seconds + the score) of the tasks it computed LogME for.
    """
    params: dict[str, Any] = {"novelty_center": float(center),
                              "novelty_steepness": float(steepness)}
    if metric != "hellinger":
        params["selector"] = ExtractorSelector(metric=metric)
    if min_gate is not None:
        params["min_gate"] = float(min_gate)
    if not use_screen:
        params["domain_screen"] = None
    elif domain_screen is not None:
        params["domain_screen"] = float(domain_screen)
    params.update(extra)  # further HybridSelector parameters (evidence_half...)

    def run(data: BenchData, known: np.ndarray, test: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        if data.kb is None:
            raise RuntimeError("the hybrid rows need the knowledge base (BenchData.kb)")
        proto = data.transferability if data.transferability is not None \
            else _TimedTransferability(memory=feature_memory())
        hyb = HybridSelector.from_knowledge(data.kb.subset(known), device="cpu",
                                            transferability=proto, **params)
        screen_on = hyb.screen_selector_ is not None
        names = [data.task_names[i] for i in test]
        tasks = [data.tasks[n] for n in names] if data.tasks else None
        t0 = time.process_time()
        ex = hyb.explain(tasks, embeddings=data.embedding_objects("fisher", test),
                         domain_embeddings=data.embedding_objects("domain", test)
                         if screen_on else None)
        own = time.process_time() - t0 - getattr(hyb.transferability_, "call_seconds_", 0.0)
        scores = np.full((len(test), data.n_extractors), np.nan)  # unfitted columns: NaN
        for j, name in enumerate(data.extractor_names):
            if name in ex.extractor_names:
                scores[:, j] = ex.scores[:, ex.extractor_names.index(name)]
        t = own / len(test) + ex.transfer_seconds.sum(axis=1) \
            + np.where(ex.screened, 0.0, data.embed_time["fisher"][test])
        if screen_on:
            t = t + data.embed_time["domain"][test]
        return scores, t
    return run


def domain_hybrid_predictor(measure: str = "logme", center: float = NOVELTY_CENTER,
                            steepness: float = NOVELTY_STEEPNESS,
                            min_gate: float | None = None) -> FoldPredictor:
    """The hybrid's gate on the domain embedding, which the estimator cannot express.

    The domain embedding (the mean of ``mobilenet_v2`` features) replaces the Fisher; it
    comes from the features the transferability pass computes anyway. Composed of the
    public pieces: ``ExtractorSelector(metric="normalized_cosine")`` fitted on the known
    tasks' domain embeddings, its :meth:`novelty`, :func:`novelty_gate` (LogME only where
    the gate reaches ``min_gate``, the estimator's default) and
    :func:`blend_with_transferability`; no screen. Time: the fit and prediction in full,
    plus the transferability seconds where it runs, the recorded domain-embedding seconds
    where it does not.
    """
    gate_min = float(HybridSelector().get_params()["min_gate"] if min_gate is None
                     else min_gate)

    def run(data: BenchData, known: np.ndarray, test: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        E = data.embeddings["domain"]
        names = data.extractor_names
        Yk = data.scores[known]
        cols = np.flatnonzero(~np.isnan(Yk).all(axis=0))
        prior = np.full((len(test), len(names)), np.nan)
        t0 = time.process_time()
        sel = ExtractorSelector(metric="normalized_cosine",
                                extractor_names=[names[j] for j in cols]).fit(E[known],
                                                                               Yk[:, cols])
        fit_s = time.process_time() - t0
        t0 = time.process_time()
        prior[:, cols] = sel.predict_scores(E[test])
        novelty = sel.novelty(E[test])
        pred_s = time.process_time() - t0
        scores, t_s = data.transfer[measure]
        runs = novelty_gate(novelty, center=center, steepness=steepness) >= gate_min
        transfer = np.where(runs[:, None], scores[test], np.nan)
        mixed, _ = blend_with_transferability(prior, transfer, novelty, center=center,
                                              steepness=steepness)
        return mixed, fit_s + pred_s + np.where(runs, t_s[test],
                                                data.embed_time["domain"][test])
    return run


def _inner_cv_selector(data: BenchData, known: np.ndarray) -> tuple[float, float]:
    """(temperature, reg) of the model2vec selector with the lowest inner LOSO regret."""
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict

    E, Y = data.embeddings["fisher"][known], data.scores[known]
    m = data.n_extractors
    best, best_key = INNER_GRID[0], (np.inf, np.inf)
    for temp, reg in INNER_GRID:
        sel = RankScores(ExtractorSelector(strategy="model2vec", metric="symmetric",
                                           temperature=temp, reg=reg), data.extractor_names)
        pred = cross_val_predict(sel, E, Y, groups=data.source[known],
                                 cv=LeaveOneGroupOut())[:, :m]
        loss = float(np.nanmean(top1_regret(Y, pred)))
        key = (loss, abs(math.log(temp / 0.01)) + abs(math.log(reg / 0.1)))
        if key < best_key:  # ties: the one nearest the library default
            best, best_key = (temp, reg), key
    return best


def inner_cv_predictor(data: BenchData, known: np.ndarray, test: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The model2vec selector with (temperature, reg) chosen by inner CV on known tasks."""
    t0 = time.process_time()
    temp, reg = _inner_cv_selector(data, known)
    cv_s = time.process_time() - t0
    E, m = data.embeddings["fisher"], data.n_extractors
    out = RankScores(ExtractorSelector(strategy="model2vec", metric="symmetric",
                                       temperature=temp, reg=reg), data.extractor_names
                     ).fit(E[known], data.scores[known]).predict(E[test])
    return out[:, :m], data.embed_time["fisher"][test] + out[:, m] + out[:, m + 1] + cv_s


def methods(data: BenchData, inner_cv: bool = True,
            imagenet: str = IMAGENET_DEFAULT) -> list[Method]:
    """Every method that the data allows, in table order.

    Parameters
    ----------
    data : BenchData
    inner_cv : bool, default=True
        Include the inner-CV variant of the model2vec selector.
    imagenet : str, default=IMAGENET_DEFAULT
        The extractor of the ``ImageNet default`` row.

    Returns
    -------
    list of Method
    """
    out = [
        Method("optimal (brute force)", "reference", by_fold(oracle_predictor), "true scores"),
        Method("chance", "reference", None, "uniformly random extractor"),
        Method("best of same source dataset", "reference",
               by_fold(group_best_predictor("source")),
               "BestOnAverage on known tasks of the held-out task's dataset",
               ("loto", "lolo")),
        Method("best of same image pool", "reference", by_fold(group_best_predictor("pool")),
               "BestOnAverage on known tasks of the same images", ("lolo",)),
        Method(imagenet_row(imagenet), "baseline",
               table_predictor(lambda: FixedExtractor(name=imagenet)), "fixed"),
        Method("best on average", "baseline", table_predictor(BestOnAverage),
               "mean known score"),
    ]
    if data.meta_features is not None:
        out.append(Method("meta-feature kNN", "baseline",
                          table_predictor(lambda: MetaFeatureKNN(n_neighbors=5), True),
                          "k=5, uniform"))

    def sel(label: str, group: str, emb: str, strategy: str, metric: str) -> Method:
        params = ("k=3, inverse distance" if strategy == "nearest"
                  else "T=0.01, reg=0.1") + f", {metric}"
        return Method(label, group, selector_predictor(emb, lambda: ExtractorSelector(
            strategy=strategy, metric=metric)), params)

    fisher_sets = [("fisher", "Fisher")]
    if "montecarlo_full" in data.embeddings:
        fisher_sets.append(("montecarlo_full", "MC-full Fisher"))
    for emb, title in fisher_sets:
        out += [
            sel(f"{title}: nearest sym", "task2vec", emb, "nearest", "symmetric"),
            sel(f"{title}: nearest asym", "task2vec", emb, "nearest", "asymmetric"),
            sel(SELECTOR_DEFAULT if emb == "fisher" else f"{title}: nearest hellinger",
                "task2vec", emb, "nearest", "hellinger"),
            sel(f"{title}: model2vec sym", "task2vec", emb, "model2vec", "symmetric"),
        ]
        if emb == "fisher":
            out += [sel(f"{title}: nearest ncos", "task2vec", emb, "nearest",
                        "normalized_cosine"),
                    sel(f"{title}: model2vec ncos", "task2vec", emb, "model2vec",
                        "normalized_cosine")]
            if inner_cv:
                out.append(Method(
                    "Fisher: model2vec sym (inner CV)", "task2vec", by_fold(inner_cv_predictor),
                    "T in {0.003, 0.01, 0.03} by inner LOSO on the known tasks, reg=0.1",
                    ("loso", "lolo")))
    for emb, title in (("domain", "domain"), ("label_stat", "label-stat")):
        if emb in data.embeddings:
            out += [sel(f"{title}: nearest ncos", "cheap embedding", emb, "nearest",
                        "normalized_cosine"),
                    sel(f"{title}: model2vec ncos", "cheap embedding", emb, "model2vec",
                        "normalized_cosine")]
    for m in MEASURES:
        if m in data.transfer:
            out.append(Method(MEASURE_TITLES[m], "transferability",
                              by_fold(transfer_predictor(m)),
                              "train images, 64 px" + (", k=5" if m == "knn_accuracy" else "")))
    if "logme" in data.transfer or data.tasks:
        hd = HybridSelector().get_params()
        out.append(Method(DEFAULT_METHOD, "hybrid", by_fold(hybrid_predictor()),
                          f"k=3, hellinger; gate center {NOVELTY_CENTER}, steepness "
                          f"{NOVELTY_STEEPNESS}, min_gate {hd['min_gate']}, domain screen "
                          f"{hd['domain_screen']}, evidence_half {hd['evidence_half']}, "
                          f"prescreen {hd['prescreen']}"))
        out.append(Method("hybrid, no evidence blend (previous default)", "hybrid",
                          by_fold(hybrid_predictor(evidence_half=None, prescreen=None)),
                          "evidence_half=None, prescreen=None given explicitly: the "
                          "default since issue 16's small-task benchmark left the blend "
                          "off (the same ranking as the default row)"))
        out += [Method(f"hybrid, gate center {c}", "hybrid", by_fold(hybrid_predictor(center=c)),
                       f"as the default, center {c} (sensitivity)") for c in HYBRID_CENTERS]
        out += [Method("hybrid, no domain screen", "hybrid",
                       by_fold(hybrid_predictor(use_screen=False)),
                       "as the default, every task Fisher-embedded (sensitivity)"),
                Method(f"hybrid, domain screen {HYBRID_SCREEN_ALT}", "hybrid",
                       by_fold(hybrid_predictor(domain_screen=HYBRID_SCREEN_ALT)),
                       f"as the default, screen at {HYBRID_SCREEN_ALT} (sensitivity)"),
                Method(f"hybrid, min_gate {HYBRID_MIN_GATE_ALT}", "hybrid",
                       by_fold(hybrid_predictor(min_gate=HYBRID_MIN_GATE_ALT)),
                       f"as the default, LogME down to gate {HYBRID_MIN_GATE_ALT} "
                       "(sensitivity)")]
        if "domain" in data.embeddings:
            out.append(Method("hybrid on domain embedding: ncos + LogME", "hybrid",
                              by_fold(domain_hybrid_predictor()),
                              "k=3, normalized_cosine; same gate"))
    return out


# ----------------------------------------------------------------------------- evaluation
def _method_result(data: BenchData, protocol: str, meth: Method, n_boot: int
                   ) -> dict[str, Any]:
    """One method over the folds of one protocol (see :func:`run_protocol`)."""
    Y = data.scores[held_out(data, protocol)]
    if meth.predict is None:
        tau, reg, hit = chance_metrics(Y)
        r = ranking_metrics(Y, None, np.zeros(len(Y)), n_boot, tau=tau, regret=reg, top3=hit)
    else:
        pred, times = meth.predict(data, protocol)
        r = ranking_metrics(Y, pred, times, n_boot)
    return {"group": meth.group, "params": meth.params, **r}


def run_protocol(data: BenchData, protocol: str, method_list: Sequence[Method],
                 n_boot: int = 2000, log: Callable[[str], None] | None = None,
                 n_jobs: int = 1) -> dict[str, Any]:
    """Every method over the folds of one protocol.

    Parameters
    ----------
    data : BenchData
    protocol : {"loto", "loso", "lolo"}
    method_list : sequence of Method
    n_boot : int, default=2000
        Bootstrap resamples for the regret CI.
    log : callable, optional
        Progress messages.
    n_jobs : int, default=1
        Methods run in parallel (joblib); each uses one thread.

    Returns
    -------
    dict
        ``n_tasks``, ``folds`` (labels), ``task_names`` (held-out tasks in result order)
        and ``methods``: name -> ``{group, params, tau, regret, regret_ci, top3, time_s,
        n_tasks, n_tau, per_task: {tau, regret, top3, time_s}}``.
    """
    fl = folds(data, protocol)
    test_all = np.concatenate([t for _, t, _ in fl])
    res: dict[str, Any] = {"n_tasks": int(test_all.size), "folds": [f for f, _, _ in fl],
                           "task_names": [data.task_names[i] for i in test_all],
                           "methods": {}}
    todo = [m for m in method_list if protocol in m.protocols]
    t0 = time.perf_counter()
    if n_jobs == 1:
        out = [_method_result(data, protocol, m, n_boot) for m in todo]
    else:
        from joblib import Parallel, delayed

        out = Parallel(n_jobs=n_jobs)(delayed(_one_thread_result)(data, protocol, m, n_boot)
                                      for m in todo)
    for meth, r in zip(todo, out, strict=True):
        res["methods"][meth.name] = r
        if log:
            log(f"{protocol} {meth.name}: tau {r['tau']:.3f} regret {r['regret']:.2f} "
                f"top3 {r['top3']:.2f}")
    if log:
        log(f"{protocol}: {len(todo)} methods in {time.perf_counter() - t0:.0f}s")
    return res


def _one_thread_result(data: BenchData, protocol: str, meth: Method, n_boot: int
                       ) -> dict[str, Any]:
    """:func:`_method_result` in a worker limited to one BLAS / torch thread."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    with threadpool_limits(1):
        return _method_result(data, protocol, meth, n_boot)


def paired(res: dict[str, Any], a: str, b: str, n_boot: int = 2000) -> dict[str, Any]:
    """Mean per-task difference ``a - b`` of regret and tau, with bootstrap 95 % CIs."""
    pa, pb = res["methods"][a]["per_task"], res["methods"][b]["per_task"]
    d_reg = pa["regret"] - pb["regret"]
    d_tau = pa["tau"] - pb["tau"]
    return {"regret_diff": float(np.nanmean(d_reg)),
            "regret_diff_ci": bootstrap_ci(d_reg, n_boot=n_boot),
            "tau_diff": float(np.nanmean(d_tau)) if np.isfinite(d_tau).any() else float("nan"),
            "tau_diff_ci": bootstrap_ci(d_tau, n_boot=n_boot)}


# ----------------------------------------------------------------------------- transferability
def prefill(suite: str, seed: int, input_size: int, memory: Any = None, limit: int = 0,
            log: Callable[[str], None] = print, names: Sequence[str] | None = None) -> None:
    """Fill the feature cache for the tasks of a suite (no knowledge base needed).

    The relabel tasks come first, then the subset tasks round-robin over the source
    datasets, so that a run stopped early covers every dataset. Every measure of
    :data:`MEASURES` is computed by the product's ``TransferabilitySelector`` on the shared
    cache (:func:`_common.task_transferability`): the features and source logits of every
    candidate are stored there.

    Parameters
    ----------
    suite, seed : str, int
    input_size : int
    memory : joblib.Memory, optional
        Default: the shared feature cache.
    limit : int, default=0
        Only the first ``limit`` tasks of that order (0 = all).
    log : callable
    names : sequence of str, optional
        Only these tasks (default: all of the suite's).
    """
    from itertools import zip_longest

    from t2v_automl.extractors import list_extractors
    from t2v_automl.suites import make_suite

    mem = feature_memory() if memory is None else memory
    ext = list_extractors(available_only=True)
    tasks = [st for st in make_suite(suite, seed) if names is None or st.name in set(names)]
    by_source: dict[str, list[Any]] = {}
    for st in tasks:
        if st.kind != "relabel":
            by_source.setdefault(str(st.provenance.get("source_dataset")), []).append(st)
    order = [st for st in tasks if st.kind == "relabel"]
    order += [st for group in zip_longest(*by_source.values()) for st in group if st]
    t_start = time.perf_counter()
    for n, st in enumerate(order[: limit or None], 1):
        task_transferability(st.train, ext, input_size, mem)
        log(f"prefill {n}/{len(order)} {st.name}: {time.perf_counter() - t_start:.0f}s")
    log("prefill done")


# ----------------------------------------------------------------------------- report
def _fmt_time(s: float) -> str:
    if not np.isfinite(s):
        return "n/a"
    if s < 0.01:
        return f"{s * 1000:.2g} ms"
    return f"{s:.3g} s"


def protocol_table(res: dict[str, Any]) -> str:
    """Markdown table of one protocol (rows = methods)."""
    rows = []
    for name, r in res["methods"].items():
        lo, hi = r["regret_ci"]
        rel = r.get("rel_error_increase", float("nan"))
        rlo, rhi = r.get("rel_error_increase_ci", (float("nan"), float("nan")))
        rows.append([name, r["group"], r["n_tasks"], f"{r['tau']:.3f}",
                     f"{r['regret']:.2f} [{lo:.2f}, {hi:.2f}]",
                     "n/a" if rel is None or not np.isfinite(rel)
                     else f"{rel:+.1%} [{rlo:+.1%}, {rhi:+.1%}]", f"{r['top3']:.2f}",
                     _fmt_time(r["time_s"]), r["params"]])
    return md_table(["method", "group", "tasks", "weighted tau", "regret, points [95% CI]",
                     "error increase over optimal [95% CI]", "top-3 hit", "time / new task",
                     "hyper-parameters"], rows)


#: The paper's Table 1 columns and the rows that fill them here.
TABLE1 = (("optimal", "optimal (brute force)"), ("chance", "chance"),
          ("ImageNet", f"ImageNet default ({IMAGENET_DEFAULT})"),
          ("sym", "Fisher: nearest sym"), ("asym", "Fisher: nearest asym"),
          ("Model2Vec", "Fisher: model2vec sym"), ("hybrid (default)", DEFAULT_METHOD))


#: Further columns of the Table 1 layout: the baselines the issues compare against.
TABLE1_EXTRA = (("best on average", "best on average"),
                ("Hellinger (default selector)", SELECTOR_DEFAULT),
                ("domain nearest", "domain: nearest ncos"),
                ("label-stat nearest", "label-stat: nearest ncos"), ("LogME", "LogME"),
                ("LogME-PCA", "LogME-PCA"))


def table1(results: dict[str, Any], imagenet: str = IMAGENET_DEFAULT,
           extra: Sequence[tuple[str, str]] = ()) -> str:
    """The paper's Table 1 layout: protocols x (optimal, chance, ImageNet, sym, asym,
    Model2Vec, ...), each cell ``regret / tau / relative error increase``."""
    cols = [(c, imagenet_row(imagenet) if c == "ImageNet" else n) for c, n in TABLE1]
    cols += [c for c in extra if c[1] not in {n for _, n in cols}]
    rows = []
    for p, res in results.items():
        cells = []
        for _, name in cols:
            r = res["methods"].get(name)
            rel = None if r is None else r.get("rel_error_increase")
            cells.append("n/a" if r is None else f"{r['regret']:.2f} / {r['tau']:.2f}"
                         + ("" if rel is None or not np.isfinite(rel) else f" / {rel:+.0%}"))
        rows.append([PROTOCOL_TITLES[p]] + cells)
    return md_table(["protocol"] + [c for c, _ in cols], rows)


def goal_check(res: dict[str, Any], n_boot: int = 2000) -> dict[str, Any]:
    """The default selector against every baseline of one protocol.

    Returns
    -------
    dict
        ``beaten_by_regret`` / ``beaten_by_tau``: non-reference methods with a lower mean
        regret / higher mean tau than the default; ``paired``: method -> :func:`paired`;
        ``cost_ratio``: mean brute-force time / mean default-selector time.
    """
    ms = res["methods"]
    if DEFAULT_METHOD not in ms:
        return {}
    d = ms[DEFAULT_METHOD]
    others = [k for k, v in ms.items() if k != DEFAULT_METHOD and v["group"] != "reference"]
    out: dict[str, Any] = {
        "beaten_by_regret": [k for k in others if ms[k]["regret"] < d["regret"]],
        "beaten_by_tau": [k for k in others if ms[k]["tau"] > d["tau"]],
        "paired": {k: paired(res, DEFAULT_METHOD, k, n_boot) for k in others},
    }
    if "optimal (brute force)" in ms:
        bf = ms["optimal (brute force)"]["per_task"]["time_s"]
        dt = d["per_task"]["time_s"]
        out["cost_ratio"] = float(np.nanmean(bf) / np.nanmean(dt))
        out["cost_ratio_median_per_task"] = float(np.nanmedian(bf / dt))
    return out


#: The reference of :func:`versus_domain`: the label-blind domain embedding.
DOMAIN_REFERENCE = "domain: nearest ncos"


def versus_domain(data: BenchData, res: dict[str, Any], kind: str = "relabel",
                  n_boot: int = 2000) -> dict[str, Any]:
    """Each Task2Vec (and label-aware) selector against the domain embedding, paired, on
    the held-out tasks of one kind (relabelled images: where only the labels differ).

    Returns
    -------
    dict
        method -> ``{n_tasks, regret, domain_regret, regret_diff, regret_diff_ci,
        rel_error_increase, rel_error_increase_ci}`` (diff = method minus domain: negative =
        the method chose better); empty when the reference is missing.
    """
    from _common import relative_error_increase

    ms = res["methods"]
    if DOMAIN_REFERENCE not in ms:
        return {}
    idx = [data.task_names.index(t) for t in res["task_names"]]
    keep = np.asarray(data.kind[idx] == kind)
    Y = data.scores[idx][keep]
    with np.errstate(all="ignore"):
        err_opt = 100.0 * (1.0 - np.nanmax(Y, axis=1))
    ref = ms[DOMAIN_REFERENCE]["per_task"]["regret"][keep]
    out: dict[str, Any] = {}
    for name, r in ms.items():
        if r["group"] not in ("task2vec", "cheap embedding", "hybrid", "transferability",
                              "baseline") or name == DOMAIN_REFERENCE:
            continue
        reg = r["per_task"]["regret"][keep]
        ok = np.isfinite(reg) & np.isfinite(ref)
        rel, rel_ci = relative_error_increase(reg[ok], err_opt[ok], n_boot)
        out[name] = {"n_tasks": int(ok.sum()), "regret": float(np.mean(reg[ok])),
                     "domain_regret": float(np.mean(ref[ok])),
                     "regret_diff": float(np.mean(reg[ok] - ref[ok])),
                     "regret_diff_ci": bootstrap_ci(reg[ok] - ref[ok], n_boot=n_boot),
                     "rel_error_increase": rel, "rel_error_increase_ci": rel_ci}
    ref_rel = relative_error_increase(ref[np.isfinite(ref)], err_opt[np.isfinite(ref)], n_boot)
    out[DOMAIN_REFERENCE] = {"n_tasks": int(np.isfinite(ref).sum()),
                             "regret": float(np.nanmean(ref)),
                             "rel_error_increase": ref_rel[0],
                             "rel_error_increase_ci": ref_rel[1]}
    return out


def versus_run(results: dict[str, Any], other: Path, n_boot: int = 2000) -> dict[str, Any]:
    """This run against another results file, paired on the held-out tasks both hold.

    For knowledge bases that grow (v2 holds v1's tasks and more): does knowing more tasks
    help on the tasks both runs held out? Same protocol, same method name, same task name.

    Returns
    -------
    dict
        ``{"file", "protocols": {protocol: {method: {n_tasks, regret, other_regret,
        regret_diff, regret_diff_ci}}}}`` (diff = this run minus the other: negative = this
        run chose better); protocols or methods absent from either side are left out.
    """
    import json

    saved = _from_json(json.loads(Path(other).read_text())["protocols"])
    out: dict[str, Any] = {"file": str(other), "protocols": {}}
    for p, res in results.items():
        if p not in saved:
            continue
        pos = {t: i for i, t in enumerate(saved[p]["task_names"])}
        common = [(i, pos[t]) for i, t in enumerate(res["task_names"]) if t in pos]
        if not common:
            continue
        mine, theirs = (np.array(c) for c in zip(*common, strict=True))
        rows: dict[str, Any] = {}
        for name, r in res["methods"].items():
            o = saved[p]["methods"].get(name)
            if o is None or r["group"] == "reference":
                continue
            a = np.asarray(r["per_task"]["regret"], dtype=float)[mine]
            b = np.asarray(o["per_task"]["regret"], dtype=float)[theirs]
            ok = np.isfinite(a) & np.isfinite(b)
            if ok.any():
                rows[name] = {"n_tasks": int(ok.sum()), "regret": float(a[ok].mean()),
                              "other_regret": float(b[ok].mean()),
                              "regret_diff": float((a[ok] - b[ok]).mean()),
                              "regret_diff_ci": bootstrap_ci(a[ok] - b[ok], n_boot=n_boot)}
        out["protocols"][p] = rows
    return out


def versus_run_table(rows: dict[str, Any]) -> str:
    """Markdown table of one protocol of :func:`versus_run`."""
    return md_table(["method", "common tasks", "this run", "other run",
                     "this minus other [95% CI]"],
                    [[k, v["n_tasks"], f"{v['regret']:.2f}", f"{v['other_regret']:.2f}",
                      f"{v['regret_diff']:+.2f} [{v['regret_diff_ci'][0]:+.2f}, "
                      f"{v['regret_diff_ci'][1]:+.2f}]"] for k, v in rows.items()])


def versus_domain_table(vs: dict[str, Any]) -> str:
    """Markdown table of :func:`versus_domain`."""
    rows = []
    for name, v in vs.items():
        lo, hi = v.get("regret_diff_ci", (float("nan"), float("nan")))
        rlo, rhi = v["rel_error_increase_ci"]
        rows.append([name, v["n_tasks"], f"{v['regret']:.2f}",
                     "reference" if name == DOMAIN_REFERENCE
                     else f"{v['regret_diff']:+.2f} [{lo:+.2f}, {hi:+.2f}]",
                     f"{v['rel_error_increase']:+.1%} [{rlo:+.1%}, {rhi:+.1%}]"])
    return md_table(["method", "relabel tasks", "regret", "minus domain embedding [95% CI]",
                     "error increase over optimal [95% CI]"], rows)


def by_source(data: BenchData, res: dict[str, Any], names: Sequence[str]) -> str:
    """Mean regret per held-out source dataset (LOSO) for a few methods."""
    idx = [data.task_names.index(t) for t in res["task_names"]]
    src = data.source[idx]
    rows = []
    for s in sorted(set(src)):
        sel = src == s
        rows.append([s, int(sel.sum())] + [
            f"{np.nanmean(res['methods'][n]['per_task']['regret'][sel]):.2f}"
            for n in names if n in res["methods"]])
    return md_table(["held-out dataset", "tasks"] + [n for n in names if n in res["methods"]],
                    rows)


def summary_text(results: dict[str, Any], goals: dict[str, Any]) -> str:
    """Plain statements read off the numbers (which method wins where)."""
    lines = []
    for p, res in results.items():
        ms = {k: v for k, v in res["methods"].items() if v["group"] != "reference"}
        if not ms:
            continue
        best_r = min(ms, key=lambda k: ms[k]["regret"])
        best_t = max(ms, key=lambda k: ms[k]["tau"] if np.isfinite(ms[k]["tau"]) else -9)
        line = (f"- **{PROTOCOL_TITLES[p]}** ({res['n_tasks']} tasks): lowest regret "
                f"*{best_r}* ({ms[best_r]['regret']:.2f}), highest tau *{best_t}* "
                f"({ms[best_t]['tau']:.3f}).")
        g = goals.get(p, {})
        if g:
            d = res["methods"][DEFAULT_METHOD]
            line += (f" Default selector: regret {d['regret']:.2f}, tau {d['tau']:.3f}; "
                     f"other methods with lower regret: "
                     f"{', '.join(g['beaten_by_regret']) or 'none'}; with higher tau: "
                     f"{', '.join(g['beaten_by_tau']) or 'none'}.")
            for other in ("domain: model2vec ncos", "domain: nearest ncos", "best on average"):
                if other in g["paired"]:
                    q = g["paired"][other]
                    line += (f" Default minus *{other}*: regret {q['regret_diff']:+.2f} "
                             f"[{q['regret_diff_ci'][0]:+.2f}, {q['regret_diff_ci'][1]:+.2f}],"
                             f" tau {q['tau_diff']:+.3f} [{q['tau_diff_ci'][0]:+.3f}, "
                             f"{q['tau_diff_ci'][1]:+.3f}].")
            if "cost_ratio" in g:
                line += (f" Brute force costs {g['cost_ratio']:.0f}x the default selector "
                         f"(mean time; median per-task ratio "
                         f"{g['cost_ratio_median_per_task']:.0f}x).")
        lines.append(line)
    return "\n".join(lines)


def markdown(results: dict[str, Any], goals: dict[str, Any], data: BenchData,
             info: dict[str, Any], discussion: str = "") -> str:
    """The whole results page."""
    imagenet = info.get("imagenet_default", IMAGENET_DEFAULT)
    out = ["# Extractor selection: protocols, methods, results", "",
           f"Command: `{info['command']}`  ", f"Knowledge base: {info['kb']}  ",
           f"Machine: {info['machine_text']}  ",
           f"Run time: {info['wall_s']:.0f} s. Regret = accuracy points lost by the top "
           "pick vs the per-task best; CI = percentile bootstrap over held-out tasks (2000 "
           "resamples). Top-3 = a true best (ties included) among the first three. Time per "
           "new task: embedding + selector fit + prediction; transferability: features (and "
           "source logits) of all candidates + score; optimal: brute force (sum of the "
           "evaluation times over the zoo). Hyper-parameters are fixed in advance (library "
           "defaults) except the row marked inner CV. See the docstring of "
           "`benchmarks/selection.py` for the exact protocols.", ""]
    if discussion:
        out += ["## Reading", "", discussion.strip(), ""]
    out += ["## Summary (generated from the numbers)", "", summary_text(results, goals), "",
            "## The paper's Table 1 columns (regret in points / weighted tau)", "",
            "Each cell: regret / weighted tau / relative error increase over the optimal "
            "extractor (sum of regrets / sum of the optimal errors over the held-out tasks: "
            "the measure of the paper's Table 1). "
            "sym / asym = nearest known tasks (k=3) by the symmetric / asymmetric Task2Vec "
            "distance; Model2Vec = the paper's learned metric (`strategy=\"model2vec\"`); "
            "hybrid = the default `HybridSelector` (nearest known tasks by the Hellinger "
            "distance, LogME as the task's novelty grows).", "",
            table1(results, imagenet, TABLE1_EXTRA), ""]
    for p, res in results.items():
        out += [f"## {PROTOCOL_TITLES[p]} ({res['n_tasks']} held-out tasks, "
                f"{len(res['folds'])} folds)", "", protocol_table(res), ""]
        g = goals.get(p)
        if g:
            rows = [[k, f"{v['regret_diff']:+.2f} [{v['regret_diff_ci'][0]:+.2f}, "
                        f"{v['regret_diff_ci'][1]:+.2f}]",
                     f"{v['tau_diff']:+.3f} [{v['tau_diff_ci'][0]:+.3f}, "
                     f"{v['tau_diff_ci'][1]:+.3f}]"] for k, v in g["paired"].items()]
            out += [f"Paired differences, *{DEFAULT_METHOD}* minus each method (regret: "
                    "negative = default better; tau: positive = default better):", "",
                    md_table(["method", "regret diff [95% CI]", "tau diff [95% CI]"], rows),
                    ""]
        vs = info.get("versus_domain", {}).get(p)
        if vs:
            out += [f"Held-out **relabel** tasks only, each method against *{DOMAIN_REFERENCE}* "
                    "(the label-blind domain embedding), paired per task (negative = the "
                    "method chose better):", "", versus_domain_table(vs), ""]
        cmp_rows = info.get("compare", {}).get("protocols", {}).get(p)
        if cmp_rows:
            out += [f"Against `{info['compare']['file']}` on the held-out tasks both runs "
                    "hold (same protocol, paired per task; negative = this run chose "
                    "better):", "", versus_run_table(cmp_rows), ""]
        if p == "loso":
            out += ["Regret per held-out source dataset:", "",
                    by_source(data, res, [DEFAULT_METHOD, SELECTOR_DEFAULT,
                                          "Fisher: nearest sym",
                                          "domain: model2vec ncos", "label-stat: model2vec ncos",
                                          "best on average",
                                          imagenet_row(imagenet), "LogME"]),
                    ""]
    return "\n".join(out)


def _rounded(o: Any, digits: int = 4) -> Any:
    if isinstance(o, dict):
        return {k: _rounded(v, digits) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_rounded(v, digits) for v in o]
    if isinstance(o, np.ndarray):
        return _rounded(o.tolist(), digits)
    if isinstance(o, float | np.floating):
        return round(float(o), digits) if np.isfinite(o) else None
    return o


def _from_json(o: Any) -> Any:
    """Inverse of :func:`_rounded` for rendering: lists of numbers become arrays, None NaN."""
    if isinstance(o, dict):
        return {k: (np.array([np.nan if x is None else x for x in v], dtype=float)
                    if k in ("tau", "regret", "top3", "time_s") and isinstance(v, list)
                    else _from_json(v)) for k, v in o.items()}
    if isinstance(o, list):
        return [_from_json(v) for v in o]
    return float("nan") if o is None else o


def _to_json(results: dict[str, Any], goals: dict[str, Any], info: dict[str, Any]
             ) -> dict[str, Any]:
    return _rounded({"info": info, "protocols": results, "goal": goals})


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kb", type=Path, default=None,
                    help="knowledge-base file (default: the packaged one)")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS))
    ap.add_argument("--no-transfer", action="store_true",
                    help="skip meta-features and transferability scores (no suite rebuild)")
    ap.add_argument("--no-inner-cv", action="store_true")
    ap.add_argument("--lazy-transfer", action="store_true",
                    help="rebuild the tasks but precompute no transferability score: the "
                         "hybrid rows compute LogME where their gate asks for it (on the "
                         "shared feature cache); the transferability rows are left out")
    ap.add_argument("--methods", default=None, metavar="REGEX",
                    help="only the methods whose name matches (the references always run)")
    ap.add_argument("--n-jobs", type=int, default=1,
                    help="methods evaluated in parallel (one thread each)")
    ap.add_argument("--precompute-only", action="store_true",
                    help="only fill the feature cache for the knowledge base's tasks (the "
                         "transferability pass), then stop")
    ap.add_argument("--input-size", type=int, default=None,
                    help="input size of the transferability features (default: the knowledge "
                         "base's brute-force setting)")
    ap.add_argument("--cache-dir", type=Path, default=CACHE,
                    help="the feature cache (default: the benchmarks' shared one)")
    ap.add_argument("--discussion", type=Path, default=None,
                    help="Markdown file whose text goes under 'Reading' in the results page")
    ap.add_argument("--name", default="selection", help="results file stem")
    ap.add_argument("--render-only", action="store_true",
                    help="re-write the Markdown page from the JSON results (e.g. with a new "
                         "--discussion) without running anything")
    ap.add_argument("--prefill", action="store_true",
                    help="only fill the transferability cache for the tasks of --suite/--seed "
                         "(no knowledge base needed), then stop")
    ap.add_argument("--suite", default=None,
                    help="the suite whose tasks --prefill fills, or the transferability pass "
                         "rebuilds (default: the base's own, else 'default'; 'v2' holds the "
                         "tasks of 'default' too)")
    ap.add_argument("--extractors", default=None, metavar="REGEX",
                    help="only the base's extractors whose name matches (e.g. the expert "
                         "zoo: '^expert-|^mobilenet_v2$')")
    ap.add_argument("--zoo", type=Path, default=None,
                    help="a zoo file registering the base's own candidates (the experts: "
                         "benchmarks/.cache/v2/experts/zoo.toml, written by "
                         "build_knowledge_v2.py); needed for transferability scores")
    ap.add_argument("--imagenet", default=IMAGENET_DEFAULT,
                    help="the extractor of the 'ImageNet default' row")
    ap.add_argument("--compare", type=Path, default=None, metavar="JSON",
                    help="another selection results file: add a paired table on the "
                         "held-out tasks both runs hold (works with --render-only)")
    ap.add_argument("--seed", type=int, default=0, help="with --prefill")
    ap.add_argument("--limit", type=int, default=0, help="with --prefill: first N tasks only")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    t_start = time.perf_counter()
    if args.prefill:
        prefill(args.suite or "default", args.seed, args.input_size or 64,
                feature_memory(args.cache_dir), args.limit, log)
        return 0
    if args.zoo:
        from t2v_automl.extractors import read_zoo

        read_zoo(args.zoo)
    kb = KnowledgeBase.load(args.kb) if args.kb else KnowledgeBase.default()
    if args.extractors:
        import re

        pattern = re.compile(args.extractors)
        kb = kb.select_extractors([n for n in kb.extractor_names if pattern.search(n)])
    if args.imagenet not in kb.extractor_names:
        raise SystemExit(f"--imagenet {args.imagenet!r} is not an extractor of the base "
                         f"({', '.join(kb.extractor_names)})")
    data = BenchData.from_knowledge(kb)
    if args.render_only:
        import json

        from _common import RESULTS

        saved = json.loads((RESULTS / f"{args.name}.json").read_text())
        results, goals = _from_json(saved["protocols"]), _from_json(saved["goal"])
        if args.compare:
            saved["info"]["compare"] = versus_run(results, args.compare)
            saved["info"]["command"] += f"; re-rendered with --compare {args.compare}"
        discussion = args.discussion.read_text() if args.discussion else ""
        write_results(args.name, saved, markdown(results, goals, data, saved["info"],
                                                 discussion))
        log(f"re-rendered benchmarks/results/{args.name}.md")
        return 0
    log(f"knowledge base: {len(kb)} tasks x {data.n_extractors} extractors; embeddings "
        f"{sorted(data.embeddings)}")
    settings = kb.provenance[0].get("evaluation", {}) if len(kb) else {}
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)  # selection times are CPU seconds of one thread
    suite = args.suite or str(settings.get("suite", kb.provenance[0].get("suite", "default")
                                           if len(kb) else "default"))
    if args.lazy_transfer:  # the tasks only: the hybrid rows compute what they need
        task_inputs(data, suite, int(settings.get("seed", 0)), log)
    elif not args.no_transfer or args.precompute_only:
        size = args.input_size or int(settings.get("input_size", 64))
        transfer_inputs(data, suite, int(settings.get("seed", 0)), size,
                        feature_memory(args.cache_dir), log)
        if args.precompute_only:
            log(f"feature cache filled in {time.perf_counter() - t_start:.0f}s")
            return 0
    method_list = methods(data, inner_cv=not args.no_inner_cv, imagenet=args.imagenet)
    if args.methods:
        import re

        keep = re.compile(args.methods)
        method_list = [m for m in method_list
                       if m.group == "reference" or keep.search(m.name)]
    results = {}
    goals = {}
    vs_domain: dict[str, Any] = {}
    for p in args.protocols.split(","):
        results[p] = run_protocol(data, p, method_list, log=log, n_jobs=args.n_jobs)
        goals[p] = goal_check(results[p])
        vs_domain[p] = versus_domain(data, results[p])
    cmd = "python benchmarks/selection.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    mach = machine()
    info = {"command": cmd, "machine": mach, "wall_s": time.perf_counter() - t_start,
            "kb": str(args.kb or "packaged knowledge_default.npz") + f" ({len(kb)} tasks, "
            f"{data.n_extractors} extractors: {', '.join(data.extractor_names)})",
            "kb_settings": settings,
            "machine_text": f"{mach['platform']}, {mach['cpu_count']} CPU cores, "
                            f"torch {mach['torch']} ({mach['torch_threads']} thread), "
                            f"GPU: {mach['cuda'] or 'none'}",
            "imagenet_default": args.imagenet, "default_method": DEFAULT_METHOD,
            "versus_domain": vs_domain,
            "inner_cv_grid": INNER_GRID}
    if args.compare:
        info["compare"] = versus_run(results, args.compare)
    discussion = args.discussion.read_text() if args.discussion else ""
    md = markdown(results, goals, data, info, discussion)
    write_results(args.name, _to_json(results, goals, info), md)
    log(f"wrote benchmarks/results/{args.name}.md and .json in "
        f"{time.perf_counter() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
