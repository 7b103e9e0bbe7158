"""Build the default knowledge base shipped with t2v-automl (``t2v_automl/data/``).

Two phases, both cached on disk under ``benchmarks/.cache/`` (git-ignored) with joblib
``Memory``, so that an interrupted run resumes where it stopped:

1. **Brute force.** Every available extractor of the zoo is scored on every task of
   ``make_suite("default", seed=0)`` with :func:`t2v_automl.evaluation.evaluate_zoo`
   (linear probe on frozen features, ``C`` fixed, resizable ImageNet networks at
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
   task's *training* split; extra sets are kept for baselines (see ``EXTRA_EMBEDDERS``).
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
import collections
import hashlib
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from joblib import Memory
from threadpoolctl import threadpool_limits
from tqdm import tqdm

import t2v_automl
from t2v_automl.embedding import EmbeddingMeta
from t2v_automl.estimators import Task2VecEmbedder
from t2v_automl.evaluation import evaluate_zoo
from t2v_automl.extractors import Extractor, get_extractor, list_extractors
from t2v_automl.knowledge import DEFAULT_KNOWLEDGE_FILE, KnowledgeBase
from t2v_automl.suites import SuiteTask, iter_suite
from t2v_automl.tasks import Task

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "t2v_automl" / "data" / DEFAULT_KNOWLEDGE_FILE
DEFAULT_CORRECT = ROOT / "benchmarks" / "results" / "knowledge_correct.npz"
DEFAULT_CACHE = ROOT / "benchmarks" / ".cache"

#: Extra embedding sets kept in the knowledge base for baselines: name -> the
#: ``Task2VecEmbedder`` parameters that differ from its defaults.
EXTRA_EMBEDDERS: dict[str, dict[str, Any]] = {
    "domain": {"method": "domain"},
    "label_stat": {"method": "label_stat"},
    "montecarlo_full": {"method": "montecarlo", "skip_layers": 0},
}

#: Files whose code decides what an embedding is; their digest is part of the cache key.
_EMBEDDING_CODE = ("fisher.py", "probes.py", "embedding.py", "estimators/_embedder.py")
#: Estimator parameters that do not change an embedding's values.
_RUNTIME_PARAMS = ("memory", "verbose", "n_jobs")
#: Bump when what a cached embedding entry holds changes.
_EMBED_CACHE_VERSION = 1


class NotCachedError(RuntimeError):
    """An evaluation was not found in the cache in ``--embed-only`` mode."""


# ----------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    """Print a timestamped line (the build is meant to run under nohup)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def code_digest() -> str:
    """sha256 of the source files that decide what an embedding is."""
    pkg = Path(t2v_automl.__file__).resolve().parent
    h = hashlib.sha256()
    for rel in _EMBEDDING_CODE:
        h.update(rel.encode() + b"\0")
        h.update((pkg / rel).read_bytes())
    return h.hexdigest()


def cap_test(test: Task, cap: int | None) -> Task:
    """A stratified, deterministic subsample of at most ``cap`` test images.

    Each class keeps a share of ``cap`` proportional to its size (largest remainders, at
    least one image), taken from the start of the suite's own shuffled order; the images
    keep their relative order.

    Parameters
    ----------
    test : Task
        The test split.
    cap : int or None
        Largest number of images to keep; ``None`` keeps all.

    Returns
    -------
    Task
        ``test`` itself when it is small enough, else a new task with the same name,
        classes and provenance.
    """
    n = test.n_images
    if cap is None or n <= cap:
        return test
    counts = np.bincount(test.labels, minlength=test.n_classes)
    exact = counts * cap / n
    keep = np.maximum(np.floor(exact).astype(int), 1)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    for c in order[: max(0, cap - int(keep.sum()))]:
        keep[c] += 1
    keep = np.minimum(keep, counts)
    idx = np.sort(np.concatenate([np.flatnonzero(test.labels == c)[:k]
                                  for c, k in enumerate(keep)]))
    return Task(test.images[idx], test.labels[idx], test.classes.copy(), test.name,
                dict(test.provenance))


class FeatureMemo:
    """Reuse features of identical image arrays across tasks (relabel image pools).

    Wraps ``transform`` of the (process-wide, shared) extractor instances. The key is a
    digest of the image bytes plus the call's settings, so features are only reused for
    identical inputs; they are bit-for-bit what a fresh call would return.

    Parameters
    ----------
    maxsize : int
        Feature matrices kept (least recently used ones are dropped).
    forbid : bool
        Raise :class:`NotCachedError` instead of computing features (``--embed-only``:
        every evaluation must come from the cache).
    """

    def __init__(self, maxsize: int = 40, forbid: bool = False) -> None:
        self.maxsize = maxsize
        self.forbid = forbid
        self.store: collections.OrderedDict[tuple[Any, ...], np.ndarray] = \
            collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def wrap(self, ext: Extractor) -> None:
        """Replace ``ext.transform`` by a memoising wrapper (once)."""
        if getattr(ext, "_kb_memo", False):
            return
        original: Callable[..., np.ndarray] = ext.transform

        def transform(images: np.ndarray, batch_size: int = 128,
                      input_size: int | None = None) -> np.ndarray:
            arr = np.ascontiguousarray(images)
            digest = hashlib.blake2b(arr.tobytes(), digest_size=20).hexdigest()
            key = (ext.name, digest, arr.shape, str(arr.dtype), batch_size, input_size)
            if key in self.store:
                self.hits += 1
                self.store.move_to_end(key)
                return self.store[key].copy()
            if self.forbid:
                raise NotCachedError(
                    f"the evaluation of extractor {ext.name!r} is not in the cache; run "
                    "build_knowledge.py without --embed-only first.")
            self.misses += 1
            out = original(images, batch_size=batch_size, input_size=input_size)
            self.store[key] = out.copy()
            while len(self.store) > self.maxsize:
                self.store.popitem(last=False)
            return out

        ext.transform = transform  # type: ignore[method-assign]
        ext._kb_memo = True  # type: ignore[attr-defined]


def extractor_info(names: list[str], input_size: int, C: float) -> dict[str, dict[str, Any]]:
    """What the knowledge base records about each extractor."""
    info = {}
    for name in names:
        ext = get_extractor(name, "cpu")
        info[name] = {
            "source_dataset": ext.source,
            "description": ext.description,
            "pretrained": ext.pretrained,
            "native_input_size": int(ext.input_size),
            "input_size_used": int(ext.resolve_input_size(input_size)),
            "resizable": bool(ext.resizable),
            "channels": int(ext.channels),
            "feature_dim": int(ext.feature_dim),
            "weights_sha256": ext.weights_sha256,
            "weights_file": None if ext.weights_path is None else Path(ext.weights_path).name,
            "has_source_head": bool(ext.has_source_head),
            "n_source_classes": ext.n_source_classes,
            "probe": f"StandardScaler + LogisticRegression(C={C:g}) on frozen features",
        }
    return info


# ----------------------------------------------------------------------------- phase 1
def evaluate_all(tasks: Iterator[SuiteTask], n_tasks: int, names: list[str], memory: Memory,
                 input_size: int, C: float, test_cap: int | None, forbid: bool
                 ) -> dict[str, Any]:
    """Score every extractor on every task; return per-task rows of results."""
    memo = FeatureMemo(forbid=forbid)
    for name in names:
        memo.wrap(get_extractor(name, "cpu"))
    rows: list[dict[str, Any]] = []
    n_calls = 0
    t_start = time.perf_counter()
    bar = tqdm(tasks, total=n_tasks, desc="brute force", mininterval=30, file=sys.stderr)
    for st in bar:
        test = cap_test(st.test, test_cap if st.kind == "subset" else None)
        t0 = time.perf_counter()
        zoo = evaluate_zoo(names, [(st.train, test)], n_jobs=1, memory=memory,
                           input_size=input_size, C=C)
        dt = time.perf_counter() - t0
        res = zoo.results[0]
        rows.append({
            "name": st.name, "kind": st.kind, "n_classes": st.n_classes,
            "provenance": dict(st.provenance), "n_train": st.train.n_images,
            "n_test_full": st.test.n_images, "n_test": test.n_images,
            "train_fingerprint": st.train.fingerprint, "test_fingerprint": test.fingerprint,
            "scores": zoo.scores[0], "stderr": zoo.stderr[0],
            "extract_time": np.array([r.extract_time_s for r in res]),
            "fit_time": np.array([r.fit_time_s for r in res]),
            "input_size": np.array([r.input_size for r in res]),
            "correct": np.stack([r.correct for r in res]),
            "y_test": test.labels.copy(),
        })
        best = names[int(np.argmax(zoo.scores[0]))]
        rows[-1]["computed"] = memo.misses + memo.hits > n_calls
        if rows[-1]["computed"]:  # computed, not (all) read from the cache
            n_calls = memo.misses + memo.hits
            log(f"{len(rows)}/{n_tasks} {st.name}: n_train={st.train.n_images} "
                f"n_test={test.n_images} best={best} ({zoo.scores[0].max():.3f}) {dt:.1f}s "
                f"(feature reuse hits {memo.hits}, misses {memo.misses})")
    n_computed = sum(1 for r in rows if r["computed"])
    log(f"brute force done in {time.perf_counter() - t_start:.0f}s ({n_computed} tasks "
        "computed, the others read from the cache)")
    return {"rows": rows, "n_computed": n_computed}


def pool_eval_times(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation time per cell as if each task were evaluated alone.

    For the relabel tasks of one image pool, features are extracted once and reused; the
    extraction time charged to each of them is the largest one recorded in the pool (the
    one that actually ran), plus the task's own fit time.

    Returns
    -------
    eval_time : ndarray of shape (n_tasks, n_extractors)
    extract_time : ndarray of shape (n_tasks, n_extractors)
        The corrected extraction time alone.
    """
    extract = np.stack([r["extract_time"] for r in rows])
    fit = np.stack([r["fit_time"] for r in rows])
    pools: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if r["kind"] == "relabel":
            pools.setdefault(r["provenance"]["pool"], []).append(i)
    corrected = extract.copy()
    for idx in pools.values():
        corrected[idx] = extract[idx].max(axis=0)
    return corrected + fit, corrected


# ----------------------------------------------------------------------------- phase 2
def _embed_cached(key: dict[str, Any], task: Task) -> dict[str, Any]:
    """Embed one task with ``Task2VecEmbedder(**key["params"])``; what the cache stores."""
    est = Task2VecEmbedder(**key["params"]).fit()
    t0 = time.perf_counter()
    [emb] = est.embed([task])
    dt = time.perf_counter() - t0
    return {"values": np.asarray(emb.values, dtype=np.float64),
            "n_images": int(emb.meta.n_images), "time_s": float(dt),
            "meta": emb.meta.to_dict()}


def embedders() -> dict[str, Task2VecEmbedder]:
    """The main (``""``) and extra embedders, fitted, with their own defaults."""
    out = {"": Task2VecEmbedder()}
    out.update({name: Task2VecEmbedder(**kw) for name, kw in EXTRA_EMBEDDERS.items()})
    return {name: est.fit() for name, est in out.items()}


def embed_all(tasks: Callable[[], Iterator[Task]], n_tasks: int, memory: Memory, n_jobs: int
              ) -> dict[str, Any]:
    """Embed every training task with every embedder (cached).

    ``tasks()`` yields the training tasks afresh for each embedding set, so that only one
    task's images are held at a time.
    """
    from joblib import Parallel, delayed

    ests = embedders()
    digest = code_digest()
    cached = memory.cache(_embed_cached, ignore=["task"])
    out: dict[str, Any] = {}
    t_start = time.perf_counter()
    for name, est in ests.items():
        params = {k: v for k, v in est.get_params().items() if k not in _RUNTIME_PARAMS}
        label = name or "main"
        log(f"embedding set {label!r}: {params}")
        base = {"version": _EMBED_CACHE_VERSION, "params": params,
                "meta": est.embedding_meta_.to_dict(), "code": digest}
        jobs = (delayed(cached)({**base, "task": [t.name, t.fingerprint]}, t)
                for t in tasks())
        res = list(tqdm(Parallel(n_jobs=n_jobs, return_as="generator")(jobs),
                        total=n_tasks, desc=f"embedding ({label})", mininterval=30,
                        file=sys.stderr))
        out[name] = {"meta": est.embedding_meta_, "params": params,
                     "values": np.stack([r["values"] for r in res]),
                     "n_images": [r["n_images"] for r in res],
                     "time_s": np.array([r["time_s"] for r in res])}
        log(f"embedding set {label!r}: dim {est.embedding_meta_.dim}, median "
            f"{np.median(out[name]['time_s']):.2f}s/task, total "
            f"{out[name]['time_s'].sum():.0f}s (cached times included)")
    log(f"embeddings done in {time.perf_counter() - t_start:.0f}s")
    return out


# ----------------------------------------------------------------------------- outputs
def machine() -> dict[str, Any]:
    """Where the figures come from."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform()}


def save_correct(path: Path, rows: list[dict[str, Any]], names: list[str],
                 eval_time: np.ndarray, extract_time: np.ndarray, build: dict[str, Any]
                 ) -> None:
    """Write the per-task correctness arrays, raw timings and build settings (npz)."""
    arrays: dict[str, np.ndarray] = {}
    for i, r in enumerate(rows):
        arrays[f"correct_{i}"] = np.packbits(r["correct"], axis=1)
        arrays[f"y_test_{i}"] = r["y_test"].astype(np.int16)
    arrays["scores"] = np.stack([r["scores"] for r in rows])
    arrays["stderr"] = np.stack([r["stderr"] for r in rows])
    arrays["eval_time"] = eval_time
    arrays["extract_time"] = extract_time
    arrays["extract_time_raw"] = np.stack([r["extract_time"] for r in rows])
    arrays["fit_time"] = np.stack([r["fit_time"] for r in rows])
    arrays["input_size"] = np.stack([r["input_size"] for r in rows])
    meta = {"task_names": [r["name"] for r in rows], "extractor_names": names,
            "n_test": [int(r["y_test"].shape[0]) for r in rows],
            "kind": [r["kind"] for r in rows],
            "source_dataset": [r["provenance"]["source_dataset"] for r in rows],
            "pool": [r["provenance"]["pool"] for r in rows],
            "label_function": [r["provenance"]["label_function"] for r in rows],
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


def previous_build(path: Path) -> dict[str, Any]:
    """The build settings recorded in an existing correctness file (empty if none)."""
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return dict(json.loads(z["__meta__"].tobytes().decode()).get("build", {}))


def build_kb(rows: list[dict[str, Any]], names: list[str], emb: dict[str, Any],
             eval_time: np.ndarray, info: dict[str, dict[str, Any]], settings: dict[str, Any]
             ) -> KnowledgeBase:
    """Assemble the knowledge base."""
    main = emb[""]
    provenance = []
    for i, r in enumerate(rows):
        p = dict(r["provenance"])
        p.update({
            "name": r["name"],
            "n_train": int(r["n_train"]),
            "n_test": int(r["n_test_full"]),
            "n_test_evaluated": int(r["n_test"]),
            "test_subsampled": bool(r["n_test"] < r["n_test_full"]),
            "features_shared_in_pool": r["kind"] == "relabel",
            "train_fingerprint": r["train_fingerprint"],
            "test_fingerprint": r["test_fingerprint"],
            "embedding_n_images": int(main["n_images"][i]),
            "extra_embedding_n_images": {k: int(emb[k]["n_images"][i])
                                         for k in EXTRA_EMBEDDERS},
            "extra_embed_time_s": {k: float(emb[k]["time_s"][i]) for k in EXTRA_EMBEDDERS},
            "evaluation": settings,
        })
        provenance.append(p)
    return KnowledgeBase(
        main["meta"],
        task_names=[r["name"] for r in rows],
        embeddings=main["values"],
        extractor_names=names,
        scores=np.stack([r["scores"] for r in rows]),
        stderr=np.stack([r["stderr"] for r in rows]),
        eval_time=eval_time,
        embed_time=main["time_s"],
        provenance=provenance,
        extractor_info=info,
        extra_embeddings={k: (emb[k]["meta"], emb[k]["values"]) for k in EXTRA_EMBEDDERS},
    )


# ----------------------------------------------------------------------------- main
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
    ap.add_argument("--C", type=float, default=1.0, help="inverse regularisation of the probe")
    ap.add_argument("--test-cap", type=int, default=500,
                    help="largest test split of a subset task (0: no cap)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N tasks (debugging)")
    ap.add_argument("--n-jobs", type=int, default=1,
                    help="parallel jobs of the embedding phase (the brute force runs on one)")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--correct-out", type=Path, default=DEFAULT_CORRECT)
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    threadpool_limits(1)  # BLAS of the logistic-regression probe: one core as well
    t_start = time.perf_counter()
    test_cap = args.test_cap or None
    names = list_extractors(available_only=True)
    log(f"t2v-automl {t2v_automl.__version__}; {len(names)} extractors: {', '.join(names)}")

    def suite() -> Iterator[SuiteTask]:
        it = iter_suite(args.suite, args.seed)
        return itertools.islice(it, args.limit) if args.limit else it

    n_tasks = sum(1 for _ in suite())
    log(f"suite {args.suite!r} seed {args.seed}: {n_tasks} tasks")

    eval_mem = Memory(str(args.cache_dir / "evaluations"), verbose=0)
    emb_mem = Memory(str(args.cache_dir / "embeddings"), verbose=0)
    settings = {"suite": args.suite, "seed": args.seed, "input_size": args.input_size,
                "C": args.C, "test_cap_subset_tasks": test_cap, "n_jobs": 1,
                "torch_threads": 1, "device": "cpu"}
    t0 = time.perf_counter()
    try:
        ev = evaluate_all(suite(), n_tasks, names, eval_mem, args.input_size, args.C,
                          test_cap, forbid=args.embed_only)
    except NotCachedError as exc:
        log(f"error: {exc}")
        return 2
    t_eval = time.perf_counter() - t0
    rows = ev["rows"]
    eval_time, extract_time = pool_eval_times(rows)
    build = {"settings": settings, "machine": machine(),
             "command": "python benchmarks/build_knowledge.py" + "".join(
                 f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
             "t2v_automl": t2v_automl.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
             "evaluation_phase_wall_s": t_eval, "evaluation_tasks_computed": ev["n_computed"],
             "notes": []}
    if args.embed_only:  # keep what the run that computed the scores recorded
        previous = previous_build(args.correct_out)
        for key in ("date", "evaluation_phase_wall_s", "evaluation_tasks_computed", "notes",
                    "machine"):
            if key in previous:
                build[key] = previous[key]
        build["embed_only_rebuild"] = time.strftime("%Y-%m-%d %H:%M")
    save_correct(args.correct_out, rows, names, eval_time, extract_time, build)
    log(f"wrote {args.correct_out}")

    t0 = time.perf_counter()
    emb = embed_all(lambda: (st.train for st in suite()), n_tasks, emb_mem, args.n_jobs)
    t_emb = time.perf_counter() - t0
    info = extractor_info(names, args.input_size, args.C)
    kb = build_kb(rows, names, emb, eval_time, info, settings)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    kb.save(args.out)
    size = args.out.stat().st_size
    log(f"wrote {args.out}: {len(kb)} tasks x {len(names)} extractors, embedding dim "
        f"{kb.meta.dim}, {size / 1e6:.1f} MB")
    build.update({"embedding_phase_wall_s": t_emb,
                  "total_wall_s": time.perf_counter() - t_start,
                  "knowledge_file_bytes": size,
                  "embedders": {k or "main": {"params": v["params"],
                                              "meta": EmbeddingMeta.to_dict(v["meta"])}
                                for k, v in emb.items()}})
    save_correct(args.correct_out, rows, names, eval_time, extract_time, build)
    log(f"done in {time.perf_counter() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
