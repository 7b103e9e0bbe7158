"""Many writers at once on one knowledge-base file: is anything lost? (issue 8, item 5)

Processes started together (a barrier) write into **one** knowledge-base file:

``add`` writers
    Each does ``writes`` updates through :meth:`KnowledgeBase.locked_update
    <t2v_automl.knowledge.KnowledgeBase.locked_update>`, alternately adding a new task
    (``kb.add``: its own name, embedding, score and provenance) and adding a score for a
    new extractor column to a task every writer shares (``kb.add_score`` on ``"anchor"``),
    so both new rows and new columns race.
``callback`` writers
    Each runs ``writes`` Optuna trials (``RandomSampler``) of a study in a shared RDB
    storage (SQLite file or PostgreSQL server) with :class:`KnowledgeCallback
    <t2v_automl.integration.optuna.KnowledgeCallback>` on the same file. Two studies
    (two tasks) are shared by the callback writers, so several processes finish trials
    of one task at once; every objective value is distinct.

Afterwards the file is loaded (its sha256 is verified) and compared with what was
written: every ``add``/``add_score`` write must be there exactly once with its values,
nothing else may be there, and for each (task, extractor) of the Optuna studies the
recorded score and provenance must be those of the best COMPLETE trial in the storage.
``lost`` counts writes (cells) missing or wrong; ``unexpected`` counts tasks or columns
nobody wrote. Per-write lock wait and hold times are measured in the ``add`` writers.

Run::

    python benchmarks/bench_knowledge_stress.py            # the committed configurations
    python benchmarks/bench_knowledge_stress.py --quick    # one small configuration
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import math
import multiprocessing
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, md_table, write_results  # noqa: E402

from t2v_automl.embedding import Embedding, EmbeddingMeta  # noqa: E402
from t2v_automl.integration.optuna import PROVENANCE_KEY, KnowledgeCallback  # noqa: E402
from t2v_automl.knowledge import KnowledgeBase  # noqa: E402

EXTRACTORS = ["efficientnet_lite0", "mobilenet_v2", "resnet18", "mnist_cnn", "raw_pixels"]
STUDY_TASKS = ("study-task-A", "study-task-B")
GOLDEN = (math.sqrt(5) - 1) / 2


def meta(dim: int) -> EmbeddingMeta:
    """The embedding settings of the stress knowledge base."""
    return EmbeddingMeta(probe="stress", weights_sha256="0" * 64, method="exact",
                         input_size=32, layers="all", dim=dim)


def vector(key: int, dim: int) -> np.ndarray:
    """A positive embedding determined by ``key``."""
    return np.random.default_rng(key).random(dim) + 1e-3


def add_score(worker: int, k: int) -> float:
    """The score written by ``add`` writer ``worker`` at its ``k``-th write (all distinct)."""
    return round(0.001 + (worker * 1000 + k) / 1e6, 9)


def trial_value(number: int) -> float:
    """Objective value of trial ``number``: distinct for distinct trials, in (0, 1)."""
    return 0.01 + 0.98 * ((number * GOLDEN) % 1.0)


# ----------------------------------------------------------------------------- workers
def add_writer(path: str, worker: int, writes: int, dim: int, barrier: Any,
               out: str) -> None:
    """``writes`` locked updates: a new task (even k) or a new anchor column (odd k)."""
    m = meta(dim)
    waits, holds = [], []
    barrier.wait(timeout=300)
    for k in range(writes):
        t0 = time.perf_counter()
        with KnowledgeBase.locked_update(path, m, timeout=1800) as kb:
            t1 = time.perf_counter()
            if k % 2 == 0:
                kb.add(f"add-w{worker}-k{k}", vector(100_000 + worker * 1000 + k, dim),
                       {"shared": add_score(worker, k)}, provenance={"worker": worker, "k": k})
            else:
                kb.add_score("anchor", f"col-w{worker}-k{k}", add_score(worker, k))
        t2 = time.perf_counter()
        waits.append(t1 - t0)
        holds.append(t2 - t1)
    Path(out).write_text(json.dumps({"wait": waits, "hold": holds}))


def callback_writer(url: str, study_name: str, path: str, task: str, dim: int, seed: int,
                    trials: int, barrier: Any) -> None:
    """``trials`` Optuna trials with a :class:`KnowledgeCallback` on the shared file."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage(url),
                              sampler=optuna.samplers.RandomSampler(seed=seed))
    emb = Embedding(vector(STUDY_TASKS.index(task), dim), meta(dim), task_name=task)
    cb = KnowledgeCallback(path, emb, timeout=1800)

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_categorical("extractor", EXTRACTORS)
        trial.suggest_float("C", 1e-2, 1e2, log=True)
        return trial_value(trial.number)

    barrier.wait(timeout=300)
    study.optimize(objective, n_trials=trials, callbacks=[cb])


def storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage; SQLite waits for its lock instead of failing under contention."""
    kwargs = {"connect_args": {"timeout": 600}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


# ----------------------------------------------------------------------------- one run
def run_stress(folder: Path, *, adders: int, callbacks: int, writes: int, dim: int,
               url: str | None = None) -> dict[str, Any]:
    """Run the writers against ``folder/kb.npz`` and check the file; return the counts.

    Parameters
    ----------
    folder : Path
        An empty folder for the knowledge base (and the SQLite storage by default).
    adders, callbacks : int
        Number of ``add`` and ``callback`` writer processes.
    writes : int
        Writes (``add``) or trials (``callback``) per process.
    dim : int
        Embedding dimension.
    url : str, optional
        Optuna storage URL; default: SQLite in ``folder``.

    Returns
    -------
    dict
        ``attempted``, ``stored``, ``lost``, ``unexpected`` per kind of writer, the wall
        time, lock wait/hold statistics, the file's size and sha256, and ``problems``
        (descriptions of every discrepancy; empty when nothing was lost).
    """
    if "fork" not in multiprocessing.get_all_start_methods():  # pragma: no cover
        raise RuntimeError("the stress test needs the fork start method (Linux)")
    folder.mkdir(parents=True, exist_ok=True)
    path = str(folder / "kb.npz")
    url = url or f"sqlite:///{folder / 'studies.db'}"
    m = meta(dim)
    with KnowledgeBase.locked_update(path, m, ["shared"]) as kb:
        kb.add("anchor", vector(0, dim) + 1.0, {"shared": 0.5})
    studies: dict[str, str] = {}
    if callbacks:
        st = storage(url)
        suffix = os.urandom(4).hex()
        for task in STUDY_TASKS:
            studies[task] = f"{task}-{suffix}"
            optuna.create_study(study_name=studies[task], storage=st, direction="maximize")
        st.remove_session()
        st.engine.dispose()  # no pooled connection may be inherited by the forked writers
        del st
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(adders + callbacks + 1)
    procs = []
    for w in range(adders):
        procs.append(ctx.Process(target=add_writer, args=(
            path, w, writes, dim, barrier, str(folder / f"timing-{w}.json"))))
    for c in range(callbacks):
        task = STUDY_TASKS[c % len(STUDY_TASKS)]
        procs.append(ctx.Process(target=callback_writer, args=(
            url, studies[task], path, task, dim, 1000 + c, writes, barrier)))
    for p in procs:
        p.start()
    barrier.wait(timeout=300)
    start = time.perf_counter()
    for p in procs:
        p.join(timeout=3600)
    wall = time.perf_counter() - start
    exitcodes = [p.exitcode for p in procs]
    result = check(path, adders, writes, dim, url if callbacks else None, studies)
    waits = [x for w in range(adders)
             for x in json.loads((folder / f"timing-{w}.json").read_text())["wait"]] \
        if all(e == 0 for e in exitcodes[:adders]) else []
    holds = [x for w in range(adders)
             for x in json.loads((folder / f"timing-{w}.json").read_text())["hold"]] \
        if waits else []
    data = Path(path).read_bytes()
    leftovers = sorted(p.name for p in folder.iterdir()
                       if p.name.startswith(".kb.npz.") and p.name.endswith(".tmp"))
    if leftovers:
        result["problems"].append(f"temporary files left behind: {leftovers}")
    if any(e != 0 for e in exitcodes):
        result["problems"].append(f"worker exit codes {exitcodes}")
    result.update({
        "adders": adders, "callbacks": callbacks, "writes_per_process": writes, "dim": dim,
        "storage": url.split(":", 1)[0] if callbacks else None,
        "wall_s": wall, "file_mb": len(data) / 1e6,
        "file_sha256": hashlib.sha256(data).hexdigest(),
        "lock_wait_ms": _stats(waits), "lock_hold_ms": _stats(holds),
    })
    return result


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p95": None, "max": None}
    a = np.asarray(values) * 1e3
    return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95)),
            "max": float(a.max())}


def check(path: str, adders: int, writes: int, dim: int, url: str | None,
          studies: dict[str, str]) -> dict[str, Any]:
    """Compare the file with everything that was written; see :func:`run_stress`."""
    problems: list[str] = []
    kb = KnowledgeBase.load(path, expected_meta=meta(dim))  # verifies the sha256
    names, cols = kb.task_names, kb.extractor_names
    scores, prov, emb = kb.scores, kb.provenance, kb.embeddings
    expected_tasks = {"anchor"}
    expected_cols = {"shared"}
    stored_add = 0
    anchor = names.index("anchor")
    for w in range(adders):
        for k in range(writes):
            s = add_score(w, k)
            if k % 2 == 0:
                name = f"add-w{w}-k{k}"
                expected_tasks.add(name)
                if name not in names:
                    problems.append(f"task {name} lost")
                    continue
                i = names.index(name)
                ok = (scores[i, cols.index("shared")] == s and prov[i] == {"worker": w, "k": k}
                      and np.array_equal(emb[i], vector(100_000 + w * 1000 + k, dim)))
                stored_add += ok
                if not ok:
                    problems.append(f"task {name} stored with wrong values")
            else:
                col = f"col-w{w}-k{k}"
                expected_cols.add(col)
                if col not in cols:
                    problems.append(f"column {col} lost")
                    continue
                ok = scores[anchor, cols.index(col)] == s
                stored_add += ok
                if not ok:
                    problems.append(f"anchor score of {col} is {scores[anchor, cols.index(col)]}"
                                    f", expected {s}")
    out: dict[str, Any] = {"add_attempted": adders * writes, "add_stored": stored_add}
    trials_done = cells_expected = cells_ok = 0
    if url is not None:
        st = storage(url)
        expected_cols |= set(EXTRACTORS)
        for task, study_name in studies.items():
            trials = optuna.load_study(study_name=study_name, storage=st).trials
            best: dict[str, optuna.trial.FrozenTrial] = {}
            for t in trials:
                if t.state == TrialState.COMPLETE:
                    trials_done += 1
                    e = t.params["extractor"]
                    if e not in best or t.value > best[e].value:
                        best[e] = t
            if not best:
                continue
            expected_tasks.add(task)
            cells_expected += len(best)
            if task not in names:
                problems.append(f"study task {task} lost")
                continue
            i = names.index(task)
            recorded = prov[i].get(PROVENANCE_KEY, {}).get("best", {})
            for e, t in best.items():
                j = cols.index(e) if e in cols else None
                ok = (j is not None and scores[i, j] == t.value and e in recorded
                      and recorded[e]["trial"] == t.number
                      and recorded[e]["params"] == {"C": t.params["C"]})
                cells_ok += ok
                if not ok:
                    problems.append(f"{task}/{e}: best trial {t.number} ({t.value}) not "
                                    f"recorded (file: {None if j is None else scores[i, j]})")
            extra = sorted(set(recorded) - set(best))
            if extra:
                problems.append(f"{task}: provenance for extractors never run: {extra}")
            for j, e in enumerate(cols):
                if e not in best and not np.isnan(scores[i, j]):
                    problems.append(f"{task}/{e}: a score nobody wrote")
        st.remove_session()
    unexpected = sorted(set(names) - expected_tasks) + sorted(set(cols) - expected_cols)
    if unexpected:
        problems.append(f"unexpected tasks or columns: {unexpected[:10]}")
    out.update({
        "add_lost": adders * writes - stored_add,
        "trials_completed": trials_done, "callback_cells_expected": cells_expected,
        "callback_cells_stored": cells_ok, "callback_cells_lost": cells_expected - cells_ok,
        "unexpected": len(unexpected), "n_tasks": len(names), "n_extractors": len(cols),
        "problems": problems,
    })
    return out


# ----------------------------------------------------------------------------- PostgreSQL
def _pg_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return hits[-1] if hits else None


@contextlib.contextmanager
def local_postgres() -> Iterator[str]:
    """A throw-away PostgreSQL server on a Unix socket; yields its SQLAlchemy URL.

    Raises
    ------
    RuntimeError
        No ``initdb``/``pg_ctl`` (``apt-get install postgresql``), no psycopg2
        (``pip install psycopg2-binary``), or the server does not start.
    """
    try:
        import psycopg2  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("psycopg2 is missing: pip install psycopg2-binary") from exc
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if not (initdb and pg_ctl):
        raise RuntimeError("initdb/pg_ctl not found: apt-get install postgresql")
    prefix: list[str] = []
    base = tempfile.mkdtemp(prefix="t2v-pg-")
    os.chmod(base, 0o755)
    if os.geteuid() == 0:  # the server refuses to run as root
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(base, "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(*cmd: str) -> None:
        subprocess.run(prefix + list(cmd), check=True, capture_output=True, text=True,
                       timeout=120)

    try:
        run(initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        run(pg_ctl, "-D", data, "-l", os.path.join(base, "log"), "-w", "-t", "60", "-o",
            f"-k {base} -p {port} -c listen_addresses='' -c max_connections=200", "start")
        yield f"postgresql+psycopg2://postgres@/postgres?host={base}&port={port}"
    finally:
        with contextlib.suppress(Exception):
            run(pg_ctl, "-D", data, "-m", "fast", "stop")
        shutil.rmtree(base, ignore_errors=True)


# ----------------------------------------------------------------------------- main
CONFIGS = [  # (label, adders, callbacks, writes, dim, storage)
    ("8 add writers", 8, 0, 25, 64, None),
    ("4 add + 4 callback, SQLite", 4, 4, 25, 64, "sqlite"),
    ("8 add + 8 callback, PostgreSQL", 8, 8, 25, 64, "postgresql"),
    ("16 add + 16 callback, PostgreSQL", 16, 16, 50, 64, "postgresql"),
    ("4 add + 4 callback, PostgreSQL, real dim", 4, 4, 25, 14848, "postgresql"),
    ("8 add + 8 callback, PostgreSQL, real dim", 8, 8, 50, 14848, "postgresql"),
]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one small run, no result files")
    ap.add_argument("--folder", type=Path, default=None, help="where the files go (tmp)")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    configs = [("4 add + 4 callback, SQLite", 4, 4, 10, 16, "sqlite")] if args.quick \
        else CONFIGS
    rows = []
    root = Path(tempfile.mkdtemp(prefix="t2v-stress-", dir=args.folder))
    try:
        with contextlib.ExitStack() as stack:
            pg_url: str | None = None
            for k, (label, adders, callbacks, writes, dim, kind) in enumerate(configs):
                url = None
                if kind == "postgresql":
                    if pg_url is None:
                        pg_url = stack.enter_context(local_postgres())
                    url = pg_url
                r = run_stress(root / f"run{k}", adders=adders, callbacks=callbacks,
                               writes=writes, dim=dim, url=url)
                r["label"] = label
                rows.append(r)
                print(f"{label}: {r['add_attempted']} adds, {r['trials_completed']} trials, "
                      f"lost {r['add_lost']} + {r['callback_cells_lost']}, "
                      f"{r['wall_s']:.1f} s, problems: {r['problems'][:3]}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    data = {"machine": {**machine(), "filesystem": _filesystem(root.parent)},
            "command": "python benchmarks/bench_knowledge_stress.py "
                       + " ".join(argv if argv is not None else sys.argv[1:]),
            "rows": rows}
    if not args.quick:
        jp, mp = write_results("knowledge_stress", data, markdown(data))
        print(f"wrote {jp} and {mp}")
    return data


def _filesystem(folder: Path) -> str:
    try:
        out = subprocess.run(["df", "-T", str(folder)], capture_output=True, text=True,
                             check=False).stdout.splitlines()
        return out[-1].split()[1] if len(out) > 1 else "unknown"
    except OSError:
        return "unknown"


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    table = []
    for r in data["rows"]:
        total_attempted = r["add_attempted"] + r["callback_cells_expected"]
        total_stored = r["add_stored"] + r["callback_cells_stored"]
        table.append([
            r["label"], r["adders"] + r["callbacks"], r["writes_per_process"], r["dim"],
            r["add_attempted"], r["trials_completed"], total_attempted, total_stored,
            total_attempted - total_stored, r["unexpected"], round(r["wall_s"], 1),
            round((r["add_attempted"] + r["trials_completed"]) / r["wall_s"], 1),
            _ms(r["lock_wait_ms"]["median"]), _ms(r["lock_wait_ms"]["p95"]),
            _ms(r["lock_wait_ms"]["max"]), _ms(r["lock_hold_ms"]["median"]),
            round(r["file_mb"], 2),
            "none" if not r["problems"] else "; ".join(r["problems"][:3])])
    return "\n".join([
        "# Concurrent writers on one knowledge-base file",
        "",
        f"Command: `{data['command'].strip()}`. Machine: {m['platform']}, {m['cpu_count']} "
        f"cores (shared with other jobs), file system `{m['filesystem']}` (local), Python "
        f"{m['python']}, {m['date']}, commit {m.get('git_commit', '?')}.",
        "",
        "All writer processes start together (a barrier) and write into one `kb.npz` "
        "through `KnowledgeBase.locked_update` (`add` writers: alternately `kb.add` of a "
        "new task and `kb.add_score` of a new column on a shared task) or through "
        "`KnowledgeCallback` after each Optuna trial (two studies shared by the callback "
        "writers, in one SQLite file or PostgreSQL server). Then the file is loaded (sha256 "
        "verified) and compared with what was written: `attempted` = add writes + (task, "
        "extractor) cells whose best COMPLETE trial the callback must record; `stored` = "
        "those found with exactly the written values (and, for cells, the best trial's "
        "number and parameters in the provenance); `unexpected` = tasks or columns "
        "nobody wrote. Lock wait/hold: per `add` write, from entering `locked_update` to "
        "holding the lock (wait) and to the file being replaced (hold).",
        "",
        md_table(["configuration", "processes", "writes each", "dim", "add writes",
                  "trials", "attempted", "stored", "lost", "unexpected", "wall s",
                  "writes/s", "lock wait median ms", "lock wait p95 ms", "lock wait max ms",
                  "lock hold median ms", "file MB", "problems"], table),
        "",
        "Every write goes through one exclusive lock and rewrites the whole file, so the "
        "hold time grows with the file (the real-dimension rows: 14,848 float64 values per "
        "task) and writers queue behind each other. `flock` is not fair: a writer that "
        "has just released the lock often takes it again before the waiting ones are "
        "scheduled, so the median wait is short and the longest is seconds (give "
        "`locked_update`/`KnowledgeCallback` a timeout of minutes, not seconds). See "
        "`docs/scale.md` for when to keep one shared file and when to consolidate from an "
        "Optuna storage or give each worker its own file.",
    ])


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


if __name__ == "__main__":
    main()
