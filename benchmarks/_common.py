"""Helpers shared by the benchmark scripts.

The benchmark scripts import the package's public names and this module only, never each
other (each script puts its own folder on ``sys.path`` to import it: the scripts are run
as files, ``python benchmarks/<name>.py``, not as a package). Here:

- the machine description, result files and Markdown tables;
- :func:`bootstrap_ci` (``scipy.stats.bootstrap``, percentile method);
- the knowledge base as the selection benchmarks read it (:class:`BenchData`), the
  protocols' folds (:func:`folds`), the top-3 hit rate (:func:`top3_hit`) and the
  cross-validated rankings of a selector (:class:`RankScores`, :func:`cv_rank_scores`);
- the one feature cache of the benchmarks (:data:`FEATURE_CACHE`) and the transferability
  pass through the product's :class:`~t2v_automl.estimators.TransferabilitySelector`
  (:func:`task_transferability`, :func:`transfer_inputs`).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

RESULTS = Path(__file__).resolve().parent / "results"


def log(msg: str) -> None:
    """Print a timestamped line (long runs are meant to go under nohup)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=Path(__file__).parent, check=False).stdout.strip()
    except OSError:
        pass
    return info


def machine_line(m: dict[str, Any], command: str) -> str:
    """One Markdown sentence: the machine of :func:`machine`, when, which commit, command."""
    return (f"Machine: {m['platform']}, {m['cpu_count']} CPU cores, torch {m['torch']} with "
            f"{m['torch_threads']} thread(s), GPU: {m['cuda'] or 'none'}; {m['date']}, "
            f"commit {m.get('git_commit', '?')}. Command: `{command}`.")


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (NaN and inf left out).

    :func:`scipy.stats.bootstrap` (``method="percentile"``, one batch of ``n_boot``
    resamples drawn by ``numpy.random.default_rng(seed)``): the same resamples, hence the
    same interval up to float rounding (1e-15), as the hand-written version it replaced.
    One finite value gives ``(value, value)``; none gives ``(nan, nan)``.
    """
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:  # every resample is that value (scipy needs two observations)
        return float(v[0]), float(v[0])
    with warnings.catch_warnings():  # identical values: a degenerate, still exact, interval
        warnings.simplefilter("ignore")
        ci = stats.bootstrap((v,), np.mean, n_resamples=n_boot, vectorized=True,
                             confidence_level=level, method="percentile",
                             rng=np.random.default_rng(seed)).confidence_interval
    return float(ci.low), float(ci.high)


def _clean(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, float) and not np.isfinite(o):
        return None
    return o


def write_results(name: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``results/<name>.json`` and ``results/<name>.md``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    jp, mp = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    jp.write_text(json.dumps(_clean(data), indent=2) + "\n")
    mp.write_text(markdown.rstrip() + "\n")
    return jp, mp


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    def fmt(x: Any) -> str:
        if x is None:
            return ""
        if isinstance(x, float):
            return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
        return str(x)

    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(out)




# ----------------------------------------------------------------------------- selection data
#: The selection protocols (see ``benchmarks/selection.py``).
PROTOCOLS = ("loto", "loso", "lolo")


@dataclass
class BenchData:
    """What the selection protocols need from a knowledge base (plus per-task extras).

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
    kb : KnowledgeBase or None
        The base itself (the hybrid rows fit ``HybridSelector.from_knowledge`` on its
        known part, ``kb.subset``).
    tasks : dict of str to Task
        Training splits of the tasks (what a user has), by name: the images the hybrid's
        transferability estimator sees. Filled by :func:`transfer_inputs`.
    transferability : estimator or None
        The transferability estimator the hybrid rows give ``HybridSelector`` (cloned
        there); None: ``TransferabilitySelector(memory=feature_memory())``, the product's
        on the shared cache.
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
    kb: Any = None
    tasks: dict[str, Any] = field(default_factory=dict)
    transferability: Any = None

    @classmethod
    def from_knowledge(cls, kb: Any) -> BenchData:
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
                   embeddings=emb, embed_time=times, kb=kb)

    def __len__(self) -> int:
        return len(self.task_names)

    @property
    def n_extractors(self) -> int:
        """Number of extractors (columns of :attr:`scores`)."""
        return len(self.extractor_names)

    def embedding_objects(self, name: str, rows: Sequence[int]) -> list[Any]:
        """The stored embeddings of some tasks as :class:`~t2v_automl.embedding.Embedding`.

        Parameters
        ----------
        name : str
            ``"fisher"`` (the base's main set) or an extra set (``"domain"``...).
        rows : sequence of int

        Returns
        -------
        list of Embedding
            With the set's metadata, as the estimators' ``explain`` takes them.
        """
        from t2v_automl.embedding import Embedding

        if self.kb is None:
            raise RuntimeError("BenchData without its knowledge base (BenchData.kb)")
        if name == "fisher":
            return [self.kb.embedding(self.task_names[i]) for i in rows]
        meta, values = self.kb.extra_embeddings(name)
        return [Embedding(values[i], meta, task_name=self.task_names[i]) for i in rows]


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


def held_out(data: BenchData, protocol: str) -> np.ndarray:
    """Indices of the held-out tasks of a protocol, fold by fold (the rows of its results)."""
    return np.concatenate([t for _, t, _ in folds(data, protocol)])


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
    from t2v_automl.metrics import ranking_order

    out = np.full(y_true.shape[0], np.nan)
    order = ranking_order(np.asarray(y_score, dtype=np.float64))
    for i in range(y_true.shape[0]):
        known = ~np.isnan(y_true[i])
        if not known.any():
            continue
        best = known & (y_true[i] == np.nanmax(y_true[i]))
        first = [j for j in order[i] if known[j]][:k]
        out[i] = float(best[first].any())
    return out


def relative_error_increase(regret: np.ndarray, err_opt: np.ndarray, n_boot: int = 2000,
                            seed: int = 0) -> tuple[float, tuple[float, float]]:
    """``sum(regret) / sum(optimal error)`` over tasks (Achille et al.'s Table 1 measure:
    the relative increase of the error over the optimal extractor's) and a percentile
    bootstrap 95 % CI over tasks. Both in points; the result is a fraction (0.1 = +10 %).
    """
    regret, err_opt = np.asarray(regret, float), np.asarray(err_opt, float)
    if regret.size == 0 or err_opt.sum() <= 0:
        return float("nan"), (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, regret.size, size=(n_boot, regret.size))
    with np.errstate(all="ignore"):
        boots = regret[idx].sum(axis=1) / err_opt[idx].sum(axis=1)
    lo, hi = np.nanpercentile(boots, [2.5, 97.5])
    return float(regret.sum() / err_opt.sum()), (float(lo), float(hi))


def ranking_metrics(y_true: np.ndarray, y_score: np.ndarray | None, seconds: Any,
                    n_boot: int = 2000, *, tau: np.ndarray | None = None,
                    regret: np.ndarray | None = None, top3: np.ndarray | None = None
                    ) -> dict[str, Any]:
    """Weighted tau, top-1 regret (with its bootstrap CI), top-3 hit and time of a method.

    Parameters
    ----------
    y_true : ndarray of shape (n_tasks, n_extractors)
    y_score : ndarray of shape (n_tasks, n_extractors) or None
        Predicted scores; a task whose row is all NaN has no prediction and is left out.
        None: ``tau``, ``regret`` and ``top3`` are given per task instead.
    seconds : float or ndarray of shape (n_tasks,)
    n_boot : int, default=2000
    tau, regret, top3 : ndarray of shape (n_tasks,), optional
        Per-task values (with ``y_score=None``).

    Returns
    -------
    dict
        ``tau``, ``regret``, ``regret_ci``, ``top3``, ``time_s`` (means over the tasks
        where defined), ``n_tasks`` (tasks with a regret), ``n_tau`` and ``per_task``
        (``tau``, ``regret``, ``top3``, ``time_s`` arrays).
    """
    from t2v_automl.metrics import top1_regret, weighted_tau

    Y = np.asarray(y_true, dtype=np.float64)
    times = np.array(np.broadcast_to(np.asarray(seconds, dtype=float), (len(Y),)))
    if y_score is None:
        assert tau is not None and regret is not None and top3 is not None
        reg, hit = regret, top3
    else:
        pred = np.asarray(y_score, dtype=np.float64)
        has = ~np.isnan(pred).all(axis=1)  # no prediction for a task: it is left out
        tau, reg, hit = (np.full(len(Y), np.nan) for _ in range(3))
        tau[has], reg[has] = weighted_tau(Y[has], pred[has]), top1_regret(Y[has], pred[has])
        hit[has] = top3_hit(Y[has], pred[has])
        times[~has] = np.nan
    ok = np.isfinite(reg)
    # the paper's Table 1 measure: the chosen extractor's error over the optimal one's,
    # as a ratio of mean errors over the tasks (a per-task ratio explodes on tasks where
    # the best extractor makes no error); CI by resampling tasks
    with np.errstate(all="ignore"):
        err_opt = 100.0 * (1.0 - np.nanmax(Y, axis=1))
    rel, rel_ci = relative_error_increase(reg[ok], err_opt[ok], n_boot)
    return {
        "tau": float(np.nanmean(tau)) if np.isfinite(tau).any() else float("nan"),
        "regret": float(np.nanmean(reg)) if ok.any() else float("nan"),
        "regret_ci": bootstrap_ci(reg, n_boot=n_boot),
        "rel_error_increase": rel, "rel_error_increase_ci": rel_ci,
        "top3": float(np.nanmean(hit)) if np.isfinite(hit).any() else float("nan"),
        "time_s": float(np.nanmean(times)) if np.isfinite(times).any() else float("nan"),
        "n_tasks": int(ok.sum()), "n_tau": int(np.isfinite(tau).sum()),
        "per_task": {"tau": tau, "regret": reg, "top3": hit, "time_s": times},
    }


# ----------------------------------------------------------------------------- CV of selectors
class RankScores(BaseEstimator):
    """A selector's ranking as a score matrix, with the CPU seconds of its fit and ranking.

    ``fit(X, Y)`` fits a clone of ``estimator`` on the extractors with at least one known
    score (``extractor_names`` set to them); ``predict(X)`` returns ``(n_tasks,
    n_extractors + 2)``: per extractor ``n_extractors - position`` in the selector's
    :meth:`rank` (the ranking a user sees; extractors left out of the fit: NaN, ranked
    last), then the fit's CPU seconds and the ranking's CPU seconds per task (one thread,
    :func:`time.process_time`). Made to go through
    :func:`sklearn.model_selection.cross_val_predict`, which returns what ``predict``
    returns.

    Parameters
    ----------
    estimator : selector
        Anything with ``set_params(extractor_names=...)``, ``fit(X, Y)`` and ``rank(X)``.
    extractor_names : list of str
        The columns of ``Y``.
    """

    def __init__(self, estimator: Any = None, extractor_names: Sequence[str] = ()) -> None:
        self.estimator = estimator
        self.extractor_names = extractor_names

    def fit(self, X: Any, Y: np.ndarray) -> RankScores:
        """Fit the selector on the extractors with a known score."""
        names = list(self.extractor_names)
        Y = np.asarray(Y, dtype=np.float64)
        cols = np.flatnonzero(~np.isnan(Y).all(axis=0))
        est = clone(self.estimator).set_params(extractor_names=[names[j] for j in cols])
        t0 = time.process_time()
        est.fit(X, Y[:, cols])
        self.fit_seconds_ = time.process_time() - t0
        self.estimator_ = est
        return self

    def predict(self, X: Any) -> np.ndarray:
        """``n_extractors - position`` per extractor, fit seconds, ranking seconds per task."""
        names = list(self.extractor_names)
        t0 = time.process_time()
        ranked = self.estimator_.rank(X)
        per_task = (time.process_time() - t0) / max(len(ranked), 1)
        index = {n: j for j, n in enumerate(names)}
        m = len(names)
        out = np.full((len(ranked), m + 2), np.nan)
        for i, row in enumerate(ranked):
            for pos, name in enumerate(row):
                out[i, index[name]] = float(m - pos)
        out[:, m], out[:, m + 1] = self.fit_seconds_, per_task
        return out


def cv_rank_scores(estimator: Any, X: Any, data: BenchData, protocol: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A selector's rankings of the held-out tasks of a protocol, and its seconds per task.

    ``loto`` and ``loso`` are :func:`sklearn.model_selection.cross_val_predict` with
    :class:`~sklearn.model_selection.LeaveOneGroupOut` (groups: the task, the source
    dataset); ``lolo`` holds out only the relabel tasks (the others are always known), which
    is not a partition of the tasks, so it loops over :func:`folds` (the same fit and
    ranking per fold).

    Parameters
    ----------
    estimator : selector
        Unfitted (cloned per fold).
    X : ndarray of shape (n_tasks, n_features)
        What the selector sees of every task of ``data``.
    data : BenchData
    protocol : {"loto", "loso", "lolo"}

    Returns
    -------
    scores : ndarray of shape (n_held_out, n_extractors)
        Rows in :func:`folds` order (held-out tasks fold by fold); ``n_extractors -
        position`` in the predicted ranking.
    seconds : ndarray of shape (n_held_out,)
        CPU seconds per task: the fit on the known tasks (in full) + the ranking.
    """
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict

    X = np.asarray(X)
    m = data.n_extractors
    wrapped = RankScores(estimator, list(data.extractor_names))
    if protocol in ("loto", "loso"):
        test_all = held_out(data, protocol)
        groups = np.arange(len(data)) if protocol == "loto" else data.source
        out = cross_val_predict(wrapped, X, data.scores, groups=groups,
                                cv=LeaveOneGroupOut())[test_all]
    else:
        parts = []
        for _, test, known in folds(data, protocol):
            fitted = clone(wrapped).fit(X[known], data.scores[known])
            parts.append(fitted.predict(X[test]))
        out = np.vstack(parts)
    return out[:, :m], out[:, m] + out[:, m + 1]


# ----------------------------------------------------------------------------- transferability
#: The one feature cache of the benchmarks: every script that needs a candidate's features
#: of a task goes through :func:`t2v_automl.transferability.task_features` with this
#: location (through :class:`~t2v_automl.estimators.TransferabilitySelector`), so a
#: feature computed once serves every benchmark.
FEATURE_CACHE = Path(__file__).resolve().parent / ".cache" / "features"

#: The transferability rows of the selection benchmark, in table order: LogME, the closest
#: challenger of the small-task benchmark (issue 16: LogME on 64 principal components),
#: and the classic scores.
MEASURES = ("logme", "logme_pca", "leep", "nce", "h_score", "knn_accuracy")


def feature_memory(location: Path | str | None = None) -> Any:
    """The joblib ``Memory`` of :data:`FEATURE_CACHE` (or of ``location``)."""
    from joblib import Memory

    return Memory(str(location or FEATURE_CACHE), verbose=0)


def transferability_selector(measure: str = "logme", extractors: Sequence[str] | None = None,
                             input_size: int | None = 64, memory: Any = None) -> Any:
    """The product's :class:`~t2v_automl.estimators.TransferabilitySelector`, fitted.

    Its defaults (at most 500 training images per task, class-stratified, seed 0; batch
    128; CPU) on the shared feature cache (:func:`feature_memory` unless ``memory``).
    """
    from t2v_automl.estimators import TransferabilitySelector

    est = TransferabilitySelector(measure=measure,
                                  extractors=None if extractors is None else list(extractors),
                                  input_size=input_size,
                                  memory=feature_memory() if memory is None else memory)
    return est.fit()


def task_transferability(task: Any, extractors: Sequence[str], input_size: int | None = 64,
                         memory: Any = None, measures: Sequence[str] = MEASURES
                         ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every measure of every candidate on one task, by the product's estimator.

    Parameters
    ----------
    task : Task
        The task's training split (what a user has).
    extractors : sequence of str
    input_size : int or None, default=64
    memory : joblib.Memory, optional
        Default: :func:`feature_memory`.
    measures : sequence of str, default=MEASURES

    Returns
    -------
    scores : dict of str to ndarray of shape (n_extractors,)
    seconds : dict of str to float
        Per measure, seconds summed over the candidates
        (``TransferabilitySelector.predict_scores(..., return_times=True)``: the features'
        compute time, that of the run which computed them when they come from the cache,
        plus the score's).
    """
    mem = feature_memory() if memory is None else memory
    scores, seconds = {}, {}
    for m in measures:
        s, t = transferability_selector(m, extractors, input_size, mem).predict_scores(
            [task], return_times=True)
        scores[m], seconds[m] = np.asarray(s[0], dtype=np.float64), float(np.sum(t[0]))
    return scores, seconds


def transfer_inputs(data: BenchData, suite: str, seed: int, input_size: int,
                    memory: Any = None, log: Callable[[str], None] = print) -> None:
    """Meta-features, training splits and transferability scores of every task (in place).

    The tasks are rebuilt with :func:`t2v_automl.suites.iter_suite` (the suite and seed of
    the knowledge base) and matched by name; the transferability scores come from
    :func:`task_transferability` (the product's estimator on the shared feature cache:
    features missing there are computed and stored).

    Parameters
    ----------
    data : BenchData
        Filled in: ``meta_features``, ``meta_time``, ``tasks`` and ``transfer``.
    suite, seed : str, int
    input_size : int
        Input size of the resizable extractors (that of the brute force).
    memory : joblib.Memory, str or Path, optional
        The feature cache; default :data:`FEATURE_CACHE`.
    log : callable
    """
    from t2v_automl.estimators import meta_features
    from t2v_automl.suites import iter_suite

    mem = memory if memory is not None and not isinstance(memory, str | Path) \
        else feature_memory(memory)
    index = {n: i for i, n in enumerate(data.task_names)}
    n, m = len(data), data.n_extractors
    meta = np.full((n, 4), np.nan)
    meta_t = np.full(n, np.nan)
    scores = {k: np.full((n, m), np.nan) for k in MEASURES}
    secs = {k: np.full(n, np.nan) for k in MEASURES}
    t_start = time.perf_counter()
    done = 0
    for st in iter_suite(suite, seed):
        i = index.get(st.name)
        if i is None:
            continue
        task = st.train
        data.tasks[st.name] = task
        t0 = time.process_time()
        meta[i] = meta_features(task)
        meta_t[i] = time.process_time() - t0
        sc, se = task_transferability(task, data.extractor_names, input_size, mem)
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
    data.transfer = {k: (scores[k], secs[k]) for k in MEASURES}
    log(f"transferability scores for {done}/{n} tasks "
        f"({time.perf_counter() - t_start:.0f}s)")


def task_inputs(data: BenchData, suite: str, seed: int,
                log: Callable[[str], None] = print) -> None:
    """Only the training splits of every task (``data.tasks``), rebuilt from the suite.

    What :func:`transfer_inputs` does first, without any transferability score: for
    ``selection.py --lazy-transfer``, where the hybrid computes LogME itself (on the shared
    feature cache) for the tasks its gate sends to it.
    """
    from t2v_automl.suites import iter_suite

    wanted = set(data.task_names)
    t0 = time.perf_counter()
    for st in iter_suite(suite, seed, tasks=sorted(wanted)):
        data.tasks[st.name] = st.train
    missing = sorted(wanted - set(data.tasks))
    if missing:
        raise RuntimeError(f"{len(missing)} knowledge-base task(s) not found in suite "
                           f"{suite!r} seed {seed}: {missing[:3]}...")
    log(f"rebuilt {len(data.tasks)} training splits ({time.perf_counter() - t0:.0f}s)")


# ----------------------------------------------------------------------------- held-out draws
def select_tasks(meta: Sequence[dict[str, Any]], n_subset: int, n_relabel: int,
                 seed: int = 0) -> list[str]:
    """Held-out tasks spread over the source datasets (deterministic; the warm-start draw).

    Parameters
    ----------
    meta : sequence of mapping
        Per suite task: ``name``, ``kind`` (``"subset"`` or ``"relabel"``) and
        ``source_dataset``.
    n_subset, n_relabel : int
        Tasks of each kind drawn per source dataset (fewer where a source has fewer).
    seed : int
        Seeds the draw.

    Returns
    -------
    list of str
        Task names, grouped by source dataset in first-seen order.
    """
    rng = np.random.default_rng(seed)
    sources = list(dict.fromkeys(m["source_dataset"] for m in meta))
    out: list[str] = []
    for src in sources:
        for kind, k in (("subset", n_subset), ("relabel", n_relabel)):
            cands = [m["name"] for m in meta if m["source_dataset"] == src and m["kind"] == kind]
            if cands and k > 0:
                pick = np.sort(rng.choice(len(cands), size=min(k, len(cands)), replace=False))
                out += [cands[i] for i in pick]
    return out


def draw_tasks(meta: Sequence[dict[str, Any]], n_subset: int, n_relabel: int,
               seeds: Sequence[int]) -> list[str]:
    """The union of :func:`select_tasks` over ``seeds``, grouped by source dataset.

    Within a source dataset, the tasks keep the order of their first draw. The held-out
    tasks of ``benchmarks/warm_start.py`` (``--task-seeds``) and of
    ``benchmarks/transfer_estimators.py``.
    """
    drawn = list(dict.fromkeys(t for s in seeds
                               for t in select_tasks(meta, n_subset, n_relabel, s)))
    source = {m["name"]: m["source_dataset"] for m in meta}
    order = list(dict.fromkeys(m["source_dataset"] for m in meta))
    return sorted(drawn, key=lambda t: order.index(source[t]))


# ----------------------------------------------------------------------------- build outputs
def save_correct(path: Path, rows: Sequence[dict[str, Any]], extractors: Sequence[str],
                 eval_time: np.ndarray, extract_time: np.ndarray,
                 build: dict[str, Any]) -> None:
    """Write the per-task correctness arrays, raw timings and build settings (npz).

    ``rows`` are the per-task rows of a :class:`t2v_automl.building.KnowledgeBuild`
    (``correct``, ``y_test``, ``scores``, ``stderr``, ``extract_time``, ``fit_time``,
    ``input_size``, ``name``, ``kind``, ``provenance``, ``n_classes``, ``n_train``), what
    ``benchmarks/knowledge_report.py`` reads.
    """
    arrays: dict[str, np.ndarray] = {}
    for i, r in enumerate(rows):
        arrays[f"correct_{i}"] = np.packbits(r["correct"], axis=1)
        arrays[f"y_test_{i}"] = r["y_test"].astype(np.int16)
    arrays["scores"] = np.stack([r["scores"] for r in rows])
    arrays["stderr"] = np.stack([r["stderr"] for r in rows])
    arrays["eval_time"] = np.asarray(eval_time)
    arrays["extract_time"] = np.asarray(extract_time)
    arrays["extract_time_raw"] = np.stack([r["extract_time"] for r in rows])
    arrays["fit_time"] = np.stack([r["fit_time"] for r in rows])
    arrays["input_size"] = np.stack([r["input_size"] for r in rows])
    meta = {"task_names": [r["name"] for r in rows], "extractor_names": list(extractors),
            "n_test": [int(r["y_test"].shape[0]) for r in rows],
            "kind": [r["kind"] for r in rows],
            "source_dataset": [r["provenance"].get("source_dataset") for r in rows],
            "pool": [r["provenance"].get("pool") for r in rows],
            "label_function": [r["provenance"].get("label_function") for r in rows],
            "n_classes": [int(r["n_classes"]) for r in rows],
            "n_train": [int(r["n_train"]) for r in rows],
            "build": build,
            "doc": "correct_i: np.packbits(bool (n_extractors, n_test), axis=1); unpack with "
                   "np.unpackbits(a, axis=1, count=n_test[i]).astype(bool). y_test_i: the "
                   "test label codes of task i. Times in seconds."}
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)


def load_correct(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read what :func:`save_correct` wrote: its metadata and per-task rows (``correct``,
    ``y_test``, ``scores``, ``stderr``, ``extract_time``, ``fit_time``, ``input_size``)."""
    import json

    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["__meta__"].tobytes().decode())
        rows = []
        for i, n in enumerate(meta["n_test"]):
            rows.append({"correct": np.unpackbits(z[f"correct_{i}"], axis=1,
                                                  count=n).astype(bool),
                         "y_test": z[f"y_test_{i}"].astype(np.int64),
                         "scores": z["scores"][i], "stderr": z["stderr"][i],
                         "extract_time": z["extract_time_raw"][i],
                         "fit_time": z["fit_time"][i], "input_size": z["input_size"][i],
                         "eval_time": z["eval_time"][i],
                         "extract_time_pool": z["extract_time"][i]})
    return meta, rows
