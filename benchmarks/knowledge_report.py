"""Report on the default knowledge base: does the choice of extractor matter?

Reads what ``benchmarks/build_knowledge.py`` wrote, the per-test-image correctness arrays
(``benchmarks/results/knowledge_correct.npz``) and the knowledge base
(``t2v_automl/data/knowledge_default.npz``, for the embedding times), and writes
``benchmarks/results/knowledge.md`` and the same numbers in ``knowledge.json``:

- how often each extractor is the best (ties split), and its mean score;
- whether one extractor is best on more than half of the tasks;
- the gain of the per-task best extractor over the best single fixed extractor,
  **out of sample**: each task's test images are split into two stratified halves (several
  random splits, both directions); the per-task best is chosen on one half and scored on
  the other, and so is the fixed extractor (the best mean on the first halves of all tasks).
  Ties in the choice are broken uniformly at random (the expected score is used). A
  bootstrap over tasks gives the 95 % confidence interval; the fixed extractor is chosen
  again within each bootstrap sample. Broken down by source dataset and by task kind;
- a cost table: evaluating extractors vs embedding the task once.

Usage::

    python benchmarks/knowledge_report.py
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORRECT = ROOT / "benchmarks" / "results" / "knowledge_correct.npz"
DEFAULT_KB = ROOT / "t2v_automl" / "data" / "knowledge_default.npz"
DEFAULT_MD = ROOT / "benchmarks" / "results" / "knowledge.md"
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "knowledge.json"


# ----------------------------------------------------------------------------- loading
def load_correct(path: Path) -> dict[str, Any]:
    """Read the correctness file written by ``build_knowledge.py``.

    Returns
    -------
    dict
        ``meta`` (the JSON), ``correct`` (list of bool arrays ``(n_extractors, n_test)``),
        ``y`` (list of label arrays) and the timing matrices.
    """
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["__meta__"].tobytes().decode())
        n = len(meta["task_names"])
        correct = [np.unpackbits(z[f"correct_{i}"], axis=1,
                                 count=meta["n_test"][i]).astype(bool) for i in range(n)]
        y = [z[f"y_test_{i}"].astype(np.int64) for i in range(n)]
        out = {"meta": meta, "correct": correct, "y": y}
        for key in ("scores", "stderr", "eval_time", "extract_time", "extract_time_raw",
                    "fit_time", "input_size"):
            out[key] = z[key]
    return out


# ----------------------------------------------------------------------------- statistics
def best_counts(scores: np.ndarray) -> np.ndarray:
    """How often each column is the row maximum, ties split evenly."""
    top = scores == scores.max(axis=1, keepdims=True)
    return (top / top.sum(axis=1, keepdims=True)).sum(axis=0)


def tie_weights(scores: np.ndarray) -> np.ndarray:
    """Per row, weight ``1/k`` on each of the ``k`` columns that tie for the maximum."""
    top = np.isclose(scores, scores.max(axis=-1, keepdims=True), rtol=0, atol=1e-12)
    return top / top.sum(axis=-1, keepdims=True)


def half_scores(correct: list[np.ndarray], y: list[np.ndarray], n_splits: int, seed: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Scores on two stratified halves of each task's test set, for several splits.

    Returns
    -------
    a, b : ndarray of shape (n_splits, n_tasks, n_extractors)
        Accuracies on the first and on the second half.
    """
    rng = np.random.default_rng(seed)
    n_tasks, n_ext = len(correct), correct[0].shape[0]
    a = np.empty((n_splits, n_tasks, n_ext))
    b = np.empty_like(a)
    for r in range(n_splits):
        for t, (c, labels) in enumerate(zip(correct, y, strict=True)):
            first = np.zeros(labels.shape[0], dtype=bool)
            for k in np.unique(labels):
                idx = rng.permutation(np.flatnonzero(labels == k))
                m = idx.shape[0] // 2 + int(idx.shape[0] % 2 and rng.random() < 0.5)
                first[idx[:m]] = True
            a[r, t] = c[:, first].mean(axis=1)
            b[r, t] = c[:, ~first].mean(axis=1)
    return a, b


def oos_gain(a: np.ndarray, b: np.ndarray, tasks: np.ndarray | None = None,
             fixed_tasks: np.ndarray | None = None) -> dict[str, Any]:
    """Out-of-sample gain of the per-task best over the best fixed extractor.

    Parameters
    ----------
    a, b : ndarray of shape (n_splits, n_tasks, n_extractors)
        Half scores: choose on ``a``, score on ``b`` (pass both orders to use both).
    tasks : ndarray of int, optional
        The tasks scored (default all).
    fixed_tasks : ndarray of int, optional
        The tasks on which the fixed extractor is chosen (default: ``tasks``).

    Returns
    -------
    dict
        ``gain`` (points), ``per_task`` (gain per task, averaged over splits),
        ``oracle`` and ``fixed`` (mean held-out scores), ``fixed_choice`` (extractor index
        chosen most often).
    """
    n_tasks = a.shape[1]
    tasks = np.arange(n_tasks) if tasks is None else tasks
    fixed_tasks = tasks if fixed_tasks is None else fixed_tasks
    chosen = (tie_weights(a[:, tasks]) * b[:, tasks]).sum(axis=-1)  # (R, T)
    j = a[:, fixed_tasks].mean(axis=1).argmax(axis=-1)  # (R,)
    fixed = np.take_along_axis(b[:, tasks], j[:, None, None], axis=2)[..., 0]
    per_task = (chosen - fixed).mean(axis=0)
    return {"gain": 100 * float(per_task.mean()), "per_task": per_task,
            "oracle": 100 * float(chosen.mean()), "fixed": 100 * float(fixed.mean()),
            "fixed_choice": int(np.bincount(j).argmax())}


def bootstrap_gain(a: np.ndarray, b: np.ndarray, tasks: np.ndarray, n_boot: int, seed: int,
                   fixed_global: bool) -> tuple[float, float]:
    """95 % bootstrap interval (over tasks) of the out-of-sample gain, in points.

    The fixed extractor is re-chosen in each bootstrap sample: on the resampled tasks
    (``fixed_global=False``), or on all tasks (``True``: a global choice, as in the
    overall figure, scored on a group of tasks).
    """
    rng = np.random.default_rng(seed)
    chosen = (tie_weights(a) * b).sum(axis=-1)  # (R, T)
    gains = np.empty(n_boot)
    all_tasks = np.arange(a.shape[1])
    for i in range(n_boot):
        idx = rng.choice(tasks, tasks.shape[0], replace=True)
        pick = rng.choice(all_tasks, all_tasks.shape[0], replace=True) if fixed_global \
            else idx
        j = a[:, pick].mean(axis=1).argmax(axis=-1)
        fixed = np.take_along_axis(b[:, idx], j[:, None, None], axis=2)[..., 0]
        gains[i] = (chosen[:, idx] - fixed).mean()
    lo, hi = np.percentile(gains, [2.5, 97.5])
    return 100 * float(lo), 100 * float(hi)


def group_oos(a: np.ndarray, b: np.ndarray, tasks: np.ndarray, n_boot: int, seed: int
              ) -> dict[str, Any]:
    """Gain within a group of tasks: vs the global fixed choice and vs the group's own."""
    glob = oos_gain(a, b, tasks=tasks, fixed_tasks=np.arange(a.shape[1]))
    own = oos_gain(a, b, tasks=tasks)
    return {
        "n_tasks": int(tasks.shape[0]),
        "gain_vs_global_fixed": glob["gain"],
        "ci_vs_global_fixed": bootstrap_gain(a, b, tasks, n_boot, seed, fixed_global=True),
        "gain_vs_group_fixed": own["gain"],
        "ci_vs_group_fixed": bootstrap_gain(a, b, tasks, n_boot, seed, fixed_global=False),
        "group_fixed_choice": own["fixed_choice"],
        "oracle": glob["oracle"], "global_fixed": glob["fixed"],
    }


def within_group_gain(a: np.ndarray, b: np.ndarray, groups: list[str], tasks: np.ndarray,
                      n_boot: int, seed: int) -> dict[str, Any]:
    """Gain of the per-task best over the best extractor of the task's group.

    The group's extractor is chosen on the first halves of all the group's tasks (among
    ``tasks``). With image pools as groups (relabel tasks) this is what knowing the label
    function adds over knowing the images; with source datasets, what choosing per task
    adds over knowing the dataset.
    """
    pools = groups
    chosen = (tie_weights(a) * b).sum(axis=-1)  # (R, T)
    by_pool: dict[str, list[int]] = {}
    for t in tasks:
        by_pool.setdefault(pools[t], []).append(int(t))
    diff = np.zeros((a.shape[0], a.shape[1]))
    for idx in by_pool.values():
        j = a[:, idx].mean(axis=1).argmax(axis=-1)
        fixed = np.take_along_axis(b[:, idx], j[:, None, None], axis=2)[..., 0]
        diff[:, idx] = chosen[:, idx] - fixed
    per_task = diff[:, tasks].mean(axis=0)
    rng = np.random.default_rng(seed)
    boots = [per_task[rng.integers(0, per_task.shape[0], per_task.shape[0])].mean()
             for _ in range(n_boot)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"n_tasks": int(tasks.shape[0]), "n_pools": len(by_pool),
            "gain_vs_pool_fixed": 100 * float(per_task.mean()),
            "ci": (100 * float(lo), 100 * float(hi)),
            "note": "group's extractor chosen on the first halves of the group's tasks; the "
                    "interval resamples tasks with the group choices held fixed"}


# ----------------------------------------------------------------------------- report
def analyse(data: dict[str, Any], kb_path: Path | None, n_splits: int, n_boot: int,
            seed: int) -> dict[str, Any]:
    """Compute every number of the report."""
    meta = data["meta"]
    names: list[str] = meta["extractor_names"]
    scores = np.stack([c.mean(axis=1) for c in data["correct"]])
    n_tasks, n_ext = scores.shape
    kinds = np.asarray(meta["kind"])
    sources = np.asarray(meta["source_dataset"])

    counts = best_counts(scores)
    by_source = {s: {n: float(c) for n, c in zip(names, best_counts(scores[sources == s]),
                                                  strict=True)}
                 for s in sorted(set(sources))}
    by_kind = {k: {n: float(c) for n, c in zip(names, best_counts(scores[kinds == k]),
                                                strict=True)}
               for k in sorted(set(kinds))}
    n_ties = int(((scores == scores.max(axis=1, keepdims=True)).sum(axis=1) > 1).sum())
    mean = scores.mean(axis=0)
    ranks = (-scores).argsort(axis=1).argsort(axis=1) + 1
    fixed_in = int(mean.argmax())
    in_sample_gain = 100 * float(scores.max(axis=1).mean() - mean[fixed_in])

    a, b = half_scores(data["correct"], data["y"], n_splits, seed)
    a2, b2 = np.concatenate([a, b]), np.concatenate([b, a])  # both directions
    all_tasks = np.arange(n_tasks)
    overall = oos_gain(a2, b2)
    ci = bootstrap_gain(a2, b2, all_tasks, n_boot, seed, fixed_global=False)

    groups: dict[str, dict[str, Any]] = {}
    for label, mask in ([(f"kind={k}", kinds == k) for k in sorted(set(kinds))]
                        + [(f"source={s}", sources == s) for s in sorted(set(sources))]):
        g = group_oos(a2, b2, np.flatnonzero(mask), n_boot, seed)
        g["group_fixed_choice"] = names[g["group_fixed_choice"]]
        groups[label] = g
    relabel = np.flatnonzero(kinds == "relabel")
    pool_gain = within_group_gain(a2, b2, meta["pool"], relabel, n_boot, seed) \
        if relabel.size else None
    source_gain = within_group_gain(a2, b2, list(sources), all_tasks, n_boot, seed)

    # costs
    eval_time = data["eval_time"]
    per_task_all = eval_time.sum(axis=1)
    cost: dict[str, Any] = {
        "median_one_extractor_one_task_s": float(np.median(eval_time)),
        "median_all_extractors_one_task_s": float(np.median(per_task_all)),
        "per_extractor_median_s": {n: float(np.median(eval_time[:, j]))
                                   for j, n in enumerate(names)},
        "total_brute_force_s": float(eval_time.sum()),
        "total_brute_force_as_built_s": float(data["extract_time_raw"].sum()
                                              + data["fit_time"].sum()),
    }
    if kb_path is not None and kb_path.is_file():
        from t2v_automl.knowledge import KnowledgeBase

        kb = KnowledgeBase.load(kb_path)
        if kb.task_names != meta["task_names"]:
            raise SystemExit(f"{kb_path} and the correctness file list different tasks; "
                             "rebuild both with build_knowledge.py")
        et = kb.embed_time
        cost["embedding"] = {"meta": kb.meta.to_dict(),
                             "median_s": float(np.nanmedian(et)),
                             "total_s": float(np.nansum(et))}
        extra_t = {k: [p["extra_embed_time_s"][k] for p in kb.provenance]
                   for k in kb.extra_names}
        cost["extra_embeddings_median_s"] = {k: float(np.median(v)) for k, v in extra_t.items()}
        cost["ratio_all_extractors_to_embedding"] = float(np.median(per_task_all / et))
        cost["ratio_one_extractor_to_embedding"] = float(
            np.median(np.median(eval_time, axis=1) / et))
        cost["knowledge_file_bytes"] = kb_path.stat().st_size
        cost["embedding_dims"] = {"main": kb.meta.dim,
                                  **{k: kb.extra_embeddings(k)[0].dim for k in kb.extra_names}}

    return {
        "n_tasks": n_tasks, "n_extractors": n_ext, "extractors": names,
        "n_tasks_by_kind": {k: int((kinds == k).sum()) for k in sorted(set(kinds))},
        "n_tasks_by_source": {s: int((sources == s).sum()) for s in sorted(set(sources))},
        "n_test_median": float(np.median(meta["n_test"])),
        "n_test_range": [int(min(meta["n_test"])), int(max(meta["n_test"]))],
        "median_stderr_points": 100 * float(np.median(data["stderr"])),
        "best_count": {n: float(c) for n, c in zip(names, counts, strict=True)},
        "best_count_by_source": by_source,
        "best_count_by_kind": by_kind,
        "best_share": {n: float(c / n_tasks) for n, c in zip(names, counts, strict=True)},
        "mean_score": {n: 100 * float(m) for n, m in zip(names, mean, strict=True)},
        "mean_rank": {n: float(r) for n, r in zip(names, ranks.mean(axis=0), strict=True)},
        "tasks_with_ties_for_best": n_ties,
        "max_best_share": float(counts.max() / n_tasks),
        "no_extractor_best_on_more_than_half": bool(counts.max() <= n_tasks / 2),
        "in_sample": {"oracle": 100 * float(scores.max(axis=1).mean()),
                      "best_fixed": names[fixed_in], "best_fixed_mean": 100 * float(mean[fixed_in]),
                      "gain": in_sample_gain},
        "out_of_sample": {"n_splits": n_splits, "directions": 2, "n_bootstrap": n_boot,
                          "seed": seed, "gain": overall["gain"], "ci95": ci,
                          "oracle_heldout": overall["oracle"],
                          "fixed_heldout": overall["fixed"],
                          "fixed_choice": names[overall["fixed_choice"]],
                          "goal_2_points_met": bool(overall["gain"] >= 2.0),
                          "by_group": groups, "relabel_within_pool": pool_gain,
                          "within_source_dataset": source_gain},
        "cost": cost,
        "build": meta.get("build", {}),
    }


def _fmt_ci(ci: Any) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def to_markdown(r: dict[str, Any]) -> str:
    """The report as Markdown."""
    build = r["build"]
    mach = build.get("machine", {})
    st = build.get("settings", {})
    oos = r["out_of_sample"]
    lines = [
        "# " + build.get("title", "The default knowledge base: does the choice of extractor "
                                  "matter?"),
        "",
        f"{r['n_tasks']} tasks of "
        + build.get("tasks_text", f"`make_suite({st.get('suite', 'default')!r}, "
                                  f"seed={st.get('seed', 0)})`") + " ("
        + ", ".join(f"{v} {k}" for k, v in r["n_tasks_by_kind"].items()) + "; "
        + ", ".join(f"{s} {n}" for s, n in r["n_tasks_by_source"].items())
        + f") x {r['n_extractors']} extractors. Score = test accuracy of a logistic-regression "
        f"probe (C={st.get('C')}) on frozen features; resizable networks (ImageNet, dogs) at "
        f"{st.get('input_size')} px (fixed-size extractors at their native size). Test split "
        f"of subset tasks capped at {st.get('test_cap_subset_tasks')} images (stratified); "
        f"test images per task: median {r['n_test_median']:.0f}, range "
        f"{r['n_test_range'][0]}-{r['n_test_range'][1]}; median standard error of a score "
        f"{r['median_stderr_points']:.1f} points.",
        "",
        f"Machine: {mach.get('cpu', '?')}, "
        f"{mach.get('logical_cpus', mach.get('cpu_count', '?'))} logical CPUs shared "
        f"with other work, GPU: {mach.get('cuda') or 'none'}; one thread "
        f"(torch {mach.get('torch', '?')}, Python {mach.get('python', '?')}). Built "
        f"{build.get('date', '?')} with t2v-automl {build.get('t2v_automl', '?')}.",
        "",
        "Build wall time: evaluation phase "
        f"{build.get('evaluation_phase_wall_s', float('nan')) / 60:.0f} min ("
        f"{build.get('evaluation_tasks_computed', '?')} tasks computed in that run, the others "
        f"read from the cache), embedding phase "
        f"{build.get('embedding_phase_wall_s', float('nan')) / 60:.0f} min."
        + "".join(f" {n}" for n in build.get("notes", [])),
        "",
        build.get("reproduce", "Reproduce: `python benchmarks/build_knowledge.py && python "
                  "benchmarks/knowledge_report.py` (the build resumes from "
                  "`benchmarks/.cache/`; `--embed-only` re-embeds from cached scores)."),
        "",
        "## Which extractor is best",
        "",
        "| extractor | best on (tasks, ties split) | share | mean score | mean rank |",
        "|---|---:|---:|---:|---:|",
    ]
    order = sorted(r["extractors"], key=lambda n: -r["mean_score"][n])
    for n in order:
        lines.append(f"| {n} | {r['best_count'][n]:.1f} | {100 * r['best_share'][n]:.1f} % | "
                     f"{r['mean_score'][n]:.2f} | {r['mean_rank'][n]:.1f} |")
    groups = [*r["best_count_by_kind"].items(), *r["best_count_by_source"].items()]
    lines += ["", "Best on (tasks, ties split), by task kind and by source dataset:", "",
              "| extractor | " + " | ".join(g for g, _ in groups) + " |",
              "|---|" + "---:|" * len(groups)]
    for n in order:
        lines.append(f"| {n} | " + " | ".join(f"{c[n]:.1f}" for _, c in groups) + " |")
    verdict = "holds" if r["no_extractor_best_on_more_than_half"] else "does NOT hold"
    lines += [
        "",
        f"No single extractor is best on more than half of the tasks: **{verdict}** (largest "
        f"share {100 * r['max_best_share']:.1f} %). {r['tasks_with_ties_for_best']} tasks have "
        f"a tie for the best score.",
        "",
        "## Gain of the per-task best over the best fixed extractor",
        "",
        f"In sample (chosen and scored on the same test images): per-task best "
        f"{r['in_sample']['oracle']:.2f} vs {r['in_sample']['best_fixed']} "
        f"{r['in_sample']['best_fixed_mean']:.2f}: **{r['in_sample']['gain']:.2f} points** "
        "(inflated by test noise).",
        "",
        f"Out of sample ({oos['n_splits']} random stratified half splits of each task's test "
        f"images, both directions; choose on one half, score on the other; the fixed extractor "
        f"is the best mean on the first halves of all tasks, mostly "
        f"{oos['fixed_choice']}; ties broken at random): per-task best "
        f"{oos['oracle_heldout']:.2f} vs fixed {oos['fixed_heldout']:.2f}: **gain "
        f"{oos['gain']:.2f} points, 95 % CI {_fmt_ci(oos['ci95'])}** (bootstrap over tasks, "
        f"{oos['n_bootstrap']} samples, the fixed extractor re-chosen in each). Goal >= 2 "
        f"points: **{'met' if oos['goal_2_points_met'] else 'NOT met'}**. Each choice is "
        "made on half of a task's test images, so it is noisier than a choice made on the "
        "whole test split would be: the figure errs on the low side.",
        "",
        "By group (the per-task choice is the same; *vs global fixed* uses the fixed extractor "
        "chosen on all tasks, *vs group fixed* the best fixed extractor of the group itself, "
        "i.e. what selection adds beyond knowing the group):",
        "",
        "| group | tasks | per-task best | global fixed | gain vs global fixed [95 % CI] | "
        "group's fixed | gain vs group fixed [95 % CI] |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for label, g in oos["by_group"].items():
        lines.append(
            f"| {label} | {g['n_tasks']} | {g['oracle']:.2f} | {g['global_fixed']:.2f} | "
            f"{g['gain_vs_global_fixed']:.2f} {_fmt_ci(g['ci_vs_global_fixed'])} | "
            f"{g['group_fixed_choice']} | {g['gain_vs_group_fixed']:.2f} "
            f"{_fmt_ci(g['ci_vs_group_fixed'])} |")
    pg = oos["relabel_within_pool"]
    if pg:
        lines += ["",
                  f"Relabel tasks, per-task best vs the best extractor of the task's image pool "
                  f"(chosen on the first halves of all the tasks of that pool; "
                  f"{pg['n_pools']} pools): "
                  f"**{pg['gain_vs_pool_fixed']:.2f} points** {_fmt_ci(pg['ci'])} over "
                  f"{pg['n_tasks']} tasks: what knowing the label function adds over knowing "
                  "the images."]
    sg = oos["within_source_dataset"]
    lines += ["",
              f"All tasks, per-task best vs the best extractor of the task's source dataset "
              f"(chosen on the first halves of that dataset's tasks): "
              f"**{sg['gain_vs_pool_fixed']:.2f} points** {_fmt_ci(sg['ci'])}: what choosing "
              "per task adds over knowing which dataset the task comes from."]
    c = r["cost"]
    lines += [
        "",
        "## Cost",
        "",
        "Wall time on the machine above, one thread; the two cores were shared with other "
        "jobs during the build, so absolute times are inflated by that load (ratios less "
        "so). An evaluation is feature extraction of "
        "the training and test images plus the probe fit (relabel tasks: the pool's "
        "extraction time is charged to each of its tasks, as if evaluated alone); an "
        "embedding uses the training images only.",
        "",
        "| what | median per task (s) |",
        "|---|---:|",
        f"| evaluate one extractor (median over all task x extractor cells) | "
        f"{c['median_one_extractor_one_task_s']:.2f} |",
        f"| evaluate all {r['n_extractors']} extractors | "
        f"{c['median_all_extractors_one_task_s']:.1f} |",
    ]
    if "embedding" in c:
        em = c["embedding"]["meta"]
        lines += [
            f"| embed once, default `Task2VecEmbedder()` (method {em['method']!r}, "
            f"{em['layers']}, dim {em['dim']}) | {c['embedding']['median_s']:.2f} |",
        ]
        for k, v in c["extra_embeddings_median_s"].items():
            lines.append(f"| embed once, extra set {k!r} | {v:.2f} |")
        lines += [
            "",
            f"Median ratio per task: evaluating all extractors costs "
            f"{c['ratio_all_extractors_to_embedding']:.0f}x one default embedding; one "
            f"extractor {c['ratio_one_extractor_to_embedding']:.1f}x. Whole brute force, each "
            f"task evaluated alone: {c['total_brute_force_s'] / 3600:.2f} h "
            f"({c['total_brute_force_as_built_s'] / 3600:.2f} h as built, with features "
            f"shared within relabel image pools); all default embeddings "
            f"{c['embedding']['total_s'] / 60:.1f} min.",
        ]
    lines += ["", "Per extractor, median evaluation time per task (s):", "",
              "| extractor | s |", "|---|---:|"]
    for n, v in c["per_extractor_median_s"].items():
        lines.append(f"| {n} | {v:.2f} |")
    lines.append("")
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--correct", type=Path, default=DEFAULT_CORRECT)
    ap.add_argument("--kb", type=Path, default=DEFAULT_KB)
    ap.add_argument("--md", type=Path, default=DEFAULT_MD)
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    data = load_correct(args.correct)
    report = analyse(data, args.kb, args.splits, args.bootstrap, args.seed)
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(to_markdown(report))
    args.json.write_text(json.dumps(_jsonable(report), indent=1, sort_keys=False) + "\n")
    oos = report["out_of_sample"]
    print(f"out-of-sample gain {oos['gain']:.2f} points, 95% CI {_fmt_ci(oos['ci95'])}; "
          f"wrote {args.md} and {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
