"""Regenerate the README's pictures from the shipped knowledge base and benchmark results.

Run::

    python benchmarks/figures.py

Writes ``docs/img/similarity.png`` (clustered task-distance matrix with its dendrogram),
``docs/img/task_map.png`` and ``docs/img/task_map_domain.png`` (t-SNE of the task
embeddings, Fisher vs the domain embedding, coloured by source dataset),
``docs/img/regret.png`` and ``docs/img/regret_lolo.png`` (selection regret per method on
unseen source datasets and on relabelled images, from ``benchmarks/results/selection.json``
when present) and ``docs/img/regret_experts.png`` (choosing among experts, relabelled
tasks, leave one label function out, from ``benchmarks/results/selection_experts.json``). The
warm-start curves are drawn by ``benchmarks/warm_start.py`` itself
(``benchmarks/results/warm_start.png``). ``--kb FILE`` draws the task maps of another
knowledge base.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from t2v_automl.distances import pairwise_distances
from t2v_automl.knowledge import KnowledgeBase
from t2v_automl.plotting import plot_regret, plot_similarity, plot_task_map

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
RESULTS = ROOT / "benchmarks" / "results"
#: The selection methods drawn (benchmark name -> label); the sensitivity rows and the
#: variants of each embedding are left to the tables.
FIGURE_METHODS = {
    "hybrid: Fisher nearest hellinger + LogME (default)": "HybridSelector (default)",
    "Fisher: nearest hellinger (ExtractorSelector default)": "ExtractorSelector()",
    "Fisher: nearest sym": "Fisher, nearest sym",
    "Fisher: nearest asym": "Fisher, nearest asym",
    "Fisher: model2vec sym": "Fisher, Model2Vec",
    "domain: nearest ncos": "domain emb., nearest",
    "label-stat: nearest ncos": "label-stat, nearest",
    "LogME": "LogME",
    "LEEP": "LEEP",
    "NCE": "NCE",
    "kNN accuracy": "kNN accuracy",
    "ImageNet default (efficientnet_lite0)": "ImageNet default",
    "best on average": "best on average",
    "meta-feature kNN": "meta-feature kNN",
    "chance": "chance",
}


def regret_figure(results: Path, protocol: str, path: Path, title: str,
                  kinds: tuple[str, ...] | None = None) -> None:
    """Regret per method of one protocol of a selection results file (``kinds``: only the
    held-out tasks of these kinds, e.g. ``("relabel",)``)."""
    if not results.exists():
        return
    data = json.loads(results.read_text())
    res = data.get("protocols", {}).get(protocol, {})
    methods = res.get("methods", {})
    keep = None
    if kinds is not None:
        keep = np.array([any(f"/{k}" in n for k in kinds) for n in res.get("task_names", [])])
    names, values, cis = [], [], []
    for m, label in FIGURE_METHODS.items():
        r = methods.get(m) or methods.get(m.replace("efficientnet_lite0", data.get(
            "info", {}).get("imagenet_default", "efficientnet_lite0")))
        if not r or r.get("regret") is None:
            continue
        reg = np.array([np.nan if v is None else v for v in r["per_task"]["regret"]])
        if keep is not None:
            reg = reg[keep]
        if not np.isfinite(reg).any():
            continue
        names.append(label)
        values.append(float(np.nanmean(reg)))
        # the bootstrap CI is of all held-out tasks: drawn only when none was left out
        cis.append(r.get("regret_ci") if keep is None or keep.all() else None)
    order = np.argsort(values)
    if names:
        drawn = None if any(c is None for c in cis) else [cis[i] for i in order]
        plot_regret([names[i] for i in order], [values[i] for i in order],
                    drawn, path=path, title=title, figsize=(9.0, 5.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kb", type=Path, default=None,
                    help="knowledge base of the task maps (default: the shipped one)")
    args = ap.parse_args()
    IMG.mkdir(parents=True, exist_ok=True)
    kb = KnowledgeBase.load(args.kb) if args.kb else KnowledgeBase.default()
    src = [p.get("source_dataset", "?") for p in kb.provenance]
    kind = [p.get("kind", "?") for p in kb.provenance]
    # similarity: a readable subset, the class-subset tasks, a few per source
    rng = np.random.default_rng(0)
    pick: list[int] = []
    for s in sorted(set(src)):
        idx = [i for i in range(len(kb)) if src[i] == s and kind[i] == "subset"]
        pick += sorted(rng.choice(idx, min(6, len(idx)), replace=False).tolist())
    E = kb.embeddings
    D = pairwise_distances(E[pick], metric="hellinger")
    names = [kb.task_names[i].split("/", 2)[-1][:28] for i in pick]
    plot_similarity(D, names, groups=[src[i] for i in pick], path=IMG / "similarity.png",
                    title="Task2Vec distances (hellinger), 6 tasks per source")
    plot_task_map(E, src, metric="hellinger", path=IMG / "task_map.png",
                  title=f"Fisher embeddings of the {len(kb)} known tasks (t-SNE)")
    meta, dom = kb.extra_embeddings("domain")
    plot_task_map(dom, src, metric="hellinger", path=IMG / "task_map_domain.png",
                  title="Domain embeddings (mean probe features) of the same tasks")
    sel = RESULTS / "selection.json"
    if sel.exists():
        data = json.loads(sel.read_text())
        for protocol, name, title in (
                ("loso", "regret.png", "unseen source datasets (leave one source out)"),
                ("lolo", "regret_lolo.png", "relabelled images (leave one label function out)")):
            methods = data.get("protocols", {}).get(protocol, {}).get("methods", {})
            rows = [(FIGURE_METHODS[m], methods[m]) for m in FIGURE_METHODS
                    if m in methods and methods[m].get("regret") is not None]
            rows.sort(key=lambda nr: nr[1]["regret"])
            if rows:
                plot_regret([n for n, _ in rows], [r["regret"] for _, r in rows],
                            [r.get("regret_ci") for _, r in rows], path=IMG / name,
                            title=f"Selection regret, {title}", figsize=(9.0, 5.5))
    regret_figure(RESULTS / "selection_experts.json", "lolo", IMG / "regret_experts.png",
                  "Choosing among 22 experts + MobileNetV2: leave one label function out",
                  kinds=("relabel",))
    print("wrote", sorted(p.name for p in IMG.glob("*.png")))


if __name__ == "__main__":
    main()
