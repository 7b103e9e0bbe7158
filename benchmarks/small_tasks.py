"""Small tasks from unseen domains: who picks the extractor best with 5-50 images per class?

The selection benchmark's held-out tasks keep their 15-60 training images per class. A
user choosing a backbone often has fewer, and from a domain the knowledge base has never
seen. This benchmark asks that question with the shipped knowledge base (issue 16):

Protocol (leave one source dataset out, small training splits)
    Held-out tasks: ``--n-subset`` class-subset and ``--n-relabel`` relabelled tasks of each
    of the five source datasets (``_common.select_tasks``, seed ``--task-seed``). Each is
    rebuilt with its training split redrawn at 5, 10, 20 and 50 images per class
    (``t2v_automl.suites.iter_suite(train_per_class=...)``: same classes, label function
    and large test split, capped at 500 images for class-subset tasks as in the knowledge
    base's build; nested draws). For the fold of source ``s`` every method sees
    the knowledge base without ``s`` (``kb.subset``), so every held-out task is from an
    unseen domain.

Ground truth
    For each small task and each of the 13 extractors: the knowledge base's linear head
    (:func:`t2v_automl.evaluation.make_linear_head`, ``C=1``, the base's setting) fitted
    on the small training split's features and scored on the test split's, the features
    coming from :func:`t2v_automl.transferability.task_features` on the shared feature
    cache at 64 px (the computation of :func:`t2v_automl.evaluation.evaluate_extractor`
    with one ``C``; ``tests/test_benchmarks_small_tasks.py`` checks they agree).

Cost
    Brute force: per candidate, the seconds of its features of the training images plus
    the linear head's fit (its test-set features are not charged: a conservative figure
    for brute force). A transferability score: the same feature seconds plus the score's.
    The hybrid: its domain embedding, its Fisher embedding when the screen lets the task
    through, and its transferability passes (``explain(...).transfer_seconds``). All
    seconds are measured once, cold, on this machine, in the precompute.

Everything expensive is computed once and cached under ``--cache-dir`` (features in the
shared feature cache, embeddings in the embedder's cache, per-task records as files):
a killed run resumes.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    feature_memory,
    machine,
    select_tasks,
)

CACHE = Path(__file__).resolve().parent / ".cache" / "small_tasks"
SIZES = (5, 10, 20, 50)
#: Transferability scores computed on every small task (all from the same features).
MEASURES = ("logme", "logme_authors", "logme_pca", "ncti", "etran", "h_score",
            "knn_accuracy")
INPUT_SIZE = 64
C_HEAD = 1.0
#: The knowledge base's test cap of class-subset tasks (``evaluation.test_cap_subset_tasks``).
TEST_CAP = 500


def _key(task: str, size: int, draw: int) -> str:
    return f"{task.replace('/', '__')}__n{size}__d{draw}"


def embedders(kb: Any, cache: Path) -> tuple[Any, Any]:
    """The Fisher and domain embedders of the knowledge base's settings, on a disk cache."""
    from sklearn.base import clone

    from t2v_automl.estimators import Task2VecEmbedder, embedder_params_from_meta

    fisher = Task2VecEmbedder(**embedder_params_from_meta(kb.meta), device="cpu",
                              memory=str(cache / "embeddings"))
    return fisher, clone(fisher).set_params(method="domain")


def held_out_tasks(kb: Any, n_subset: int, n_relabel: int, seed: int) -> list[str]:
    """The held-out tasks: per source dataset, some subset and relabel tasks."""
    meta = [{"name": n, "kind": p.get("kind", "subset"),
             "source_dataset": p.get("source_dataset", "?")}
            for n, p in zip(kb.task_names, kb.provenance, strict=True)]
    return select_tasks(meta, n_subset, n_relabel, seed)


def precompute_record(st: Any, size: int, draw: int, extractors: list[str], memory: Any,
                      fisher: Any, domain: Any) -> dict[str, Any]:
    """Ground truth, brute-force cost, embeddings' cost and every measure for one small task."""
    from t2v_automl.building import cap_test_split
    from t2v_automl.estimators import TransferabilitySelector
    from t2v_automl.evaluation import make_linear_head
    from t2v_automl.transferability import task_features

    train = st.train
    # the knowledge base's rule: subset tasks' test splits capped at 500 images
    test = cap_test_split(st.test, TEST_CAP) if st.provenance["kind"] == "subset" else st.test
    m = len(extractors)
    acc, feat_s, fit_s = np.full(m, np.nan), np.zeros(m), np.zeros(m)
    for j, name in enumerate(extractors):
        f_tr, s_tr = task_features(name, train, input_size=INPUT_SIZE, memory=memory,
                                   return_seconds=True)
        f_te = task_features(name, test, input_size=INPUT_SIZE, memory=memory)
        t0 = time.process_time()
        head = make_linear_head(C_HEAD, 0).fit(np.asarray(f_tr, dtype=np.float64),
                                               train.labels)
        fit_s[j] = time.process_time() - t0
        acc[j] = float(np.mean(head.predict(np.asarray(f_te, dtype=np.float64))
                               == test.labels))
        feat_s[j] = s_tr
    rec: dict[str, Any] = {
        "task": st.name, "size": size, "draw": draw,
        "source": st.provenance["source_dataset"], "kind": st.provenance["kind"],
        "n_train": int(train.n_images), "n_test": int(test.n_images),
        "n_classes": int(train.n_classes),
        "per_class": st.provenance["n_train_per_class"],
        "train_fingerprint": train.fingerprint, "accuracy": acc,
        "feature_seconds": feat_s, "head_seconds": fit_s,
        "brute_force_seconds": float(feat_s.sum() + fit_s.sum()),
    }
    for what, emb in (("domain", domain), ("fisher", fisher)):
        t0 = time.perf_counter()  # the first call computes (and caches) the embedding
        emb.embed([train])
        rec[f"{what}_seconds"] = time.perf_counter() - t0
    rec["measures"], rec["measure_seconds"] = {}, {}
    for measure in MEASURES:
        sel = TransferabilitySelector(measure=measure, extractors=extractors,
                                      input_size=INPUT_SIZE, memory=memory).fit()
        s, t = sel.predict_scores([train], return_times=True)
        rec["measures"][measure] = np.asarray(s[0], dtype=np.float64)
        rec["measure_seconds"][measure] = np.asarray(t[0], dtype=np.float64)
    return rec


def precompute(kb: Any, tasks: list[str], sizes: tuple[int, ...], draws: int, cache: Path,
               log: Callable[[str], None]) -> None:
    """Every record, resumably (one pickle per small task)."""
    from t2v_automl.suites import iter_suite

    memory = feature_memory()
    fisher, domain = embedders(kb, cache)
    fisher.fit()
    domain.fit()
    rec_dir = cache / "records"
    rec_dir.mkdir(parents=True, exist_ok=True)
    extractors = list(kb.extractor_names)
    t_start = time.perf_counter()
    done = 0
    total = len(tasks) * len(sizes) * draws
    for draw in range(draws):
        for size in sizes:
            todo = [t for t in tasks if not (rec_dir / f"{_key(t, size, draw)}.pkl").exists()]
            if not todo:
                done += len(tasks)
                continue
            for st in iter_suite("default", 0, tasks=todo, train_per_class=size,
                                 train_draw=draw):
                path = rec_dir / f"{_key(st.name, size, draw)}.pkl"
                rec = precompute_record(st, size, draw, extractors, memory, fisher, domain)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(pickle.dumps(rec))
                tmp.replace(path)
                done += 1
                log(f"[{done}/{total}] {st.name} n={size}/class: brute force "
                    f"{rec['brute_force_seconds']:.1f}s, fisher {rec['fisher_seconds']:.1f}s, "
                    f"{time.perf_counter() - t_start:.0f}s elapsed")


def load_records(cache: Path) -> list[dict[str, Any]]:
    """Every precomputed record, sorted by (draw, size, task)."""
    recs = [pickle.loads(p.read_bytes()) for p in sorted((cache / "records").glob("*.pkl"))]
    return sorted(recs, key=lambda r: (r["draw"], r["size"], r["task"]))


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--n-subset", type=int, default=6)
    ap.add_argument("--n-relabel", type=int, default=2)
    ap.add_argument("--task-seed", type=int, default=0)
    ap.add_argument("--draws", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=CACHE)
    ap.add_argument("--precompute-only", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from t2v_automl.knowledge import KnowledgeBase

    torch.set_num_threads(1)

    def log(msg: str) -> None:
        print(msg, flush=True)

    kb = KnowledgeBase.default()
    tasks = held_out_tasks(kb, args.n_subset, args.n_relabel, args.task_seed)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    log(f"{len(tasks)} held-out tasks x sizes {sizes} x {args.draws} draw(s); machine "
        f"{json.dumps(machine())}")
    precompute(kb, tasks, sizes, args.draws, args.cache_dir, log)
    if args.precompute_only:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
