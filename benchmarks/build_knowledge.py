"""Build the default knowledge base shipped with t2v-automl (``t2v_automl/data/``).

The build itself is :func:`t2v_automl.building.build_knowledge_details`; this script
adds the shipped recipe (one core, the default suite, ``--test-cap``) and writes the files.
Two phases, both cached on disk under ``benchmarks/.cache/`` (git-ignored) with joblib
``Memory``, so that an interrupted run resumes where it stopped:

1. **Brute force.** Every available extractor of the zoo is scored on every task of
   ``make_suite("default", seed=0)`` with :func:`t2v_automl.evaluation.evaluate_zoo`
   (linear head on frozen features, ``C`` fixed, resizable ImageNet networks at
   ``--input-size`` px to fit a CPU budget). To fit one CPU core:

   - the test split of a *subset* task is capped at ``--test-cap`` images (a stratified,
     deterministic subsample: the first images of each class in the suite's own shuffled
     order, in proportion to the class sizes); *relabel* tasks keep their full test split;
   - the relabel tasks of one image pool have identical images, so the features of a pool
     are computed once per extractor and reused for its other label functions (bit-for-bit
     the same features; scores are unchanged). The evaluation time recorded for every task
     of a pool is the pool's feature-extraction time plus the task's own probe-fit time,
     i.e. what evaluating that task alone would cost.

2. **Embeddings.** The default ``Task2VecEmbedder()`` (its settings are read from the
   estimator when the script runs, never written here) gives the main embedding of each
   task's *training* split; extra sets are kept for baselines (see
   :data:`t2v_automl.building.DEFAULT_EXTRA_EMBEDDINGS`).
   Each embedding is cached under a key made of the estimator's parameters, its
   ``embedding_meta_``, a digest of the embedding code and the task fingerprint, so a
   change of the embedder's defaults (or code) re-embeds. The wall time of each embedding
   is recorded when it is computed.

Outputs: the knowledge base (``t2v_automl/data/knowledge_default.npz``, written with
:meth:`KnowledgeBase.save`) and ``benchmarks/results/knowledge_correct.npz``: per task the
test labels and the per-test-image correctness of every extractor, plus the raw timings
and the build settings (JSON), so that split-half analyses can be recomputed without
re-evaluating (``benchmarks/knowledge_report.py`` reads it).

Usage::

    python benchmarks/build_knowledge.py               # full build (resumes from the cache)
    python benchmarks/build_knowledge.py --embed-only  # reuse cached scores, re-embed only

The build runs on one core (``torch.set_num_threads(1)``, ``n_jobs=1``) so that the
machine stays usable; ``--n-jobs`` only parallelises the embedding phase.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import t2v_automl
from t2v_automl.building import (
    EvaluationNotCachedError,
    build_knowledge_details,
)
from t2v_automl.embedding import EmbeddingMeta
from t2v_automl.extractors import list_extractors
from t2v_automl.knowledge import DEFAULT_KNOWLEDGE_FILE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import log, machine, save_correct  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "t2v_automl" / "data" / DEFAULT_KNOWLEDGE_FILE
DEFAULT_CORRECT = ROOT / "benchmarks" / "results" / "knowledge_correct.npz"
DEFAULT_CACHE = ROOT / "benchmarks" / ".cache"


def previous_build(path: Path) -> dict[str, Any]:
    """The build settings recorded in an existing correctness file (empty if none)."""
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return dict(json.loads(z["__meta__"].tobytes().decode()).get("build", {}))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embed-only", action="store_true",
                    help="take every evaluation from the cache (error if one is missing) and "
                         "recompute only the embeddings")
    ap.add_argument("--suite", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input-size", type=int, default=64,
                    help="input size of the resizable (ImageNet) extractors")
    ap.add_argument("--C", type=float, default=1.0,
                    help="inverse regularisation of the linear head")
    ap.add_argument("--test-cap", type=int, default=500,
                    help="largest test split of a subset task (0: no cap)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N tasks (debugging)")
    ap.add_argument("--n-jobs", type=int, default=1,
                    help="parallel jobs of the embedding phase (the brute force runs on one)")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--correct-out", type=Path, default=DEFAULT_CORRECT)
    args = ap.parse_args(argv)

    import logging

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
    # the build's own progress lines at INFO; the rest of the package at WARNING
    handler.addFilter(lambda r: r.module == "building" or r.levelno >= logging.WARNING)
    package_logger = logging.getLogger("t2v_automl")
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)
    torch.set_num_threads(1)
    threadpool_limits(1)  # BLAS of the logistic-regression linear head: one core as well
    t_start = time.perf_counter()
    names = list_extractors(available_only=True)
    log(f"t2v-automl {t2v_automl.__version__}; {len(names)} extractors: {', '.join(names)}; "
        f"suite {args.suite!r} seed {args.seed}")
    try:
        result = build_knowledge_details(
            args.suite, names, seed=args.seed, limit=args.limit or None,
            input_size=args.input_size, C=args.C, test_cap=args.test_cap or None,
            device="cpu", evaluations="cached" if args.embed_only else "compute",
            n_jobs=args.n_jobs, memory=args.cache_dir, verbose=True)
    except EvaluationNotCachedError as exc:
        log(f"error: {exc}")
        return 2
    kb = result.knowledge
    build = {"settings": result.settings, "machine": machine(),
             "command": "python benchmarks/build_knowledge.py" + "".join(
                 f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
             "t2v_automl": t2v_automl.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
             "evaluation_phase_wall_s": result.evaluation_wall_s,
             "evaluation_tasks_computed": result.n_computed, "notes": []}
    if args.embed_only:  # keep what the run that computed the scores recorded
        previous = previous_build(args.correct_out)
        for key in ("date", "evaluation_phase_wall_s", "evaluation_tasks_computed", "notes",
                    "machine"):
            if key in previous:
                build[key] = previous[key]
        build["embed_only_rebuild"] = time.strftime("%Y-%m-%d %H:%M")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    kb.save(args.out)
    size = args.out.stat().st_size
    log(f"wrote {args.out}: {len(kb)} tasks x {len(result.extractors)} extractors, embedding "
        f"dim {kb.meta.dim}, {size / 1e6:.1f} MB")
    build.update({"embedding_phase_wall_s": result.embedding_wall_s,
                  "total_wall_s": time.perf_counter() - t_start,
                  "knowledge_file_bytes": size,
                  "embedders": {k or "main": {"params": v["params"],
                                              "meta": EmbeddingMeta.to_dict(v["meta"])}
                                for k, v in result.embeddings.items()}})
    save_correct(args.correct_out, result.rows, result.extractors, result.eval_time,
                 result.extract_time, build)
    log(f"wrote {args.correct_out}; done in {time.perf_counter() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
