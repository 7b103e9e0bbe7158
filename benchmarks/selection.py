"""How well does each method choose a feature extractor for a new task? (issue 5, item 3)

Every method sees the *known* tasks of the knowledge base (their embeddings and the scores
of every extractor on them) and ranks the extractors for each *held-out* task; the
ranking is compared with the held-out task's true scores. Three protocols:

``loto`` (leave one task out)
    Each task in turn is held out; all the others are known. The reference "best of the
    same source dataset" is :class:`~t2v_automl.baselines.BestOnAverage` fitted on the
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

Methods (hyper-parameters are **fixed in advance**: the library defaults, listed in the
results; nothing is tuned on the held-out tasks. One extra row, ``model2vec sym (inner
CV)``, chooses ``temperature`` of the model2vec selector among 0.003, 0.01 and 0.03 by an
inner leave-one-source-dataset-out cross-validation (lowest mean regret) on the known
tasks of each fold only; it is run in ``loso`` and ``lolo``, whose few folds make it
affordable):

- ``optimal`` (oracle: the true scores; its time is brute force, the sum of the
  evaluation times of all extractors) and ``chance`` (the expected value of a uniformly
  random extractor: exact for regret and top-3, a 200-permutation average for tau);
- ``ImageNet default``: :class:`~t2v_automl.baselines.FixedExtractor` with
  ``efficientnet_lite0`` (the class's default; the strongest single extractor of the
  design prototype, so the hardest fixed default to beat);
- ``best on average`` (:class:`~t2v_automl.baselines.BestOnAverage`) and ``meta-feature
  kNN`` (:class:`~t2v_automl.baselines.MetaFeatureKNN`, k=5, on the four meta-features
  of each task's training split);
- :class:`~t2v_automl.estimators.ExtractorSelector` on the main (Fisher) embedding:
  ``nearest`` (k=3, inverse-distance weights) with the symmetric, asymmetric and
  Hellinger distances (Hellinger: ``ExtractorSelector()``, the embedding-only default),
  ``model2vec`` (symmetric distance), and both strategies with ``normalized_cosine`` (the
  metric the cheap embeddings must use);
- the **default**, :class:`~t2v_automl.estimators.HybridSelector`: ``ExtractorSelector()``
  on the Fisher embedding blended with LogME by the task's novelty (gate centre 1.5,
  steepness 4; rows with centres 1.0 and 2.0 show the sensitivity, and one row uses the
  domain embedding instead of the Fisher);
- the same selectors on the extra embedding sets: ``montecarlo_full`` (a Fisher as well:
  all four distances), ``domain`` and ``label_stat`` (``normalized_cosine``);
- transferability scores (LogME, LEEP, NCE, H-score, 5-NN accuracy) of each candidate's
  features of the held-out task's *training* images (what a user has), at the input size
  of the brute force (64 px for the resizable ImageNet networks); LEEP and NCE use the
  extractor's own source head and rank extractors without one last.

Metrics per method: mean weighted Kendall tau (:func:`~t2v_automl.estimators.weighted_tau`,
tasks whose true scores are all tied are left out), top-1 regret in accuracy points with
a percentile-bootstrap 95 % CI over held-out tasks, top-3 hit rate (a true best extractor,
ties included, is among the first three predicted) and the wall time per new task:
embedding time (``kb.embed_time`` or the extra set's recorded time) + fitting the
selector on the known tasks + predicting (the fit is counted in full for every new task,
an upper bound); transferability: features (and source logits) of every candidate +
score; brute force: the sum of ``kb.eval_time`` over the extractors (features of train
and test images + probe fit, charged in full to each task of a relabel pool).

Usage::

    python benchmarks/selection.py            # the shipped knowledge base, all protocols

The transferability pass builds the tasks again with ``make_suite`` (same suite and seed
as the knowledge base), runs on one thread and caches per-task results under
``benchmarks/.cache/selection/`` (joblib ``Memory``); features of one relabel image pool
are computed once and their time charged to every task of the pool.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bootstrap_ci, machine, md_table, write_results  # noqa: E402

from t2v_automl.baselines import (  # noqa: E402
    BestOnAverage,
    FixedExtractor,
    MetaFeatureKNN,
    h_score,
    knn_accuracy,
    leep,
    logme,
    meta_features,
    nce,
)
from t2v_automl.estimators import (  # noqa: E402
    ExtractorSelector,
    HybridSelector,
    blend_with_transferability,
)
from t2v_automl.estimators._selector import (  # noqa: E402
    NOVELTY_CENTER,
    NOVELTY_STEEPNESS,
    novelty_gate,
    top1_regret,
    weighted_tau,
)
from t2v_automl.knowledge import KnowledgeBase  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache" / "selection"
PROTOCOLS = ("loto", "loso", "lolo")
PROTOCOL_TITLES = {
    "loto": "Leave one task out",
    "loso": "Leave one source dataset out",
    "lolo": "Leave one label function out (relabelled tasks)",
}
MEASURES = ("logme", "leep", "nce", "h_score", "knn_accuracy")
MEASURE_TITLES = {"logme": "LogME", "leep": "LEEP", "nce": "NCE", "h_score": "H-score",
                  "knn_accuracy": "kNN accuracy"}
#: The ImageNet default of the paper's Table 1 (see the module docstring).
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
#: Bump when what a cached transferability entry holds changes.
_CACHE_VERSION = 2


# ----------------------------------------------------------------------------- data
@dataclass
class BenchData:
    """What the protocols need from a knowledge base (plus optional per-task extras).

    Attributes
    ----------
    task_names, extractor_names : list of str
    scores : ndarray of shape (n_tasks, n_extractors)
        True scores (accuracy in [0, 1]; NaN = not measured).
    eval_time : ndarray of shape (n_tasks, n_extractors)
        Brute-force seconds per cell.
    kind, source, pool, label_function : ndarray of str, shape (n_tasks,)
        Provenance of each task.
    embeddings : dict of str to ndarray
        ``"fisher"`` (the main set) and the extra sets, each ``(n_tasks, dim)``.
    embed_time : dict of str to ndarray
        Seconds per task for each embedding set (NaN = unknown).
    meta_features : ndarray of shape (n_tasks, 4) or None
    meta_time : ndarray of shape (n_tasks,) or None
        Seconds to compute the meta-features of a task.
    transfer : dict of str to (ndarray, ndarray)
        Measure -> (scores ``(n_tasks, n_extractors)``, seconds per task ``(n_tasks,)``).
    """

    task_names: list[str]
    extractor_names: list[str]
    scores: np.ndarray
    eval_time: np.ndarray
    kind: np.ndarray
    source: np.ndarray
    pool: np.ndarray
    label_function: np.ndarray
    embeddings: dict[str, np.ndarray]
    embed_time: dict[str, np.ndarray]
    meta_features: np.ndarray | None = None
    meta_time: np.ndarray | None = None
    transfer: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def from_knowledge(cls, kb: KnowledgeBase) -> BenchData:
        """Read scores, provenance, embeddings and timings from a knowledge base.

        Parameters
        ----------
        kb : KnowledgeBase

        Returns
        -------
        BenchData
            Extra embedding sets with a task lacking an entry are left out.
        """
        prov = kb.provenance

        def field_of(key: str, default: str) -> np.ndarray:
            return np.array([str(p.get(key, default)) for p in prov], dtype=object)

        emb = {"fisher": kb.embeddings}
        times = {"fisher": kb.embed_time}
        for name in kb.extra_names:
            _, values = kb.extra_embeddings(name)
            if not np.isfinite(values).all():
                continue
            emb[name] = values
            times[name] = np.array(
                [float(p.get("extra_embed_time_s", {}).get(name, np.nan)) for p in prov])
        return cls(task_names=kb.task_names, extractor_names=kb.extractor_names,
                   scores=kb.scores, eval_time=kb.eval_time,
                   kind=field_of("kind", "subset"), source=field_of("source_dataset", "?"),
                   pool=np.array([str(p.get("pool", kb.task_names[i]))
                                  for i, p in enumerate(prov)], dtype=object),
                   label_function=field_of("label_function", "identity"),
                   embeddings=emb, embed_time=times)

    def __len__(self) -> int:
        return len(self.task_names)

    @property
    def n_extractors(self) -> int:
        """Number of extractors (columns of :attr:`scores`)."""
        return len(self.extractor_names)


# ----------------------------------------------------------------------------- protocols
def folds(data: BenchData, protocol: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The folds of a protocol.

    Parameters
    ----------
    data : BenchData
    protocol : {"loto", "loso", "lolo"}

    Returns
    -------
    list of (label, test indices, known mask)
        Every held-out task appears in exactly one fold; the known mask never contains a
        held-out task.
    """
    n = len(data)
    out: list[tuple[str, np.ndarray, np.ndarray]] = []
    if protocol == "loto":
        for i in range(n):
            known = np.ones(n, dtype=bool)
            known[i] = False
            out.append((data.task_names[i], np.array([i]), known))
    elif protocol == "loso":
        for s in sorted(set(data.source)):
            held = data.source == s
            out.append((s, np.flatnonzero(held), ~held))
    elif protocol == "lolo":
        relabel = data.kind == "relabel"
        for f in sorted(set(data.label_function[relabel])):
            held = relabel & (data.label_function == f)
            out.append((f, np.flatnonzero(held), ~held))
    else:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    return out


# ----------------------------------------------------------------------------- metrics
def top3_hit(y_true: np.ndarray, y_score: np.ndarray, k: int = 3) -> np.ndarray:
    """Whether a true best extractor (ties included) is among the first ``k`` predicted.

    Parameters
    ----------
    y_true, y_score : ndarray of shape (n_tasks, n_extractors)
        True scores (NaN = not measured: never counted) and predicted scores (NaN ranks
        last; ties keep the column order).
    k : int, default=3

    Returns
    -------
    ndarray of shape (n_tasks,)
        1.0 or 0.0; NaN for a task without a measured extractor.
    """
    out = np.full(y_true.shape[0], np.nan)
    for i in range(y_true.shape[0]):
        known = ~np.isnan(y_true[i])
        if not known.any():
            continue
        best = known & (y_true[i] == np.nanmax(y_true[i]))
        key = np.where(np.isnan(y_score[i]), np.inf, -y_score[i])
        order = [j for j in np.argsort(key, kind="stable") if known[j]][:k]
        out[i] = float(best[order].any())
    return out


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
#: A method: ``(data, known indices, test indices) -> (predicted scores, seconds per task)``.
Predictor = Callable[[BenchData, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Method:
    """One row of a results table.

    Attributes
    ----------
    name : str
    group : str
        ``"reference"``, ``"baseline"``, ``"task2vec"``, ``"cheap embedding"`` or
        ``"transferability"``.
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


def _rank_scores(est: Any, X_known: Any, Y_known: np.ndarray, X_test: Any,
                 names: Sequence[str]) -> tuple[np.ndarray, float, float]:
    """Fit ``est`` on the known tasks, rank the extractors of the test tasks.

    Extractors without any known score are left out of the fit and ranked last.

    Returns
    -------
    scores : ndarray of shape (n_test, n_extractors)
        ``n_extractors - position`` in the predicted ranking (higher = better).
    fit_s, predict_s : float
        CPU seconds (one thread) for ``fit`` and for ``rank`` over all test tasks.
    """
    cols = np.flatnonzero(~np.isnan(Y_known).all(axis=0))
    sub = [names[j] for j in cols]
    est.set_params(extractor_names=sub)
    t0 = time.process_time()
    est.fit(X_known, Y_known[:, cols])
    fit_s = time.process_time() - t0
    t0 = time.process_time()
    ranked = est.rank(X_test)
    predict_s = time.process_time() - t0
    index = {n: j for j, n in enumerate(names)}
    m = len(names)
    out = np.full((ranked.shape[0], m), np.nan)
    for i, row in enumerate(ranked):
        for pos, name in enumerate(row):
            out[i, index[name]] = float(m - pos)
    return out, fit_s, predict_s


def selector_predictor(embedding: str, make: Callable[[], Any]) -> Predictor:
    """A predictor that fits an embedding-based selector on the known tasks.

    Parameters
    ----------
    embedding : str
        Key of :attr:`BenchData.embeddings`.
    make : callable
        Returns a fresh, unfitted selector.
    """
    def run(data: BenchData, known: np.ndarray, test: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        E = data.embeddings[embedding]
        pred, fit_s, pred_s = _rank_scores(make(), E[known], data.scores[known], E[test],
                                           data.extractor_names)
        t = data.embed_time[embedding][test] + fit_s + pred_s / len(test)
        return pred, t
    return run


def table_predictor(make: Callable[[], Any], use_meta: bool = False) -> Predictor:
    """A predictor for selectors that need no embedding (or the meta-features)."""
    def run(data: BenchData, known: np.ndarray, test: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        if use_meta:
            if data.meta_features is None or data.meta_time is None:
                raise RuntimeError("meta-features were not computed")
            Xk, Xt, extra = data.meta_features[known], data.meta_features[test], \
                data.meta_time[test]
        else:
            Xk, Xt, extra = np.zeros((len(known), 1)), np.zeros((len(test), 1)), 0.0
        pred, fit_s, pred_s = _rank_scores(make(), Xk, data.scores[known], Xt,
                                           data.extractor_names)
        return pred, extra + fit_s + pred_s / len(test)
    return run


def group_best_predictor(attr: str) -> Predictor:
    """BestOnAverage over the known tasks sharing ``attr`` (``"source"``/``"pool"``)."""
    def run(data: BenchData, known: np.ndarray, test: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        groups = getattr(data, attr)
        pred = np.full((len(test), data.n_extractors), np.nan)
        times = np.zeros(len(test))
        for i, t in enumerate(test):
            same = known[groups[known] == groups[t]]
            if same.size == 0:
                continue
            p, fit_s, pred_s = _rank_scores(BestOnAverage(), np.zeros((len(same), 1)),
                                            data.scores[same], np.zeros((1, 1)),
                                            data.extractor_names)
            pred[i], times[i] = p[0], fit_s + pred_s
        return pred, times
    return run


def oracle_predictor(data: BenchData, known: np.ndarray, test: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The true scores; time = brute force over the zoo."""
    return data.scores[test], np.nansum(data.eval_time[test], axis=1)


def transfer_predictor(measure: str) -> Predictor:
    """The precomputed transferability scores of the held-out tasks."""
    def run(data: BenchData, known: np.ndarray, test: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        s, t = data.transfer[measure]
        return s[test], t[test]
    return run


def hybrid_predictor(embedding: str = "fisher", metric: str = "hellinger",
                     measure: str = "logme", center: float = NOVELTY_CENTER,
                     steepness: float = NOVELTY_STEEPNESS, min_gate: float | None = None,
                     domain_screen: float | None = None, use_screen: bool = True,
                     embedding_from_transfer: bool = False) -> Predictor:
    """:class:`~t2v_automl.estimators.HybridSelector` on precomputed inputs.

    The same computation as ``HybridSelector.predict_scores`` on the knowledge base's
    embeddings and the cached transferability scores: the domain screen (an
    ``ExtractorSelector(metric="normalized_cosine")`` on the known tasks' domain embeddings;
    a task whose domain novelty reaches ``domain_screen`` skips the Fisher and takes the
    transferability ranking alone), then ``ExtractorSelector`` with ``metric`` fitted on the
    known tasks, its :meth:`novelty`, and
    :func:`~t2v_automl.estimators.blend_with_transferability`. ``min_gate`` and
    ``domain_screen`` default to :class:`HybridSelector`'s (``use_screen=False``: no
    screen). Time: the domain embedding (with the screen), the Fisher embedding of the
    tasks not screened, the fits and predictions, and the transferability time of the tasks
    whose gate reaches ``min_gate`` (the only ones the estimator computes it for). With
    ``embedding_from_transfer`` (the domain embedding: the mean of ``mobilenet_v2``
    features, which the transferability pass computes anyway; no screen) the embedding time
    is charged only where no transferability pass runs, and the whole prediction time to
    each task.
    """
    defaults = HybridSelector().get_params()
    min_gate = float(defaults["min_gate"] if min_gate is None else min_gate)
    if domain_screen is None:
        domain_screen = defaults["domain_screen"]
    screen_on = use_screen and domain_screen is not None and not embedding_from_transfer

    def run(data: BenchData, known: np.ndarray, test: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        E = data.embeddings[embedding]
        names = data.extractor_names
        Yk = data.scores[known]
        cols = np.flatnonzero(~np.isnan(Yk).all(axis=0))
        prior = np.full((len(test), len(names)), np.nan)
        screened = np.zeros(len(test), dtype=bool)
        fit_s = pred_s = 0.0
        if screen_on and "domain" in data.embeddings:
            Ed = data.embeddings["domain"]
            t0 = time.process_time()
            scr = ExtractorSelector(metric="normalized_cosine",
                                    extractor_names=[names[j] for j in cols])
            scr.fit(Ed[known], Yk[:, cols])
            fit_s += time.process_time() - t0
            t0 = time.process_time()
            screened = scr.novelty(Ed[test]) >= float(domain_screen)
            if screened.any():
                prior[np.ix_(screened, cols)] = scr.predict_scores(Ed[test][screened])
            pred_s += time.process_time() - t0
        sel = ExtractorSelector(metric=metric, extractor_names=[names[j] for j in cols])
        t0 = time.process_time()
        sel.fit(E[known], Yk[:, cols])
        fit_s += time.process_time() - t0
        t0 = time.process_time()
        novelty = np.full(len(test), np.inf)  # screened: the transferability ranking alone
        keep = ~screened
        if keep.any():
            prior[np.ix_(keep, cols)] = sel.predict_scores(E[test][keep])
            novelty[keep] = sel.novelty(E[test][keep])
        pred_s += time.process_time() - t0
        scores, t_s = data.transfer[measure]
        gate = novelty_gate(novelty, center=center, steepness=steepness)
        runs = gate >= min_gate
        transfer = np.where(runs[:, None], scores[test], np.nan)
        mixed, gate = blend_with_transferability(prior, transfer, novelty, center=center,
                                                 steepness=steepness)
        if embedding_from_transfer:
            t = fit_s + pred_s + np.where(runs, t_s[test], data.embed_time[embedding][test])
        else:
            t = fit_s + pred_s / len(test) + np.where(keep, data.embed_time[embedding][test], 0.0) \
                + np.where(runs, t_s[test], 0.0)
            if screen_on:
                t = t + data.embed_time["domain"][test]
        return mixed, t
    return run


def _inner_cv_selector(data: BenchData, known: np.ndarray) -> tuple[float, float]:
    """(temperature, reg) of the default selector with the lowest inner LOSO regret."""
    E, Y = data.embeddings["fisher"], data.scores
    groups = data.source[known]
    best, best_key = INNER_GRID[0], (np.inf, np.inf)
    for temp, reg in INNER_GRID:
        losses = []
        for g in sorted(set(groups)):
            tr, te = known[groups != g], known[groups == g]
            if len(tr) < 2:
                continue
            sel = ExtractorSelector(strategy="model2vec", metric="symmetric",
                                    temperature=temp, reg=reg)
            pred, _, _ = _rank_scores(sel, E[tr], Y[tr], E[te], data.extractor_names)
            losses.append(top1_regret(Y[te], pred))
        loss = float(np.nanmean(np.concatenate(losses))) if losses else np.inf
        key = (loss, abs(math.log(temp / 0.01)) + abs(math.log(reg / 0.1)))
        if key < best_key:  # ties: the one nearest the library default
            best, best_key = (temp, reg), key
    return best


def inner_cv_predictor(data: BenchData, known: np.ndarray, test: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The default selector with (temperature, reg) chosen by inner CV on known tasks."""
    t0 = time.process_time()
    temp, reg = _inner_cv_selector(data, known)
    cv_s = time.process_time() - t0
    pred, t = selector_predictor("fisher", lambda: ExtractorSelector(
        strategy="model2vec", metric="symmetric", temperature=temp, reg=reg))(
        data, known, test)
    return pred, t + cv_s


def methods(data: BenchData, inner_cv: bool = True) -> list[Method]:
    """Every method that the data allows, in table order.

    Parameters
    ----------
    data : BenchData
    inner_cv : bool, default=True
        Include the inner-CV variant of the default selector.

    Returns
    -------
    list of Method
    """
    out = [
        Method("optimal (brute force)", "reference", oracle_predictor, "true scores"),
        Method("chance", "reference", None, "uniformly random extractor"),
        Method("best of same source dataset", "reference", group_best_predictor("source"),
               "BestOnAverage on known tasks of the held-out task's dataset",
               ("loto", "lolo")),
        Method("best of same image pool", "reference", group_best_predictor("pool"),
               "BestOnAverage on known tasks of the same images", ("lolo",)),
        Method(f"ImageNet default ({IMAGENET_DEFAULT})", "baseline",
               table_predictor(lambda: FixedExtractor(name=IMAGENET_DEFAULT)), "fixed"),
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
                    "Fisher: model2vec sym (inner CV)", "task2vec", inner_cv_predictor,
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
            out.append(Method(MEASURE_TITLES[m], "transferability", transfer_predictor(m),
                              "train images, 64 px" + (", k=5" if m == "knn_accuracy" else "")))
    if "logme" in data.transfer:
        hd = HybridSelector().get_params()
        out.append(Method(DEFAULT_METHOD, "hybrid", hybrid_predictor(),
                          f"k=3, hellinger; gate center {NOVELTY_CENTER}, steepness "
                          f"{NOVELTY_STEEPNESS}, min_gate {hd['min_gate']}, domain screen "
                          f"{hd['domain_screen']}"))
        out += [Method(f"hybrid, gate center {c}", "hybrid", hybrid_predictor(center=c),
                       f"as the default, center {c} (sensitivity)") for c in HYBRID_CENTERS]
        out += [Method("hybrid, no domain screen", "hybrid",
                       hybrid_predictor(use_screen=False),
                       "as the default, every task Fisher-embedded (sensitivity)"),
                Method(f"hybrid, domain screen {HYBRID_SCREEN_ALT}", "hybrid",
                       hybrid_predictor(domain_screen=HYBRID_SCREEN_ALT),
                       f"as the default, screen at {HYBRID_SCREEN_ALT} (sensitivity)"),
                Method(f"hybrid, min_gate {HYBRID_MIN_GATE_ALT}", "hybrid",
                       hybrid_predictor(min_gate=HYBRID_MIN_GATE_ALT),
                       f"as the default, LogME down to gate {HYBRID_MIN_GATE_ALT} "
                       "(sensitivity)")]
        if "domain" in data.embeddings:
            out.append(Method("hybrid on domain embedding: ncos + LogME", "hybrid",
                              hybrid_predictor("domain", "normalized_cosine",
                                               embedding_from_transfer=True),
                              "k=3, normalized_cosine; same gate"))
    return out


# ----------------------------------------------------------------------------- evaluation
def _method_result(data: BenchData, protocol: str, meth: Method, n_boot: int
                   ) -> dict[str, Any]:
    """One method over the folds of one protocol (see :func:`run_protocol`)."""
    fl = folds(data, protocol)
    test_all = np.concatenate([t for _, t, _ in fl])
    Y = data.scores[test_all]
    if meth.predict is None:
        tau, reg, hit = chance_metrics(Y)
        times = np.zeros(test_all.size)
    else:
        preds, tms = [], []
        for _, test, known in fl:
            p, t = meth.predict(data, np.flatnonzero(known), test)
            preds.append(p)
            tms.append(np.broadcast_to(np.asarray(t, dtype=float), (len(test),)))
        pred, times = np.vstack(preds), np.concatenate(tms).astype(float)
        has = ~np.isnan(pred).all(axis=1)  # no prediction for a task: it is left out
        tau, reg, hit = (np.full(len(Y), np.nan) for _ in range(3))
        tau[has], reg[has] = weighted_tau(Y[has], pred[has]), top1_regret(Y[has], pred[has])
        hit[has] = top3_hit(Y[has], pred[has])
        times[~has] = np.nan
    ok = np.isfinite(reg)
    return {
        "group": meth.group, "params": meth.params,
        "tau": float(np.nanmean(tau)) if np.isfinite(tau).any() else float("nan"),
        "regret": float(np.nanmean(reg)) if ok.any() else float("nan"),
        "regret_ci": bootstrap_ci(reg, n_boot=n_boot),
        "top3": float(np.nanmean(hit)) if np.isfinite(hit).any() else float("nan"),
        "time_s": float(np.nanmean(times)) if np.isfinite(times).any() else float("nan"),
        "n_tasks": int(ok.sum()), "n_tau": int(np.isfinite(tau).sum()),
        "per_task": {"tau": tau, "regret": reg, "top3": hit, "time_s": times},
    }


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
class _FeatureMemo:
    """Features and source logits of identical image arrays, computed once per process.

    Times are CPU seconds of this (single-threaded) process, :func:`time.process_time`:
    what the work costs on one core, unaffected by other processes sharing the machine.
    """

    def __init__(self, maxsize: int = 30) -> None:
        self.maxsize = maxsize
        self.store: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, name: str, images: np.ndarray, input_size: int) -> dict[str, Any]:
        """Features (+ logits where the extractor has a source head) and their seconds."""
        from t2v_automl.extractors import get_extractor

        digest = hashlib.blake2b(np.ascontiguousarray(images).tobytes(),
                                 digest_size=16).hexdigest()
        key = (name, digest)
        if key not in self.store:
            ext = get_extractor(name, "cpu")
            t0 = time.process_time()
            feats = ext.transform(images, input_size=input_size)
            t_feat = time.process_time() - t0
            logits, t_log = None, 0.0
            if ext.has_source_head:
                t0 = time.process_time()
                logits = ext.source_logits(images, input_size=input_size)
                t_log = time.process_time() - t0
            if len(self.store) >= self.maxsize:
                self.store.pop(next(iter(self.store)))
            self.store[key] = {"features": feats, "logits": logits, "t_feat": t_feat,
                               "t_logits": t_log}
        return self.store[key]


_MEMO = _FeatureMemo()


def _transfer_scores(key: dict[str, Any], images: np.ndarray, labels: np.ndarray
                     ) -> dict[str, Any]:
    """Every transferability measure of one extractor on one task (what is cached).

    ``key`` names the task (fingerprint), the extractor and the input size; the image and
    label arrays are ignored by the cache.
    """
    from t2v_automl.baselines import _softmax

    f = _MEMO.get(key["extractor"], images, key["input_size"])
    feats = f["features"].astype(np.float64)
    scores: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for m, fn in (("logme", logme), ("h_score", h_score), ("knn_accuracy", knn_accuracy)):
        t0 = time.process_time()
        scores[m] = float(fn(feats, labels))
        seconds[m] = f["t_feat"] + time.process_time() - t0
    if f["logits"] is None:
        for m in ("leep", "nce"):
            scores[m], seconds[m] = float("nan"), 0.0
    else:
        logits = f["logits"].astype(np.float64)
        t0 = time.process_time()
        scores["leep"] = float(leep(_softmax(logits), labels))
        seconds["leep"] = f["t_logits"] + time.process_time() - t0
        t0 = time.process_time()
        scores["nce"] = float(nce(logits.argmax(axis=1), labels))
        seconds["nce"] = f["t_logits"] + time.process_time() - t0
    return {"scores": scores, "seconds": seconds}


def _task_transfer(st: Any, extractor_names: Sequence[str], input_size: int,
                   cached: Callable[..., dict[str, Any]]
                   ) -> tuple[np.ndarray, float, dict[str, np.ndarray], dict[str, float]]:
    """Meta-features and every transferability measure of one suite task.

    Returns
    -------
    meta : ndarray of shape (4,)
    meta_s : float
        CPU seconds of the meta-features.
    scores : dict of str to ndarray of shape (n_extractors,)
    seconds : dict of str to float
        Per measure, CPU seconds summed over the candidates (features + score).
    """
    task = st.train
    t0 = time.process_time()
    meta = meta_features(task)
    meta_s = time.process_time() - t0
    fp = task.fingerprint
    scores = {k: np.full(len(extractor_names), np.nan) for k in MEASURES}
    seconds = dict.fromkeys(MEASURES, 0.0)
    for j, name in enumerate(extractor_names):
        r = cached(_cache_key(st.name, fp, name, input_size), task.images, task.labels)
        for k in MEASURES:
            scores[k][j] = r["scores"][k]
            seconds[k] += r["seconds"][k]
    return meta, meta_s, scores, seconds


def _cache_key(task: str, fingerprint: str, extractor: str, input_size: int
               ) -> dict[str, Any]:
    return {"version": _CACHE_VERSION, "task": task, "fingerprint": fingerprint,
            "extractor": extractor, "input_size": int(input_size)}


def _cached_scorer(cache_dir: Path) -> Callable[..., dict[str, Any]]:
    import torch
    from joblib import Memory
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
    return Memory(str(cache_dir), verbose=0).cache(_transfer_scores, ignore=["images", "labels"])


def transfer_inputs(data: BenchData, suite: str, seed: int, input_size: int,
                    cache_dir: Path, log: Callable[[str], None] = print,
                    cached_only: bool = False) -> None:
    """Compute meta-features and transferability scores of every task (cached, in place).

    Parameters
    ----------
    data : BenchData
        Filled in: ``meta_features``, ``meta_time`` and ``transfer``.
    suite, seed : str, int
        The suite the knowledge base was built from (its tasks are matched by name).
    input_size : int
        Input size of the resizable extractors (that of the brute force).
    cache_dir : Path
        joblib ``Memory`` location.
    log : callable
    cached_only : bool, default=False
        Leave the transferability scores of a task NaN (that task is then left out of
        the transferability rows) unless all its extractors are in the cache.
    """
    from t2v_automl.suites import iter_suite

    cached = _cached_scorer(cache_dir)
    index = {n: i for i, n in enumerate(data.task_names)}
    n, m = len(data), data.n_extractors
    meta = np.full((n, 4), np.nan)
    meta_t = np.full(n, np.nan)
    scores = {k: np.full((n, m), np.nan) for k in MEASURES}
    secs = {k: np.zeros(n) for k in MEASURES}
    t_start = time.perf_counter()
    done = 0
    for st in iter_suite(suite, seed):
        i = index.get(st.name)
        if i is None:
            continue
        if cached_only and not all(cached.check_call_in_cache(
                _cache_key(st.name, st.train.fingerprint, e, input_size), None, None)
                for e in data.extractor_names):
            t0 = time.process_time()
            meta[i] = meta_features(st.train)
            meta_t[i] = time.process_time() - t0
            continue
        meta[i], meta_t[i], sc, se = _task_transfer(st, data.extractor_names, input_size,
                                                    cached)
        for k in MEASURES:
            scores[k][i], secs[k][i] = sc[k], se[k]
        done += 1
        if done % 20 == 0:
            log(f"transferability: {done}/{n} tasks, {time.perf_counter() - t_start:.0f}s")
    missing = [data.task_names[i] for i in np.flatnonzero(np.isnan(meta_t))]
    if missing:
        raise RuntimeError(f"{len(missing)} knowledge-base task(s) not found in suite "
                           f"{suite!r} seed {seed}: {missing[:3]}...")
    data.meta_features, data.meta_time = meta, meta_t
    covered = ~np.isnan(scores["logme"]).all(axis=1)
    data.transfer = {k: (scores[k], np.where(covered, secs[k], np.nan)) for k in MEASURES}
    log(f"transferability scores for {int(covered.sum())}/{n} tasks")


def prefill(suite: str, seed: int, input_size: int, cache_dir: Path, limit: int = 0,
            log: Callable[[str], None] = print) -> None:
    """Fill the transferability cache for a suite before its knowledge base exists.

    The relabel tasks come first (their image pools share features, so they are cheap),
    then the subset tasks round-robin over the source datasets, so that a run stopped
    early covers every dataset.

    Parameters
    ----------
    suite, seed : str, int
    input_size : int
    cache_dir : Path
    limit : int, default=0
        Only the first ``limit`` tasks of that order (0 = all).
    log : callable
    """
    from itertools import zip_longest

    from t2v_automl.extractors import list_extractors
    from t2v_automl.suites import make_suite

    cached = _cached_scorer(cache_dir)
    ext = list_extractors(available_only=True)
    tasks = make_suite(suite, seed)
    by_source: dict[str, list[Any]] = {}
    for st in tasks:
        if st.kind != "relabel":
            by_source.setdefault(str(st.provenance.get("source_dataset")), []).append(st)
    order = [st for st in tasks if st.kind == "relabel"]
    order += [st for group in zip_longest(*by_source.values()) for st in group if st]
    t_start = time.perf_counter()
    for n, st in enumerate(order[: limit or None], 1):
        _task_transfer(st, ext, input_size, cached)
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
        rows.append([name, r["group"], r["n_tasks"], f"{r['tau']:.3f}",
                     f"{r['regret']:.2f} [{lo:.2f}, {hi:.2f}]", f"{r['top3']:.2f}",
                     _fmt_time(r["time_s"]), r["params"]])
    return md_table(["method", "group", "tasks", "weighted tau", "regret, points [95% CI]",
                     "top-3 hit", "time / new task", "hyper-parameters"], rows)


#: The paper's Table 1 columns and the rows that fill them here.
TABLE1 = (("optimal", "optimal (brute force)"), ("chance", "chance"),
          ("ImageNet", f"ImageNet default ({IMAGENET_DEFAULT})"),
          ("sym", "Fisher: nearest sym"), ("asym", "Fisher: nearest asym"),
          ("Model2Vec", "Fisher: model2vec sym"), ("hybrid (default)", DEFAULT_METHOD))


def table1(results: dict[str, Any]) -> str:
    """The paper's Table 1 layout: protocols x (optimal, chance, ImageNet, sym, asym,
    Model2Vec), each cell ``regret / tau``."""
    rows = []
    for p, res in results.items():
        cells = []
        for _, name in TABLE1:
            r = res["methods"].get(name)
            cells.append("n/a" if r is None else f"{r['regret']:.2f} / {r['tau']:.2f}")
        rows.append([PROTOCOL_TITLES[p]] + cells)
    return md_table(["protocol"] + [c for c, _ in TABLE1], rows)


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
            "sym / asym = nearest known tasks (k=3) by the symmetric / asymmetric Task2Vec "
            "distance; Model2Vec = the paper's learned metric (`strategy=\"model2vec\"`); "
            "hybrid = the default `HybridSelector` (nearest known tasks by the Hellinger "
            "distance, LogME as the task's novelty grows).", "",
            table1(results), ""]
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
        if p == "loso":
            out += ["Regret per held-out source dataset:", "",
                    by_source(data, res, [DEFAULT_METHOD, SELECTOR_DEFAULT,
                                          "Fisher: nearest sym",
                                          "domain: model2vec ncos", "label-stat: model2vec ncos",
                                          "best on average",
                                          f"ImageNet default ({IMAGENET_DEFAULT})", "LogME"]),
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
    ap.add_argument("--methods", default=None, metavar="REGEX",
                    help="only the methods whose name matches (the references always run)")
    ap.add_argument("--n-jobs", type=int, default=1,
                    help="methods evaluated in parallel (one thread each)")
    ap.add_argument("--transfer-cached-only", action="store_true",
                    help="use the transferability scores already in the cache; tasks without "
                         "them are left out of those rows (their task count says so)")
    ap.add_argument("--input-size", type=int, default=None,
                    help="input size of the transferability features (default: the knowledge "
                         "base's brute-force setting)")
    ap.add_argument("--cache-dir", type=Path, default=CACHE)
    ap.add_argument("--discussion", type=Path, default=None,
                    help="Markdown file whose text goes under 'Reading' in the results page")
    ap.add_argument("--name", default="selection", help="results file stem")
    ap.add_argument("--render-only", action="store_true",
                    help="re-write the Markdown page from the JSON results (e.g. with a new "
                         "--discussion) without running anything")
    ap.add_argument("--prefill", action="store_true",
                    help="only fill the transferability cache for the tasks of --suite/--seed "
                         "(no knowledge base needed), then stop")
    ap.add_argument("--suite", default="default", help="with --prefill")
    ap.add_argument("--seed", type=int, default=0, help="with --prefill")
    ap.add_argument("--limit", type=int, default=0, help="with --prefill: first N tasks only")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    t_start = time.perf_counter()
    if args.prefill:
        prefill(args.suite, args.seed, args.input_size or 64, args.cache_dir, args.limit, log)
        return 0
    kb = KnowledgeBase.load(args.kb) if args.kb else KnowledgeBase.default()
    data = BenchData.from_knowledge(kb)
    if args.render_only:
        import json

        from _common import RESULTS

        saved = json.loads((RESULTS / f"{args.name}.json").read_text())
        results, goals = _from_json(saved["protocols"]), _from_json(saved["goal"])
        discussion = args.discussion.read_text() if args.discussion else ""
        write_results(args.name, saved, markdown(results, goals, data, saved["info"],
                                                 discussion))
        log(f"re-rendered benchmarks/results/{args.name}.md")
        return 0
    log(f"knowledge base: {len(kb)} tasks x {data.n_extractors} extractors; embeddings "
        f"{sorted(data.embeddings)}")
    settings = kb.provenance[0].get("evaluation", {}) if len(kb) else {}
    if not args.no_transfer:
        size = args.input_size or int(settings.get("input_size", 64))
        transfer_inputs(data, str(settings.get("suite", "default")),
                        int(settings.get("seed", 0)), size, args.cache_dir, log,
                        cached_only=args.transfer_cached_only)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)  # selection times are CPU seconds of one thread
    method_list = methods(data, inner_cv=not args.no_inner_cv)
    if args.methods:
        import re

        keep = re.compile(args.methods)
        method_list = [m for m in method_list
                       if m.group == "reference" or keep.search(m.name)]
    results = {}
    goals = {}
    for p in args.protocols.split(","):
        results[p] = run_protocol(data, p, method_list, log=log, n_jobs=args.n_jobs)
        goals[p] = goal_check(results[p])
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
            "imagenet_default": IMAGENET_DEFAULT, "default_method": DEFAULT_METHOD,
            "inner_cv_grid": INNER_GRID}
    discussion = args.discussion.read_text() if args.discussion else ""
    md = markdown(results, goals, data, info, discussion)
    write_results(args.name, _to_json(results, goals, info), md)
    log(f"wrote benchmarks/results/{args.name}.md and .json in "
        f"{time.perf_counter() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
