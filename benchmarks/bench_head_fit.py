"""Does a longer head fit make better Task2Vec embeddings for choosing an extractor?

The embedder's head follows the paper's recipe (10 epochs of Adam at lr 4e-4). The
meaning section of ``bench_embedder.py`` finds that the Fisher's L1 norm tracks task
difficulty only with a longer fit (``head_epochs`` 50-200). This benchmark asks whether
that also helps the selector: every task of the shipped knowledge base is re-embedded
with each ``head_epochs`` (the training split, as the base was built), and the
embedding-only ``ExtractorSelector`` (k = 3 nearest, inverse distance) is scored on the
selection benchmark's protocols (leave-one-source-dataset-out, leave-one-label-function-
out, leave-one-task-out; ``_common.folds`` and ``_common.cv_rank_scores``, as
``selection.py``) with the Hellinger and the symmetric distances. The 10-epoch
re-embedding is checked against the shipped embeddings.

Run::

    python benchmarks/bench_head_fit.py --n-jobs 2     # ~25 min on 2 CPU cores

Writes ``benchmarks/results/head_fit.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

# the benchmarks are scripts, not a package: the shared helpers (``_common``, which
# ``selection.py`` evaluates with too) are imported from the script's own folder
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RESULTS,
    BenchData,
    cv_rank_scores,
    held_out,
    machine,
    machine_line,
    md_table,
    ranking_metrics,
    write_results,
)

from t2v_automl.estimators import ExtractorSelector, Task2VecEmbedder  # noqa: E402
from t2v_automl.knowledge import KnowledgeBase  # noqa: E402
from t2v_automl.suites import make_suite  # noqa: E402

PROTOCOLS = ("loso", "lolo", "loto")
METRICS = ("hellinger", "symmetric")


def run(head_epochs: list[int], n_jobs: int, n_boot: int) -> dict:
    kb = KnowledgeBase.default()
    suite = {s.name: s for s in make_suite("default", seed=0)}
    tasks = [suite[n].train for n in kb.task_names]
    data = BenchData.from_knowledge(kb)
    j = kb.extractor_names.index("mobilenet_v2")
    probe_error = 1.0 - kb.scores[:, j]
    out: dict = {"n_tasks": len(tasks), "embeddings": [], "selection": []}
    for he in head_epochs:
        t0 = time.perf_counter()
        E = Task2VecEmbedder(head_epochs=he, device="cpu", n_jobs=n_jobs).fit_transform(tasks)
        seconds = time.perf_counter() - t0
        ok = np.isfinite(probe_error)
        rho, p = spearmanr(E.sum(1)[ok], probe_error[ok])
        row = {"head_epochs": he, "seconds": seconds, "spearman_l1_error": float(rho),
               "p_value": float(p),
               "max_rel_diff_to_shipped": float(np.abs(E - kb.embeddings).max()
                                                / np.abs(kb.embeddings).max())}
        print("embedded", row, flush=True)
        out["embeddings"].append(row)
        for protocol in PROTOCOLS:
            for metric in METRICS:
                pred, secs = cv_rank_scores(ExtractorSelector(metric=metric), E, data,
                                            protocol)
                rows = held_out(data, protocol)
                r = ranking_metrics(data.scores[rows], pred,
                                    data.embed_time["fisher"][rows] + secs, n_boot)
                res = {"head_epochs": he, "protocol": protocol, "metric": metric,
                       "tau": r["tau"], "regret": r["regret"], "regret_ci": r["regret_ci"],
                       "top3": r["top3"], "n_tasks": r["n_tasks"]}
                print("selection", res, flush=True)
                out["selection"].append(res)
    return out


def render(data: dict) -> str:
    m = data["machine"]
    lines = [
        "# Head fit and extractor selection",
        "",
        machine_line(m, data["command"]),
        "",
        f"The {data['n_tasks']} tasks of the shipped knowledge base re-embedded with the "
        "default `Task2VecEmbedder` except `head_epochs` (the default, the paper's 10, "
        "reproduces the shipped embeddings: see the last column). Spearman: the L1 norm "
        "of the embedding vs the error of a linear probe on `mobilenet_v2` features.",
        "",
    ]
    lines.append(md_table(
        ["head_epochs", "embedding s (all tasks)", "Spearman(L1, error)", "p",
         "max relative difference to the shipped embeddings"],
        [[r["head_epochs"], r["seconds"], r["spearman_l1_error"], r["p_value"],
          r["max_rel_diff_to_shipped"]] for r in data["embeddings"]]))
    lines += ["", "Embedding-only `ExtractorSelector` (k = 3 nearest, inverse distance): "
              "mean weighted Kendall tau, top-1 regret in accuracy points (95 % bootstrap "
              "CI over held-out tasks) and top-3 hit rate.", ""]
    lines.append(md_table(
        ["protocol", "metric", "head_epochs", "tau", "regret", "regret CI", "top-3"],
        [[r["protocol"], r["metric"], r["head_epochs"], r["tau"], r["regret"],
          f"{r['regret_ci'][0]:.2f}-{r['regret_ci'][1]:.2f}", r["top3"]]
         for r in sorted(data["selection"], key=lambda r: (PROTOCOLS.index(r["protocol"]),
                                                          r["metric"], r["head_epochs"]))]))
    if data.get("reading"):  # written by hand into the JSON after a run
        lines += ["", "## Reading", "", data["reading"]]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--head-epochs", default="10,200")
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--render", action="store_true", help="re-write the .md from the .json")
    args = ap.parse_args()
    if args.render:
        data = json.loads((RESULTS / "head_fit.json").read_text())
        write_results("head_fit", data, render(data))
        return
    torch.set_num_threads(1)
    data = run([int(v) for v in args.head_epochs.split(",")], args.n_jobs, args.n_boot)
    data["machine"] = machine()
    data["command"] = "python benchmarks/bench_head_fit.py " + " ".join(sys.argv[1:])
    jp, mp = write_results("head_fit", data, render(data))
    print(f"wrote {jp} and {mp}")


if __name__ == "__main__":
    main()
