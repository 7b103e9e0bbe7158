"""Selection latency vs. the number of known tasks (issue 8, item 4).

How long does ranking the extractors for **one new task** take when the knowledge base
holds 1,000, 10,000 or 100,000 tasks, and how much memory does it need?

The knowledge bases are synthetic but shaped like the shipped one: embeddings of its
dimension (``KnowledgeBase.default().meta.dim``: 14,848 Fisher values of ``mobilenet_v2``),
positive and heavy-tailed like Fisher embeddings (each dimension scaled by the shipped
base's mean of that dimension, 200 clusters of "source datasets" with log-normal spread
around their centre, a log-normal overall scale per task, 3.4 % exact zeros as in the
shipped base) and the scores of 13 extractors (a quality per cluster and extractor plus
noise; 5 % missing). They are written as float32 to a temporary ``.npy`` file (5.9 GB at
100k) and read from it as a memory map.

Two paths are timed for each metric:

``selector``
    The estimator: ``ExtractorSelector(strategy=..., metric=..., dtype=...).fit(E, Y)``,
    then ``rank`` of one new task. ``fit`` keeps the embeddings in ``dtype`` and builds a
    :class:`~t2v_automl.distances.DistanceIndex` of them (plus the typical distance of
    :meth:`~ExtractorSelector.novelty`); each query is then the index's distances, the
    neighbour vote and the ranking. float64 for every metric (up to 10,000 known tasks);
    ``dtype="float32"`` for Hellinger and normalised cosine at every size.
``index``
    :class:`t2v_automl.distances.DistanceIndex` built directly from the known tasks
    (float32 memory map in, float32 or float64 prepared rows stored), then per query the
    distances, the same inverse-distance vote of the 3 nearest measured tasks per
    extractor as ``ExtractorSelector(strategy="nearest")`` and the ranking: the floor under
    the estimator. Its rankings are checked against the float64 selector's where both
    run.

Latency is the wall time of ranking one new task, each query a different new task, after
one warm-up query; median and 95th percentile over the queries. Memory is the process's
peak resident set size (``VmHWM``, reset before each phase through
``/proc/self/clear_refs``) minus the resident size before the phase: what the phase
added. Run::

    python benchmarks/bench_selection_latency.py               # 1k, 10k, 100k (~25 min)
    python benchmarks/bench_selection_latency.py --sizes 1000 --repeats 5 --quick
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, md_table, write_results  # noqa: E402

from t2v_automl.distances import DistanceIndex  # noqa: E402
from t2v_automl.estimators import ExtractorSelector, neighbour_average  # noqa: E402
from t2v_automl.knowledge import KnowledgeBase  # noqa: E402
from t2v_automl.metrics import ranking_order  # noqa: E402

METRICS = ("hellinger", "symmetric", "asymmetric", "normalized_cosine")
N_EXTRACTORS = 13
N_CLUSTERS = 200
ZERO_FRACTION = 0.034
MISSING_FRACTION = 0.05
#: Above this many known tasks the ``selector`` path is not run (see ``_selector_memory``).
SELECTOR_MAX_TASKS = 10_000
#: Metrics of the ``ExtractorSelector(dtype="float32")`` rows (also run beyond the cap).
SELECTOR_FLOAT32_METRICS = ("hellinger", "normalized_cosine")
GB = 1e9


# ----------------------------------------------------------------------------- memory
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Peak RSS added by a block of code (Linux: ``VmHWM`` reset via ``clear_refs``)."""

    def __enter__(self) -> PeakMemory:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.before = _status_kb("VmRSS")
        self.added = math.nan
        return self

    def __exit__(self, *exc: object) -> None:
        if self.reset:
            self.added = max(0, _status_kb("VmHWM") - self.before)


# ----------------------------------------------------------------------------- data
def profile(dim: int | None) -> np.ndarray:
    """Per-dimension mean of the shipped knowledge base's embeddings (the realistic scale)."""
    kb = KnowledgeBase.default()
    p = kb.embeddings.mean(axis=0)
    if dim is not None and dim != p.shape[0]:  # --quick: a shorter profile of the same kind
        p = np.resize(p, dim)
    return p


def synthetic_knowledge(n: int, prof: np.ndarray, path: Path, seed: int
                        ) -> tuple[np.memmap, np.ndarray, np.ndarray]:
    """``n`` Fisher-like embeddings (float32 memory map), their scores and the cluster centres."""
    rng = np.random.default_rng(seed)
    dim = prof.shape[0]
    centres = (prof * np.exp(rng.standard_normal((N_CLUSTERS, dim)))).astype(np.float32)
    quality = rng.uniform(0.3, 0.95, (N_CLUSTERS, N_EXTRACTORS))
    E = np.lib.format.open_memmap(str(path), mode="w+", dtype=np.float32, shape=(n, dim))
    clusters = rng.integers(0, N_CLUSTERS, n)
    step = max(1, int(64e6 // (4 * dim)))
    for s in range(0, n, step):
        E[s:s + step] = _tasks_like(rng, centres[clusters[s:s + step]])
    E.flush()
    Y = np.clip(quality[clusters] + 0.03 * rng.standard_normal((n, N_EXTRACTORS)), 0.0, 1.0)
    missing = rng.random(Y.shape) < MISSING_FRACTION
    missing[np.arange(n), rng.integers(0, N_EXTRACTORS, n)] = False  # one score per row
    Y[missing] = np.nan
    return E, Y, centres


def _tasks_like(rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    k, dim = centres.shape
    x = centres * np.exp(0.5 * rng.standard_normal((k, dim), dtype=np.float32))
    x *= np.exp(rng.standard_normal((k, 1), dtype=np.float32))
    x[rng.random((k, dim), dtype=np.float32) < ZERO_FRACTION] = 0.0
    return x


def new_tasks(centres: np.ndarray, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pick = centres[rng.integers(0, centres.shape[0], count)]
    return _tasks_like(rng, pick).astype(np.float64)


# ----------------------------------------------------------------------------- timing
def latencies(rank_one: Callable[[np.ndarray], np.ndarray], queries: np.ndarray,
              repeats: int, budget_s: float) -> tuple[list[float], list[np.ndarray]]:
    """Time ``rank_one`` on one new task at a time (after one warm-up call)."""
    rank_one(queries[:1])
    times: list[float] = []
    ranks: list[np.ndarray] = []
    start = time.perf_counter()
    for i in range(repeats):
        q = queries[i % len(queries)][None, :]
        t = time.perf_counter()
        ranks.append(rank_one(q)[0])
        times.append(time.perf_counter() - t)
        if i >= 4 and time.perf_counter() - start > budget_s:
            break
    return times, ranks


def summary(times: Sequence[float]) -> dict[str, Any]:
    a = np.asarray(times)
    return {"n_queries": int(a.size), "median_ms": float(np.median(a) * 1e3),
            "p95_ms": float(np.percentile(a, 95) * 1e3), "max_ms": float(a.max() * 1e3)}


def run_selector(E: np.ndarray, Y: np.ndarray, names: list[str], strategy: str, metric: str,
                 queries: np.ndarray, repeats: int, budget_s: float, dtype: str = "float64"
                 ) -> tuple[dict[str, Any], list[np.ndarray]]:
    sel = ExtractorSelector(strategy=strategy, metric=metric, extractor_names=names,
                            dtype=dtype)
    with PeakMemory() as fit_mem:
        t = time.perf_counter()
        sel.fit(E, Y)
        fit_s = time.perf_counter() - t
    with PeakMemory() as q_mem:
        times, ranks = latencies(lambda q: sel.rank(q), queries, repeats, budget_s)
    row = {"fit_s": fit_s, "fit_peak_gb": fit_mem.added / GB,
           "query_peak_gb": q_mem.added / GB, "load_1min": os.getloadavg()[0],
           **summary(times)}
    return row, ranks


def run_index(E: np.ndarray, Y: np.ndarray, names: list[str], metric: str, dtype: str,
              queries: np.ndarray, repeats: int, budget_s: float
              ) -> tuple[dict[str, Any], list[np.ndarray]]:
    labels = np.asarray(names, dtype=object)
    with PeakMemory() as build_mem:
        t = time.perf_counter()
        index = DistanceIndex(E, metric, dtype=dtype)
        build_s = time.perf_counter() - t

    def rank_one(q: np.ndarray) -> np.ndarray:
        scores = neighbour_average(index.query(q), Y, 3, "distance")
        return labels[ranking_order(scores)]

    with PeakMemory() as q_mem:
        times, ranks = latencies(rank_one, queries, repeats, budget_s)
    row = {"fit_s": build_s, "fit_peak_gb": build_mem.added / GB,
           "index_gb": index.nbytes / GB, "query_peak_gb": q_mem.added / GB,
           "load_1min": os.getloadavg()[0], **summary(times)}
    return row, ranks


def _agreement(ranks: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> dict[str, str]:
    """How many queries have the reference's full ranking and its top-1, as ``"k/n"``."""
    pairs = list(zip(ranks, ref, strict=False))
    same = sum(bool(np.array_equal(a, b)) for a, b in pairs)
    top1 = sum(bool(a[0] == b[0]) for a, b in pairs)
    return {"same_ranking_as_selector": f"{same}/{len(pairs)}",
            "same_top1_as_selector": f"{top1}/{len(pairs)}"}


def _total_gb() -> float:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / GB


def _available_gb() -> float:
    """``MemAvailable`` of ``/proc/meminfo`` in GB (other jobs share the machine)."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / GB
    return _total_gb()  # pragma: no cover - not Linux


def _selector_memory(n: int, dim: int) -> float:
    """GB of one float64 copy of the known embeddings."""
    return n * dim * 8 / GB


def growth(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Log-log slope of the median latency between consecutive sizes, per path and metric."""
    out = []
    def key(r: dict[str, Any]) -> tuple[str, str, str, str]:
        return r["path"], r["strategy"], r["metric"], r["dtype"]

    done = [r for r in rows if r.get("median_ms") is not None]
    for k in sorted({key(r) for r in done}):
        pts = sorted((r["n_known"], r["median_ms"]) for r in done if key(r) == k)
        for (n0, t0), (n1, t1) in zip(pts, pts[1:], strict=False):
            out.append({"path": k[0], "strategy": k[1], "metric": k[2], "dtype": k[3],
                        "from": n0, "to": n1, "latency_ratio": t1 / t0,
                        "exponent": math.log(t1 / t0) / math.log(n1 / n0)})
    return out


# ----------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=20, help="queries per configuration")
    ap.add_argument("--budget", type=float, default=40.0,
                    help="seconds of queries per configuration (at least 5 queries)")
    ap.add_argument("--dim", type=int, default=None,
                    help="embedding dimension (default: the shipped knowledge base's)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: no result files")
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the memory maps")
    ap.add_argument("--out", default="selection_latency")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads (1: steady figures on a machine shared with other jobs)")
    args = ap.parse_args(argv)
    with threadpool_limits(args.blas_threads):
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> dict[str, Any]:
    prof = profile(args.dim)
    dim = prof.shape[0]
    names = [f"extractor{j:02d}" for j in range(N_EXTRACTORS)]
    rows: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="t2v-latency-", dir=args.tmp))
    try:
        for n in args.sizes:
            path = tmp / f"known_{n}.npy"
            t = time.perf_counter()
            E, Y, centres = synthetic_knowledge(n, prof, path, seed=n)
            print(f"[{n}] synthetic knowledge base in {time.perf_counter() - t:.1f} s",
                  flush=True)
            queries = new_tasks(centres, max(args.repeats, 5), seed=n + 1)
            base = {"n_known": n, "dim": dim}
            selector_ranks: dict[str, list[np.ndarray]] = {}
            sel_configs = [("nearest", m, "float64") for m in METRICS] + [
                ("model2vec", "hellinger", "float64")] + [
                ("nearest", m, "float32") for m in SELECTOR_FLOAT32_METRICS]
            for strategy, metric, dtype in sel_configs:
                # fit: the embeddings in dtype (a copy unless given so) + the index's rows
                need = 2 * _selector_memory(n, dim) * np.dtype(dtype).itemsize / 8 + 2.0
                if n > SELECTOR_MAX_TASKS and (dtype == "float64" or need > _available_gb()):
                    rows.append({**base, "path": "selector", "strategy": strategy,
                                 "metric": metric, "dtype": dtype, "median_ms": None,
                                 "not_run": (
                                     f"fit holds the {dtype} embeddings and the index's "
                                     f"prepared rows (about {need - 2:.0f} GB, more at "
                                     f"peak); {_available_gb():.0f} GB of "
                                     f"{_total_gb():.0f} GB were available")})
                    continue
                Ed = E if dtype == "float32" else np.asarray(E, dtype=np.float64)
                row, ranks = run_selector(Ed, Y, names, strategy, metric, queries,
                                          args.repeats, args.budget, dtype)
                del Ed
                gc.collect()
                if strategy == "nearest":
                    if dtype == "float64":
                        selector_ranks[metric] = ranks
                    elif metric in selector_ranks:
                        row.update(_agreement(ranks, selector_ranks[metric]))
                rows.append({**base, "path": "selector", "strategy": strategy,
                             "metric": metric, "dtype": dtype, **row})
                print(f"[{n}] selector {strategy}/{metric}/{dtype}: fit {row['fit_s']:.1f} s, "
                      f"rank median {row['median_ms']:.1f} ms", flush=True)
            configs = [(m, "float32") for m in METRICS] + [
                ("hellinger", "float64"), ("normalized_cosine", "float64")]
            for metric, dtype in configs:
                need = n * dim * np.dtype(dtype).itemsize / GB + 2.0
                if need > _available_gb():
                    rows.append({**base, "path": "index", "strategy": "nearest",
                                 "metric": metric, "dtype": dtype, "median_ms": None,
                                 "not_run": f"needs about {need:.0f} GB; "
                                            f"{_available_gb():.0f} GB were available"})
                    continue
                row, ranks = run_index(E, Y, names, metric, dtype, queries, args.repeats,
                                       args.budget)
                if metric in selector_ranks:
                    row.update(_agreement(ranks, selector_ranks[metric]))
                rows.append({**base, "path": "index", "strategy": "nearest",
                             "metric": metric, "dtype": dtype, **row})
                print(f"[{n}] index {metric}/{dtype}: build {row['fit_s']:.1f} s, "
                      f"rank median {row['median_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms",
                      flush=True)
            del E
            gc.collect()
            path.unlink()
    finally:
        for p in tmp.glob("*"):
            p.unlink()
        tmp.rmdir()

    data = {"machine": {**machine(), "memory_gb": _total_gb(),
                        "blas_threads": args.blas_threads},
            "setup": {"dim": dim, "n_extractors": N_EXTRACTORS, "n_clusters": N_CLUSTERS,
                      "zero_fraction": ZERO_FRACTION, "missing_fraction": MISSING_FRACTION,
                      "n_neighbors": 3, "weights": "distance", "repeats": args.repeats,
                      "budget_s": args.budget, "command": "python "
                      "benchmarks/bench_selection_latency.py " + " ".join(argv or sys.argv[1:])},
            "rows": rows, "growth": growth(rows)}
    if not args.quick:
        jp, mp = write_results(args.out, data, markdown(data))
        print(f"wrote {jp} and {mp}")
    return data


def markdown(data: dict[str, Any]) -> str:
    m, s = data["machine"], data["setup"]

    def gb(x: Any) -> Any:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, 2)

    table = []
    for r in data["rows"]:
        if r.get("median_ms") is None:
            table.append([r["n_known"], r["path"], r["strategy"], r["metric"], r["dtype"],
                          "not run", "", "", "", "", "", r.get("not_run", "")])
            continue
        table.append([r["n_known"], r["path"], r["strategy"], r["metric"], r["dtype"],
                      round(r["median_ms"], 1), round(r["p95_ms"], 1), r["n_queries"],
                      round(r["fit_s"], 2), gb(max(r["fit_peak_gb"], r["query_peak_gb"])),
                      round(r["load_1min"], 1), r.get("same_ranking_as_selector", "")])
    grow = [[g["path"], g["strategy"], g["metric"], g["dtype"], f"{g['from']} -> {g['to']}",
             round(g["latency_ratio"], 1), round(g["exponent"], 2)] for g in data["growth"]]
    return "\n".join([
        "# Selection latency vs. number of known tasks",
        "",
        f"Command: `{s['command'].strip()}`. Synthetic knowledge bases shaped like the "
        f"shipped one: dim {s['dim']} (positive, heavy-tailed, {s['zero_fraction']:.1%} "
        f"zeros, {s['n_clusters']} clusters), {s['n_extractors']} extractors "
        f"({s['missing_fraction']:.0%} of scores missing); `nearest` = k={s['n_neighbors']}, "
        f"inverse-distance weights. Machine: {m['platform']}, {m['cpu_count']} cores "
        f"(shared with other jobs), {m['memory_gb']:.0f} GB RAM, BLAS threads "
        f"{m['blas_threads']}, Python {m['python']}, {m['date']}, commit "
        f"{m.get('git_commit', '?')}.",
        "",
        "`selector` = `ExtractorSelector(strategy, metric, dtype=dtype).fit(E, Y)` then "
        "`rank` of one new task (the estimator; it ranks through a `DistanceIndex` kept in "
        "`dtype`); `index` = `distances.DistanceIndex(E, metric, dtype)` built directly, then "
        "per task the distances, the selector's own neighbour vote and ranking (the floor "
        "under the estimator). `fit / build` = selector fit or index "
        "construction; `peak GB` = the largest RSS the fit/build or the queries added. "
        "`load` = the machine's 1-minute load average after the queries (2 cores: above 2, "
        "other jobs were competing for them). `same ranking` = queries whose full ranking "
        "equals the float64 selector's.",
        "",
        md_table(["known tasks", "path", "strategy", "metric", "dtype", "median ms",
                  "p95 ms", "queries", "fit / build s", "peak GB", "load", "same ranking"],
                 table),
        "",
        "## Growth with the number of known tasks",
        "",
        "Ratio of median latencies and the exponent `b` of `latency ~ n^b` between "
        "consecutive sizes (1 = linear).",
        "",
        md_table(["path", "strategy", "metric", "dtype", "tasks", "latency ratio",
                  "exponent"], grow),
    ])


if __name__ == "__main__":
    main()
