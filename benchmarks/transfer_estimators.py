"""Benchmark: does another cheap transferability estimator beat LogME on unseen datasets?

Why (issue 5)
-------------
On tasks whose source dataset the knowledge base has never seen (leave one source dataset
out), the default ``HybridSelector`` ranks the extractors by LogME alone, and ties LogME
(``benchmarks/results/selection.md``). Its known-task half cannot help there, so the only
way to beat LogME on such tasks is a better estimate from the task's own images. This
benchmark asks whether one exists among the estimators of the literature that cost about
what LogME costs (one forward pass of each candidate over the training images, then
something cheap), and whether LogME plus another one beats LogME alone.

Setting
-------
Tasks: the held-out tasks of ``benchmarks/warm_start.py`` (its task draws
``--task-seeds``, duplicates removed; ``_common.draw_tasks``). Features: the training
split of each task through every candidate at 64 px, by the product's one feature path,
:func:`t2v_automl.transferability.task_features`, on the benchmarks' shared cache
``benchmarks/.cache/features`` (the features ``TransferabilitySelector`` and the selection
benchmark's LogME read; missing ones are computed and stored). Truth: the shipped
knowledge base's score of every extractor on the task (the standardised
logistic-regression probe, C = 1, on the task's test split). Every estimator sees only
the training split.

Estimators (higher = better):

``LogME``, ``kNN accuracy``
    :func:`t2v_automl.transferability.logme` and
    :func:`~t2v_automl.transferability.knn_accuracy` (k = 5), as in the selection
    benchmark.
``probe CV``
    The direct estimate: 3-fold stratified cross-validated accuracy (fewer folds when a
    class has fewer images) of the very probe that defines the truth, ties broken by its
    mean held-out log-likelihood.
``LDA log-likelihood``
    Linear discriminant analysis with Ledoit-Wolf shrinkage on the standardised
    features; the mean log-probability of the true labels (the Fisher-discriminant idea
    of SFDA, Huang et al. 2022, without its self-challenging step).
``NLEEP``
    Li et al. 2021: PCA to 80 % of the variance, a diagonal Gaussian mixture with five
    components per class, LEEP (:func:`~t2v_automl.transferability.leep`) on its
    posteriors.
``TransRate``
    Huang et al. 2022: coding rate of the features minus the class-weighted coding rate
    within each class (``eps`` 1e-4, features centred and scaled to unit mean norm). The
    rate grows with the feature dimension, which differs between the candidates (128 to
    1,280 values here), so like H-score it is not comparable across extractors without a
    projection to a common size; it is kept as measured.
``LogME + X``
    The sum of LogME and X after z-scoring each over the extractors of the task.

Measures: per task, top-1 regret (accuracy points lost by the top pick against the
task's best extractor) and weighted Kendall tau (as ``ExtractorSelector.score``); means
with a percentile bootstrap CI over tasks (2000 resamples) and the paired regret
difference to LogME; seconds per task for all 13 candidates (features excluded: every
estimator needs the same forward passes).

Usage::

    python benchmarks/transfer_estimators.py --n-jobs 2

Writes ``benchmarks/results/transfer_estimators.{md,json}``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# the benchmarks are scripts, not a package: the shared helpers are imported from the
# script's own folder
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    bootstrap_ci,
    draw_tasks,
    feature_memory,
    machine,
    machine_line,
    md_table,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]


def _standardise(F: np.ndarray) -> np.ndarray:
    F = np.asarray(F, dtype=np.float64)
    return (F - F.mean(axis=0)) / np.maximum(F.std(axis=0), 1e-12)


def probe_cv(features: np.ndarray, labels: np.ndarray, n_folds: int = 3) -> float:
    """Cross-validated accuracy of the knowledge base's probe (``make_linear_head(1.0)``).

    Ties between equal accuracies are broken by the mean held-out log-likelihood (its
    weight, 1e-3, is below one image's share of the accuracy for up to 1000 images).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from t2v_automl.evaluation import make_linear_head

    y = np.asarray(labels)
    k = int(min(n_folds, np.bincount(y).min()))
    if k < 2:
        return math.nan
    model = make_linear_head(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        P = cross_val_predict(model, np.asarray(features, dtype=np.float64), y,
                              cv=StratifiedKFold(k, shuffle=True, random_state=0),
                              method="predict_proba")
    ll = np.log(np.maximum(P[np.arange(len(y)), y], 1e-12)).mean()
    return float((P.argmax(axis=1) == y).mean() + 1e-3 * ll)


def lda_loglik(features: np.ndarray, labels: np.ndarray) -> float:
    """Mean in-sample log-probability of the true label under shrinkage LDA."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    y = np.asarray(labels)
    model = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
    P = model.fit(_standardise(features), y).predict_proba(_standardise(features))
    return float(np.log(np.maximum(P[np.arange(len(y)), y], 1e-12)).mean())


def nleep(features: np.ndarray, labels: np.ndarray, per_class: int = 5) -> float:
    """NLEEP: LEEP on the posteriors of a Gaussian mixture fitted to PCA features."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    from t2v_automl.transferability import leep

    y = np.asarray(labels)
    Z = PCA(n_components=0.8, random_state=0).fit_transform(_standardise(features))
    k = int(max(2, min(per_class * (int(y.max()) + 1), len(y) // 2)))
    gmm = GaussianMixture(k, covariance_type="diag", reg_covar=1e-3, random_state=0).fit(Z)
    return float(leep(gmm.predict_proba(Z), y))


def transrate(features: np.ndarray, labels: np.ndarray, eps: float = 1e-4) -> float:
    """TransRate: coding rate of all features minus the class-weighted within-class one."""
    y = np.asarray(labels)
    F = np.asarray(features, dtype=np.float64)
    F = F - F.mean(axis=0)
    F = F / max(math.sqrt(float((F ** 2).sum(axis=1).mean())), 1e-12)
    d = F.shape[1]

    def rate(X: np.ndarray) -> float:
        s = np.linalg.svd(X, compute_uv=False)
        return 0.5 * float(np.log1p(d / (X.shape[0] * eps) * s ** 2).sum())

    return rate(F) - sum((y == c).mean() * rate(F[y == c]) for c in np.unique(y))


def estimators() -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """Name -> estimator(features, labels), in report order."""
    from t2v_automl.transferability import knn_accuracy, logme

    return {"LogME": logme, "kNN accuracy": knn_accuracy, "probe CV": probe_cv,
            "LDA log-likelihood": lda_loglik, "NLEEP": nleep, "TransRate": transrate}


def task_scores(features: Sequence[np.ndarray], labels: np.ndarray
                ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every estimator on one task: scores per extractor and seconds for all of them."""
    out, secs = {}, {}
    for name, fn in estimators().items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[name] = np.array([fn(F, labels) for F in features], dtype=np.float64)
        secs[name] = time.perf_counter() - t0
    return out, secs


def combine(scores: dict[str, np.ndarray], base: str = "LogME") -> dict[str, np.ndarray]:
    """``base + X`` for every other estimator X (sum of per-task z-scores).

    Standardised as the hybrid selector standardises before it blends
    (:func:`~t2v_automl.estimators.row_standardise`).
    """
    from t2v_automl.estimators import row_standardise

    return {f"{base} + {k}": row_standardise(scores[base]) + row_standardise(v)
            for k, v in scores.items() if k != base}


def summarise(truth: np.ndarray, scores: dict[str, np.ndarray], n_boot: int = 2000,
              reference: str = "LogME") -> dict[str, dict[str, Any]]:
    """Regret and weighted tau (mean, CI), and the paired regret difference to LogME."""
    from t2v_automl.metrics import top1_regret, weighted_tau

    ref = top1_regret(truth, scores[reference])
    out = {}
    for name, S in scores.items():
        reg = top1_regret(truth, S)
        tau = weighted_tau(truth, S)
        diff = reg - ref
        out[name] = {"regret": float(np.mean(reg)), "regret_ci": bootstrap_ci(reg, n_boot),
                     "regret_median": float(np.median(reg)),
                     "tau": float(np.nanmean(tau)), "tau_ci": bootstrap_ci(tau, n_boot),
                     "diff_vs_reference": float(np.mean(diff)),
                     "diff_ci": bootstrap_ci(diff, n_boot),
                     "per_task_regret": reg}
    return out


def _suite() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``name``, ``kind``, ``source_dataset`` of every default-suite task, and its training
    split by name (one pass over :func:`t2v_automl.suites.iter_suite`)."""
    from t2v_automl.suites import iter_suite

    meta, train = [], {}
    for st in iter_suite("default", seed=0):
        meta.append({"name": st.name, "kind": st.kind,
                     "source_dataset": st.provenance["source_dataset"]})
        train[st.name] = st.train
    return meta, train


def _features(tasks: Sequence[str], names: Sequence[str], input_size: int,
              train: dict[str, Any], memory: Any = None
              ) -> tuple[dict[str, list[np.ndarray]], dict[str, np.ndarray]]:
    """The training features of every task and candidate, from the shared feature cache.

    :func:`t2v_automl.transferability.task_features` of the training split (at most 500
    images, class-stratified, as ``TransferabilitySelector`` takes them: every split here
    is smaller) on :func:`_common.feature_memory`; features not there yet are computed
    and stored.
    """
    from t2v_automl.estimators import TransferabilitySelector
    from t2v_automl.transferability import subsample_task, task_features

    mem = feature_memory() if memory is None else memory
    defaults = TransferabilitySelector().get_params()
    feats, labels = {}, {}
    for t in tasks:
        task = subsample_task(train[t], defaults["max_images"], defaults["random_state"])
        feats[t] = [np.asarray(task_features(name, task, input_size=input_size, memory=mem))
                    for name in names]
        labels[t] = np.asarray(task.labels)
    return feats, labels


def _one_task(features: list[np.ndarray], labels: np.ndarray
              ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return task_scores(features, labels)


def render(data: dict[str, Any]) -> str:
    """The Markdown report."""
    res = data["summary"]
    rows = []
    for name, r in res.items():
        d = ("" if name == "LogME" else
             f"{r['diff_vs_reference']:+.2f} [{r['diff_ci'][0]:+.2f}, {r['diff_ci'][1]:+.2f}]")
        secs = data["seconds_per_task"].get(name)
        rows.append([name, f"{r['regret']:.2f} [{r['regret_ci'][0]:.2f}, "
                           f"{r['regret_ci'][1]:.2f}]", f"{r['regret_median']:.2f}",
                     f"{r['tau']:.3f} [{r['tau_ci'][0]:.3f}, {r['tau_ci'][1]:.3f}]", d,
                     "" if secs is None else f"{secs:.2f}"])
    best = min(res, key=lambda k: res[k]["regret"])
    better = [k for k, r in res.items() if k != "LogME" and r["diff_ci"][1] < 0]
    lines = [
        "# Transferability estimators on datasets the knowledge base has never seen",
        "",
        machine_line(data["machine"], data["command"]),
        "",
        f"{data['n_tasks']} tasks (the held-out tasks of `benchmarks/warm_start.py`, task "
        f"draws {data['settings']['task_seeds']}), {len(data['extractors'])} extractors. "
        "Truth: the knowledge base's scores (the probe at C = 1 on the test split); every "
        "estimator sees only the training split's features (64 px). Regret in accuracy "
        "points, mean [95 % bootstrap CI over tasks]; paired difference = estimator minus "
        "LogME (negative = better than LogME). Seconds: all candidates of one task, "
        "features excluded, one thread. See the script's docstring for the estimators.",
        "",
        md_table(["estimator", "regret", "median regret", "weighted tau",
                  "regret minus LogME", "seconds / task"], rows),
        "",
        f"Lowest mean regret: **{best}**. Significantly better than LogME (CI of the paired "
        f"difference below zero): {', '.join(better) if better else '**none**'}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task-seeds", type=int, nargs="+", default=[0, 1],
                    help="task draws of benchmarks/warm_start.py (union of their tasks)")
    ap.add_argument("--n-subset", type=int, default=4)
    ap.add_argument("--n-relabel", type=int, default=1)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--name", default="transfer_estimators")
    args = ap.parse_args(argv)

    import torch
    from joblib import Parallel, delayed

    from t2v_automl.knowledge import KnowledgeBase

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    kb = KnowledgeBase.default()
    names = list(kb.extractor_names)
    meta, train = _suite()
    tasks = draw_tasks(meta, args.n_subset, args.n_relabel, args.task_seeds)
    feats, labels = _features(tasks, names, args.input_size, train)
    out = Parallel(n_jobs=args.n_jobs)(delayed(_one_task)(feats[t], labels[t]) for t in tasks)
    scores = {k: np.stack([o[0][k] for o in out]) for k in out[0][0]}
    scores.update(combine(scores))
    secs = {k: float(np.mean([o[1][k] for o in out])) for k in out[0][1]}
    truth = np.stack([kb.scores[kb.index(t)] for t in tasks])
    data = {
        "settings": vars(args),
        "machine": machine(),
        "command": "python benchmarks/transfer_estimators.py" + "".join(
            f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
        "n_tasks": len(tasks), "tasks": tasks, "extractors": names,
        "summary": summarise(truth, scores),
        "seconds_per_task": secs,
        "scores": {k: np.round(v, 6) for k, v in scores.items()},
        "total_seconds": time.perf_counter() - t_start,
    }
    write_results(args.name, data, render(data))
    print(f"wrote benchmarks/results/{args.name}.{{md,json}} in "
          f"{time.perf_counter() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
