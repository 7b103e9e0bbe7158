"""Throughput vs. number of workers: embedding and evaluating many tasks through joblib.

The same calls — ``Task2VecEmbedder().transform(tasks)`` and
``evaluate_zoo(extractors, pairs)`` with ``n_jobs=None`` — run under different
``joblib.parallel_config`` backends:

``serial``
    No configuration: one worker, in this process.
``loky``
    ``parallel_config(backend="loky", n_jobs=2)``: two worker processes.
``dask``
    ``parallel_config(backend="dask")`` on a ``distributed.LocalCluster`` of 2 worker
    processes with one thread each, dask's default configuration.
``dask-notrim``
    The same, with dask's ``MALLOC_TRIM_THRESHOLD_=65536`` for its worker processes
    removed (``dask.config.set({"distributed.nanny.pre-spawn-environ.
    MALLOC_TRIM_THRESHOLD_": None})``): with it glibc hands freed memory back to the
    system at once, and torch, which allocates and frees large buffers at every layer,
    runs the Fisher about 3 times slower (the package logs a warning when it sees it).
``dask-threads``
    A ``LocalCluster(processes=False)`` with 2 threads: one process, one shared probe.

(With one worker joblib runs the calls in the calling process whatever the backend, so
the 1-worker row is ``serial``.)

Every worker runs one torch thread (``OMP_NUM_THREADS=1``), so *w* workers use *w*
cores. Each configuration is called 1 + ``--repeats`` times: the first call includes
starting the workers and loading the probe or extractors in each (*first call s*); the
best of the others is the steady-state throughput (*tasks/s*). The machine's load
average is recorded with each row (the benchmark machine is shared). The results of
every configuration are checked to be identical, bit for bit, to the serial ones.

Run::

    python benchmarks/bench_parallel.py              # 4 tasks, 1 and 2 workers (~15 min)
    python benchmarks/bench_parallel.py --render     # re-write the .md from the .json

Writes ``benchmarks/results/parallel.{json,md}``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: one thread per worker

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from joblib import parallel_config  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, md_table, write_results  # noqa: E402

from t2v_automl.datasets import load_pool  # noqa: E402
from t2v_automl.estimators import Task2VecEmbedder  # noqa: E402
from t2v_automl.evaluation import evaluate_zoo  # noqa: E402
from t2v_automl.tasks import Task  # noqa: E402

CLASS_SETS = [(0, 6), (5, 7), (2, 4), (1, 3)]
ZOO = ["mobilenet_v2", "raw_pixels"]
ZOO_INPUT_SIZE = 64  # as the shipped knowledge base was scored


def make_tasks(n_train: int, n_test: int) -> tuple[list[Task], list[tuple[Task, Task]]]:
    """Fashion-MNIST two-class tasks: one per class pair, and (train, test) splits."""
    fm = load_pool("fashion_mnist")
    rng = np.random.default_rng(0)
    tasks, pairs = [], []
    for cs in CLASS_SETS:
        idx = rng.permutation(np.flatnonzero(np.isin(fm.labels, cs)))
        name = "fm" + "-".join(map(str, cs))
        tr, te = np.sort(idx[:n_train]), np.sort(idx[n_train:n_train + n_test])
        train = Task.from_arrays(fm.images[tr], fm.labels[tr], name=name)
        tasks.append(train)
        pairs.append((train, Task.from_arrays(fm.images[te], fm.labels[te], name=name + "-t")))
    return tasks, pairs


@contextlib.contextmanager
def backend(name: str, workers: int) -> Iterator[None]:
    """The joblib configuration of one row.

    A ``LocalCluster`` leaves ``MALLOC_TRIM_THRESHOLD_`` in this process's environment
    (its nanny sets it before spawning workers), where every worker started later would
    inherit it; it is put back as it was after each row.
    """
    before = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    try:
        with _backend(name, workers):
            yield
    finally:
        if before is None:
            os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        else:
            os.environ["MALLOC_TRIM_THRESHOLD_"] = before


@contextlib.contextmanager
def _backend(name: str, workers: int) -> Iterator[None]:
    if name == "serial":
        yield
    elif name == "loky":
        with parallel_config(backend="loky", n_jobs=workers):
            yield
    elif name in ("dask", "dask-notrim", "dask-threads"):
        import dask
        from distributed import Client, LocalCluster

        threads = name == "dask-threads"
        trim = {} if name != "dask-notrim" else {
            "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
        with dask.config.set(trim), \
                LocalCluster(n_workers=1 if threads else workers,
                             threads_per_worker=workers if threads else 1,
                             processes=not threads, dashboard_address=None) as cluster, \
                Client(cluster), parallel_config(backend="dask", n_jobs=-1):
            yield
    else:
        raise ValueError(f"unknown backend {name!r}")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(configs: list[tuple[str, int]], tasks: list[Task], pairs: list[tuple[Task, Task]],
        repeats: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    ref: dict[str, Any] = {}
    for job, call in (("embed", lambda: Task2VecEmbedder(device="cpu").fit().transform(tasks)),
                      ("evaluate", lambda: evaluate_zoo(ZOO, pairs,
                                                        input_size=ZOO_INPUT_SIZE).scores)):
        for name, workers in configs:
            load = [os.getloadavg()[0]]
            t_start = time.perf_counter()
            with backend(name, workers):
                startup = time.perf_counter() - t_start
                first, out = timed(call)
                outs, warms = [out], []
                for _ in range(repeats):
                    t, out = timed(call)
                    warms.append(t)
                    outs.append(out)
            load.append(os.getloadavg()[0])
            if job not in ref:
                ref[job] = outs[0]
            same = all(bool(np.array_equal(o, ref[job])) for o in outs)
            warm = min(warms)
            row = {"job": job, "backend": name, "workers": workers, "n_tasks": len(tasks),
                   "cluster_start_s": startup, "first_call_s": first, "warm_s": warm,
                   "warm_all_s": warms, "tasks_per_s": len(tasks) / warm,
                   "identical_to_serial": same, "load_avg": float(np.mean(load))}
            rows.append(row)
            print(f"{job:9s} {name:13s} x{workers}: first {first:6.1f} s, warm {warm:6.1f} s,"
                  f" {row['tasks_per_s']:.3f} tasks/s, identical: {same}", flush=True)
    for r in rows:
        base = next(b for b in rows if b["job"] == r["job"] and b["backend"] == "serial")
        r["speedup"] = base["warm_s"] / r["warm_s"]
    return rows


def render(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        "# Throughput vs. number of workers (joblib backends)",
        "",
        f"Machine: {m['platform']}, **{m['cpu_count']} CPU cores** (so 2 workers is the "
        f"most this machine can show; other jobs ran alongside), torch {m['torch']}, one "
        f"torch thread per worker, GPU: {m['cuda'] or 'none'}; {m['date']}, commit "
        f"{m.get('git_commit', '?')}. Command: `{data['command']}`.",
        "",
        f"*embed*: `Task2VecEmbedder()` (defaults: `mobilenet_v2`, 64 px, 500 images, exact "
        f"Fisher) on {data['n_tasks']} two-class Fashion-MNIST tasks of {data['n_train']} "
        f"images. *evaluate*: `evaluate_zoo({data['zoo']}, input_size={ZOO_INPUT_SIZE})` on "
        f"the same tasks with {data['n_test']} test images each. `n_jobs=None` everywhere; "
        "the backend comes from `joblib.parallel_config`. *first call* includes starting "
        "the workers and loading the networks in each; *tasks/s* and *speed-up* (vs. "
        "serial) are from the best of the warm calls that follow. *identical*: every call's "
        "results equal the serial ones bit for bit. *load avg*: the machine's 1-minute load "
        "average around the row (2 means both cores busy; above it, other jobs compete).",
        "",
    ]
    lines.append(md_table(
        ["job", "backend", "workers", "cluster start s", "first call s", "warm s", "tasks/s",
         "speed-up", "identical", "load avg"],
        [[r["job"], r["backend"], r["workers"],
          r["cluster_start_s"] if r["backend"].startswith("dask") else None, r["first_call_s"],
          r["warm_s"], r["tasks_per_s"], r["speedup"],
          "yes" if r["identical_to_serial"] else "NO", r.get("load_avg")]
         for r in data["rows"]]))
    if data.get("reading"):
        lines += ["", "## Reading", "", data["reading"]]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=600)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--configs", default="serial:1,loky:2,dask:2,dask-notrim:2,dask-threads:2")
    ap.add_argument("--repeats", type=int, default=2, help="warm calls per configuration")
    ap.add_argument("--out", default="parallel")
    ap.add_argument("--render", action="store_true", help="re-write the .md from the .json")
    args = ap.parse_args()
    if args.render:
        data = json.loads((RESULTS / f"{args.out}.json").read_text())
        write_results(args.out, data, render(data))
        return
    torch.set_num_threads(1)
    configs = [(c.split(":")[0], int(c.split(":")[1])) for c in args.configs.split(",")]
    if configs[0][0] != "serial":
        ap.error("the first configuration must be serial:1 (the reference)")
    tasks, pairs = make_tasks(args.n_train, args.n_test)
    rows = run(configs, tasks, pairs, args.repeats)
    command = "python benchmarks/bench_parallel.py" + "".join(
        f" --{k.replace('_', '-')} {getattr(args, k)}"
        for k in ("n_train", "n_test", "configs", "repeats")
        if getattr(args, k) != ap.get_default(k))
    data = {"machine": machine(), "command": command, "rows": rows, "n_tasks": len(tasks),
            "n_train": args.n_train, "n_test": args.n_test, "zoo": ZOO}
    jp, mp = write_results(args.out, data, render(data))
    print(f"wrote {jp} and {mp}")


if __name__ == "__main__":
    main()
