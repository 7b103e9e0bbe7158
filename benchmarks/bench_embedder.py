"""Task2VecEmbedder benchmark: speed vs the physical floor, steadiness, meaning, batch size.

Run::

    python benchmarks/bench_embedder.py            # everything (~30-40 min on 2 CPU cores)
    python benchmarks/bench_embedder.py --quick    # a smaller version (~5 min)

Writes ``benchmarks/results/embedder.{json,md}``.

Sections
--------
speed
    Wall time of one embedding (head fit included) vs one plain forward+backward pass of
    the same probe over the same images, measured side by side (interleaved, best of 2).
exact_passes
    The exact Fisher in ``C - 1`` backward passes against the earlier one pass per class
    (monkeypatched in), side by side on 5- and 2-class tasks; speed-up and the largest
    relative difference of the values.
steadiness
    The same task embedded with several seeds (new images from a large pool, new head,
    new label draws) vs different tasks of the same dataset: the ratio of the mean
    distance between seeds of one task to the mean distance between tasks (lower is
    steadier), as the number of images and the estimator change.
meaning
    Leave-one-out 1-nearest-neighbour recovery of the source dataset of the suite's
    class-subset tasks; Spearman correlation between the embedding's L1 norm and the
    error of a linear probe on the probe's own features.
batch size
    Embeddings at batch size 8 and 64 compared with the seed noise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, md_table, write_results  # noqa: E402

from t2v_automl import distances as D  # noqa: E402
from t2v_automl.datasets import load_pool  # noqa: E402
from t2v_automl.estimators import Task2VecEmbedder  # noqa: E402
from t2v_automl.fisher import balanced_subsample, plain_forward_backward_seconds  # noqa: E402
from t2v_automl.tasks import Task  # noqa: E402

METRICS = ("hellinger", "symmetric")


def fm_tasks(class_sets: list[tuple[int, ...]]) -> list[Task]:
    """Fashion-MNIST tasks over its whole training split (6,000 images per class)."""
    fm = load_pool("fashion_mnist")
    out = []
    for cs in class_sets:
        idx = np.flatnonzero(np.isin(fm.labels, cs))
        out.append(Task.from_arrays(fm.images[idx], fm.labels[idx],
                                    name="fm" + "-".join(map(str, cs))))
    return out


def _measured() -> str:
    """When and at which commit a row is measured (rows are kept between runs)."""
    m = machine()
    return f"{m['date']}, {m.get('git_commit', '?')}"


def bench_speed(sizes: list[int], n_images: int) -> list[dict]:
    measured = _measured()
    rng = np.random.default_rng(0)
    subs = {}
    for classes in [(0, 1, 2, 3, 4), (0, 1)]:
        task = fm_tasks([classes])[0]
        subs[len(classes)] = task.subset(np.sort(rng.choice(task.n_images, n_images,
                                                            replace=False)))
    configs = [(5, "exact", 8), (2, "exact", 8), (5, "exact", 0), (5, "montecarlo", 0),
               (5, "montecarlo", 8)]
    rows = []
    for size in sizes:
        emb0 = Task2VecEmbedder(image_size=size, max_images=None, device="cpu").fit()
        probe = emb0.probe_
        for n_classes, method, skip in configs:
            if size > 64 and (n_classes, method, skip) not in ((5, "exact", 8),
                                                               (5, "montecarlo", 0)):
                continue  # at 112 px: the default and the paper's estimator only
            sub = subs[n_classes]
            floors, times = [], []
            for _ in range(2):
                floors.append(plain_forward_backward_seconds(probe, sub.images, size))
                emb = Task2VecEmbedder(method=method, skip_layers=skip, image_size=size,
                                       max_images=None, device="cpu").fit()
                t0 = time.perf_counter()
                emb.transform([sub])
                times.append(time.perf_counter() - t0)
            row = {"measured": measured, "probe": "mobilenet_v2", "image_size": size,
                   "n_images": n_images,
                   "n_classes": n_classes, "method": method, "skip_layers": skip,
                   "floor_s": min(floors), "embed_s": min(times),
                   "ratio": min(times) / min(floors)}
            print("speed", row, flush=True)
            rows.append(row)
    return rows


def _per_class_factors(p: torch.Tensor) -> list[torch.Tensor]:
    """The earlier exact Fisher: one logit-gradient vector (one backward pass) per class."""
    eye = torch.eye(p.shape[1], dtype=p.dtype, device=p.device)
    return [torch.sqrt(p[:, k:k + 1]) * (p - eye[k]) for k in range(p.shape[1])]


def bench_exact_passes(n_images: int, repeats: int = 3) -> list[dict]:
    """The exact Fisher in C - 1 backward passes vs the earlier C, side by side (64 px)."""
    import t2v_automl.fisher as fisher_mod

    rng = np.random.default_rng(0)
    current = fisher_mod._exact_factors
    rows = []
    for classes in [(0, 1, 2, 3, 4), (0, 1)]:
        task = fm_tasks([classes])[0]
        sub = task.subset(np.sort(rng.choice(task.n_images, n_images, replace=False)))
        emb = Task2VecEmbedder(max_images=None, device="cpu").fit()
        times: dict[str, list[float]] = {"per_class": [], "rank": []}
        values = {}
        try:
            for _ in range(repeats):  # interleaved
                for name, fn in (("per_class", _per_class_factors), ("rank", current)):
                    fisher_mod._exact_factors = fn
                    t0 = time.perf_counter()
                    values[name] = emb.transform([sub])[0]
                    times[name].append(time.perf_counter() - t0)
        finally:
            fisher_mod._exact_factors = current
        row = {"measured": _measured(), "n_classes": len(classes), "n_images": n_images,
               "per_class_s": min(times["per_class"]), "rank_s": min(times["rank"]),
               "speedup": min(times["per_class"]) / min(times["rank"]),
               "max_rel_diff": float(np.abs(values["per_class"] - values["rank"]).max()
                                     / np.abs(values["per_class"]).max())}
        print("exact passes", row, flush=True)
        rows.append(row)
    return rows


def _ratio(E: list[np.ndarray], metric: str) -> tuple[float, float, float]:
    """E[seed] is (n_tasks, dim). Returns (within-task, between-task, ratio)."""
    S, T = len(E), E[0].shape[0]
    within = np.mean([D.pairwise_distances(E[a][i], E[b][i], metric=metric)[0, 0]
                      for i in range(T) for a in range(S) for b in range(a + 1, S)])
    between = np.mean([D.pairwise_distances(E[s][i], E[s][j], metric=metric)[0, 0]
                       for s in range(S) for i in range(T) for j in range(i + 1, T)])
    return float(within), float(between), float(within / between)


def _key(r: dict) -> tuple:
    return (r.get("images", "pool"), r["n_images"], r["method"], r["label_samples"],
            r["skip_layers"], r["metric"])


def _fixed_subsets(tasks: list[Task], n: int) -> list[Task]:
    """Each task cut to a fixed class-balanced sample of ``n`` images (seed 1234)."""
    rng = np.random.default_rng(1234)
    return [t.subset(balanced_subsample(t.labels, n, rng)) for t in tasks]


def bench_steadiness(n_list: list[int], seeds: int, tasks: list[Task], full_max: int,
                     done: list[dict] | None = None, save: Any = None,
                     images: str = "pool") -> list[dict]:
    """Steadiness rows; configurations already in ``done`` are kept, not re-run.

    ``images="pool"``: each seed draws ``n`` new images from the task's whole pool (the
    noise a user sees when a large dataset is subsampled); ``images="fixed"``: the task
    is a fixed set of ``n`` images and the seed changes only the head's sampling and
    the label draws (the Fisher estimator's own noise). ``save(rows)`` is called after
    each configuration so that an interrupted run keeps what it measured.
    """
    if images == "pool":
        configs = [
            ("exact", 1, 8), ("montecarlo", 1, 8), ("montecarlo", 5, 8), ("exact", 1, 0),
            ("montecarlo", 1, 0), ("domain", 1, 0), ("label_stat", 1, 0),
        ]
    else:
        configs = [("exact", 1, 8), ("montecarlo", 1, 8), ("montecarlo", 5, 8)]
    rows = list(done or [])
    have = {_key(r) for r in rows}
    measured = _measured()
    for n in n_list:
        run_tasks = tasks if images == "pool" else _fixed_subsets(tasks, n)
        for method, ls, skip in configs:
            if skip == 0 and method in ("exact", "montecarlo") and n > full_max:
                continue
            if n > 1000 and (method, ls, skip) not in (("exact", 1, 8), ("domain", 1, 0)):
                continue  # the largest size only for the default and the domain embedding
            if n > 300 and (method, ls) == ("montecarlo", 5):
                continue
            if all((images, n, method, ls, skip, m) in have for m in METRICS):
                continue
            n_seeds = seeds if n <= 300 else max(3, seeds - 2)
            t0 = time.perf_counter()
            E = [Task2VecEmbedder(method=method, label_samples=ls, skip_layers=skip,
                                  max_images=n, random_state=s, device="cpu"
                                  ).fit_transform(run_tasks) for s in range(n_seeds)]
            cost = (time.perf_counter() - t0) / (n_seeds * len(tasks))
            for metric in METRICS:
                w, b, r = _ratio(E, metric)
                row = {"measured": measured, "images": images, "n_images": n,
                       "method": method, "label_samples": ls,
                       "skip_layers": skip, "metric": metric, "within": w, "between": b,
                       "ratio": r, "seconds_per_embedding": cost, "seeds": n_seeds,
                       "tasks": len(tasks)}
                print("steady", row, flush=True)
                rows.append(row)
            if save is not None:
                save(rows)
    rows.sort(key=lambda r: (r.get("images", "pool") != "fixed", r["n_images"],
                             r["method"] != "exact", r["method"], r["label_samples"],
                             -r["skip_layers"], r["metric"]))
    return rows


def _probe_errors(suite: list, evaluate_extractor) -> list[float]:
    """Error of a linear probe on mobilenet_v2 features (64 px) per task.

    Read from the shipped knowledge base when it has the task (the same measurement),
    computed otherwise.
    """
    known: dict[str, float] = {}
    try:
        from t2v_automl.knowledge import KnowledgeBase

        kb = KnowledgeBase.default()
        j = kb.extractor_names.index("mobilenet_v2")
        known = {n: float(s) for n, s in zip(kb.task_names, kb.scores[:, j], strict=True)
                 if np.isfinite(s)}
    except Exception:  # noqa: BLE001 - no knowledge base yet: measure
        known = {}
    out = []
    for s in suite:
        if s.name in known:
            out.append(1.0 - known[s.name])
        else:
            out.append(1.0 - evaluate_extractor("mobilenet_v2", s.train, s.test,
                                                input_size=64).score)
    return out


def bench_meaning(max_tasks: int | None) -> dict:
    from t2v_automl.evaluation import evaluate_extractor
    from t2v_automl.suites import make_suite

    suite = [s for s in make_suite("default", seed=0) if s.provenance["kind"] == "subset"]
    if max_tasks:
        rng = np.random.default_rng(0)
        suite = [suite[i] for i in np.sort(rng.choice(len(suite), max_tasks, replace=False))]
    src = np.array([s.provenance["source_dataset"] for s in suite])
    out: dict = {"n_tasks": len(suite), "sources": sorted(set(src.tolist())), "one_nn": []}
    emb_sets = {}
    for method in ("exact", "domain", "label_stat"):
        E = Task2VecEmbedder(method=method, device="cpu").fit_transform([s.train for s in suite])
        emb_sets[method] = E
        for metric in METRICS + ("cosine",):
            M = D.pairwise_distances(E, metric=metric)
            np.fill_diagonal(M, np.inf)
            acc = float((src[M.argmin(1)] == src).mean())
            out["one_nn"].append({"method": method, "metric": metric, "accuracy": acc})
            print("meaning 1nn", method, metric, acc, flush=True)
    errors = np.asarray(_probe_errors(suite, evaluate_extractor))
    l1 = emb_sets["exact"].sum(1)
    rho, p = spearmanr(l1, errors)
    out["l1_vs_error"] = {"spearman": float(rho), "p_value": float(p),
                          "probe_error_mean": float(errors.mean())}
    per_src = {}
    for sname in sorted(set(src.tolist())):
        m = src == sname
        if m.sum() >= 5:
            r_, _ = spearmanr(l1[m], errors[m])
            per_src[sname] = float(r_)
    out["l1_vs_error"]["spearman_within_source"] = per_src
    print("meaning l1", out["l1_vs_error"], flush=True)
    # the head's fit decides how much the Fisher's size says about difficulty: a head that
    # is still near its zero start (10 epochs of Adam at lr 4e-4 on a few hundred images,
    # the paper's recipe) predicts soft probabilities on easy and hard tasks alike
    out["head_epochs"] = []
    for he in (10, 50, 200):
        E = emb_sets["exact"] if he == 10 else Task2VecEmbedder(
            head_epochs=he, device="cpu").fit_transform([s.train for s in suite])
        rho_he, p_he = spearmanr(E.sum(1), errors)
        row = {"head_epochs": he, "spearman": float(rho_he), "p_value": float(p_he)}
        for metric in METRICS:
            M = D.pairwise_distances(E, metric=metric)
            np.fill_diagonal(M, np.inf)
            row[f"one_nn_{metric}"] = float((src[M.argmin(1)] == src).mean())
        print("meaning head", row, flush=True)
        out["head_epochs"].append(row)
    return out


def bench_batch(tasks: list[Task]) -> list[dict]:
    rows = []
    e8 = Task2VecEmbedder(batch_size=8, max_images=300, device="cpu").fit_transform(tasks)
    e64 = Task2VecEmbedder(batch_size=64, max_images=300, device="cpu").fit_transform(tasks)
    seed1 = Task2VecEmbedder(batch_size=64, max_images=300, random_state=1, device="cpu"
                             ).fit_transform(tasks)
    for metric in METRICS:
        d_bs = [D.pairwise_distances(e8[i], e64[i], metric=metric)[0, 0]
                for i in range(len(tasks))]
        d_seed = [D.pairwise_distances(seed1[i], e64[i], metric=metric)[0, 0]
                  for i in range(len(tasks))]
        rows.append({"metric": metric, "batch8_vs_64": float(np.mean(d_bs)),
                     "max_batch8_vs_64": float(np.max(d_bs)),
                     "seed_noise": float(np.mean(d_seed))})
        print("batch", rows[-1], flush=True)
    return rows


def render(data: dict) -> str:
    m = data["machine"]
    lines = [
        "# Task2VecEmbedder benchmark",
        "",
        machine_line(m, data["command"]),
        "",
        "Sections are re-run one at a time and kept between runs: the line above is the "
        "latest run; each table's *measured* column says when and at which commit its rows "
        "were measured.",
        "",
        "Probe `mobilenet_v2` (ImageNet). Defaults of `Task2VecEmbedder()`: "
        f"`{data['defaults']}`.",
        "",
        "## Speed vs the physical floor",
        "",
        "Floor = one plain forward+backward pass of the probe over the same images (weights "
        "trainable, the least any full-network Fisher costs). Embedding = everything "
        "(features, head fit, Fisher). Best of 2, measured side by side. "
        "`exact` does C - 1 backward passes for C classes (4 for the 5-class task, 1 for "
        "the 2-class one); `skip_layers=8` leaves the first 8 of 19 stages out of the "
        "Fisher.",
        "",
    ]
    lines.append(md_table(
        ["image size", "images", "classes", "method", "skip_layers", "floor s",
         "embedding s", "ratio", "measured"],
        [[r["image_size"], r["n_images"], r["n_classes"], r["method"], r["skip_layers"],
          r["floor_s"], r["embed_s"], r["ratio"], r.get("measured", "")]
         for r in data.get("speed", [])]))
    if data.get("exact_passes"):
        lines += ["", "The exact Fisher in `C - 1` backward passes (a rank-`C - 1` factor of the "
                  "label covariance `diag(p) - p pᵀ`) against the earlier one pass per class, "
                  "side by side (64 px, best of 3, interleaved; section `exact_passes`):", ""]
        lines.append(md_table(
            ["classes", "images", "C passes s", "C - 1 passes s", "speed-up",
             "max relative difference", "measured"],
            [[r["n_classes"], r["n_images"], r["per_class_s"], r["rank_s"], r["speedup"],
              r["max_rel_diff"], r.get("measured", "")] for r in data["exact_passes"]]))
    lines += ["", "## Steadiness (seed-to-seed distance / task-to-task distance)", "",
              "Four two-class Fashion-MNIST tasks (12,000 training images each). Lower is "
              "steadier; the goal is <= 0.3. Two sources of seed-to-seed noise are "
              "measured apart:", "",
              "- *fixed images*: each task is one fixed set of `images` images; a seed "
              "changes only the head's class-balanced sampling and the label draws. This "
              "is the Fisher estimator's own noise, what the variance reduction acts on.",
              "- *pool*: each seed also draws `images` new images from the task's 12,000 "
              "(`max_images`): the noise a user sees when a large dataset is subsampled. "
              "Only more images reduce it.", "",
              "The seconds column is wall time on the loaded 2-core machine (other "
              "benchmark jobs ran alongside; use the speed table for costs); blank where "
              "the process was paused while it ran. Rows are kept between runs (the "
              "*measured* column says when and at which commit; rows before the `C - 1`-"
              "pass exact Fisher have the same values to 1e-8 but their seconds are for "
              "`C` passes).", ""]
    st = data["steadiness"]
    lines.append(md_table(
        ["seed changes", "images", "method", "label draws", "skip", "metric", "within",
         "between", "ratio", "s / embedding", "measured"],
        [["head, labels" if r.get("images") == "fixed" else "head, labels, images",
          r["n_images"], r["method"], r["label_samples"], r["skip_layers"], r["metric"],
          r["within"], r["between"], r["ratio"], r["seconds_per_embedding"],
          r.get("measured", "")] for r in st]))
    if data.get("meaning"):
        mn = data["meaning"]
        lines += ["", "## Meaning", "",
                  f"Leave-one-out 1-NN recovery of the source dataset over {mn['n_tasks']} "
                  f"class-subset tasks of the default suite ({', '.join(mn['sources'])}); "
                  "goal >= 0.9.", ""]
        lines.append(md_table(["embedding", "metric", "1-NN accuracy"],
                              [[r["method"], r["metric"], r["accuracy"]]
                               for r in mn["one_nn"]]))
        lv = mn["l1_vs_error"]
        lines += ["", f"Spearman correlation of the Fisher embedding's L1 norm with the error "
                      f"of a linear probe on mobilenet_v2 features (64 px): "
                      f"**{lv['spearman']:.3f}** (p = {lv['p_value']:.2g}); within each "
                      f"source: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                              lv["spearman_within_source"].items()) + "."]
        if mn.get("head_epochs"):
            lines += ["", "The same with a head fitted longer (`head_epochs`; the default is "
                      "the paper's 10 epochs of Adam at lr 4e-4): the L1 norm follows the "
                      "task's difficulty only once the head is fitted well enough to be "
                      "confident where the task is easy.", ""]
            lines.append(md_table(
                ["head_epochs", "Spearman(L1, probe error)", "p", "1-NN hellinger",
                 "1-NN symmetric"],
                [[r["head_epochs"], r["spearman"], r["p_value"], r["one_nn_hellinger"],
                  r["one_nn_symmetric"]] for r in mn["head_epochs"]]))
    if data.get("batch"):
        lines += ["", "## Batch-size independence", "",
                  "Default embedder at batch size 8 vs 64 (same seed) compared with the "
                  "distance between two seeds.", ""]
        lines.append(md_table(["metric", "mean d(batch 8, batch 64)", "max",
                               "mean seed noise"],
                              [[r["metric"], r["batch8_vs_64"], r["max_batch8_vs_64"],
                                r["seed_noise"]] for r in data["batch"]]))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sections", default="speed,exact_passes,steadiness,meaning,batch")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sections = set(args.sections.split(","))
    quick = args.quick
    steady_tasks = fm_tasks([(0, 6), (5, 7), (2, 4), (1, 3)])
    out_name = "embedder_quick" if quick else "embedder"
    previous: dict = {}
    prev_path = Path(__file__).resolve().parent / "results" / f"{out_name}.json"
    if prev_path.exists():  # sections not re-run keep their last results
        import json

        previous = json.loads(prev_path.read_text())
    data: dict = {**{k: previous[k] for k in ("speed", "exact_passes", "steadiness",
                                              "meaning", "batch") if k in previous},
                  "machine": machine(), "command": "python benchmarks/bench_embedder.py"
                  + (" --quick" if quick else "")
                  + ("" if sections >= {"speed", "exact_passes", "steadiness", "meaning",
                                        "batch"}
                     else f" --sections {args.sections}"),
                  "defaults": {k: v for k, v in Task2VecEmbedder().get_params().items()
                               if k not in ("memory", "verbose", "n_jobs")}}
    if "speed" in sections:
        data["speed"] = bench_speed([64] if quick else [64, 112], 200 if quick else 500)
    if "exact_passes" in sections:
        data["exact_passes"] = bench_exact_passes(200 if quick else 500)
    if "steadiness" in sections:
        def save(rows: list[dict]) -> None:
            write_results(out_name, {**data, "steadiness": rows}, render({**data,
                                                                          "steadiness": rows}))

        rows = bench_steadiness([100, 300] if quick else [100, 300, 1000], 3 if quick else 5,
                                steady_tasks, full_max=300, done=data.get("steadiness"),
                                save=save, images="fixed")
        data["steadiness"] = bench_steadiness([100, 300] if quick else [100, 300, 1000, 3000],
                                              3 if quick else 5, steady_tasks,
                                              full_max=300, done=rows, save=save)
    if "meaning" in sections:
        data["meaning"] = bench_meaning(30 if quick else None)
    if "batch" in sections:
        data["batch"] = bench_batch(steady_tasks)
    jp, mp = write_results(out_name, data, render(data))
    print(f"wrote {jp} and {mp}")


if __name__ == "__main__":
    main()
