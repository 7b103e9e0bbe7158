"""Tests of KnowledgeCallback: the best score per extractor, many workers, RDB storages."""

from __future__ import annotations

import contextlib
import glob
import math
import multiprocessing
import os
import pickle
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    InvalidParameterError,
    KnowledgeBaseError,
)
from t2v_automl.integration.optuna import (
    PROVENANCE_KEY,
    KnowledgeCallback,
    Task2VecSampler,
    warm_start,
)
from t2v_automl.knowledge import KnowledgeBase
from tests.integration.optuna.helpers import (
    META,
    NAMES,
    OTHER_META,
    StubSelector,
    cat_trial,
    emb,
)

# ======================================================================== KnowledgeCallback


def run_trials(study, cb, trials):
    for t in trials:
        study.add_trial(t)
        cb(study, study.trials[-1])


def test_callback_keeps_best_score_and_hyper_parameters(tmp_path):
    path = tmp_path / "kb.npz"
    cb = KnowledgeCallback(path, emb())
    study = optuna.create_study(direction="maximize", study_name="s1")
    run_trials(study, cb, [
        cat_trial("a", 0.6, C=1.0), cat_trial("a", 0.8, C=2.0), cat_trial("a", 0.7, C=3.0),
        cat_trial("b", 0.5, C=4.0),
        cat_trial("b", 0.99, state=TrialState.PRUNED, C=5.0),
        cat_trial("c", None, state=TrialState.FAIL, C=6.0),
    ])
    kb = KnowledgeBase.load(path)
    assert kb.task_names == ["new-task"] and kb.extractor_names == ["a", "b"]
    np.testing.assert_array_equal(kb.scores, [[0.8, 0.5]])
    np.testing.assert_array_equal(kb.embeddings[0], emb().values)
    prov = kb.provenance[0]
    assert prov["task_fingerprint"] == "f" * 16
    best = prov[PROVENANCE_KEY]["best"]
    assert best["a"]["params"] == {"C": 2.0} and best["a"]["trial"] == 1
    assert best["a"]["study"] == "s1" and best["b"]["params"] == {"C": 4.0}
    # warm_start reads them back for the same (nearest) task.
    out = warm_start(optuna.create_study(direction="maximize"), emb(), StubSelector(),
                     top_k=1, knowledge=kb)
    assert out == [{"C": 2.0, "extractor": "a"}]


def test_callback_refuses_bad_scores_without_touching_the_file(tmp_path):
    path = tmp_path / "kb.npz"
    cb = KnowledgeCallback(path, emb())
    study = optuna.create_study(direction="maximize")
    run_trials(study, cb, [cat_trial("a", 0.6)])
    before = path.read_bytes()
    with pytest.raises(KnowledgeBaseError, match=r"\[0, 1\]"):
        run_trials(study, cb, [cat_trial("a", 1.5)])
    with pytest.raises(KnowledgeBaseError):
        run_trials(study, cb, [cat_trial("b", float("inf"))])
    assert path.read_bytes() == before
    lenient = KnowledgeCallback(path, emb(), errors="warn")
    with pytest.warns(UserWarning, match="not recorded"):
        run_trials(study, lenient, [cat_trial("a", -0.2)])
    assert path.read_bytes() == before
    # A minimisation study needs score_transform.
    minimise = optuna.create_study(direction="minimize")
    with pytest.raises(InvalidParameterError, match="score_transform"):
        run_trials(minimise, cb, [cat_trial("a", 0.1)])
    flip = KnowledgeCallback(path, emb(), score_transform=lambda err: 1.0 - err)
    run_trials(minimise, flip, [cat_trial("a", 0.1)])
    assert KnowledgeBase.load(path).scores[0, 0] == pytest.approx(0.9)


def test_callback_other_bad_input(tmp_path):
    kb = KnowledgeBase.empty(META)
    cb = KnowledgeCallback(kb, np.array([1.0, 2.0, 3.0, 4.0]), task_name="t")
    study = optuna.create_study(direction="maximize")
    with pytest.warns(UserWarning, match="no parameter 'extractor'"):
        study.add_trial(create_trial(params={"C": 1.0},
                                     distributions={"C": FloatDistribution(0.1, 10)},
                                     value=0.5))
        cb(study, study.trials[-1])
    study.add_trial(create_trial(params={"extractor": 3},
                                 distributions={"extractor": CategoricalDistribution([3])},
                                 value=0.5))
    with pytest.raises(InvalidParameterError, match="strings"):
        cb(study, study.trials[-1])
    assert len(kb) == 0
    run_trials(study, cb, [cat_trial("a", 0.5)])
    assert kb.task_names == ["t"]
    clash = KnowledgeCallback(kb, np.array([9.0, 2.0, 3.0, 4.0]), task_name="t")
    with pytest.raises(KnowledgeBaseError, match="another embedding"):
        run_trials(study, clash, [cat_trial("b", 0.5)])
    assert kb.extractor_names == ["a"]
    with pytest.raises(ValueError):
        cb(optuna.create_study(directions=["maximize", "maximize"]),
           create_trial(params={"extractor": "a"},
                        distributions={"extractor": CategoricalDistribution(["a"])},
                        values=[0.5, 0.5]))
    with pytest.raises(IncompatibleEmbeddingError):
        KnowledgeCallback(kb, emb(meta=OTHER_META))
    with pytest.raises(InvalidInputTypeError, match="Embedding"):
        KnowledgeCallback(tmp_path / "kb.npz", np.ones(4), task_name="t")
    with pytest.raises(InvalidInputTypeError, match="task_name"):
        KnowledgeCallback(kb, np.ones(4))
    with pytest.raises(InvalidParameterError):
        KnowledgeCallback(kb, emb(), errors="ignore")
    with pytest.raises(KnowledgeBaseError, match="does not exist"):
        KnowledgeCallback(tmp_path / "missing" / "kb.npz", emb())
    KnowledgeBase.empty(OTHER_META).save(tmp_path / "other.npz")
    with pytest.raises(IncompatibleEmbeddingError):
        KnowledgeCallback(tmp_path / "other.npz", emb())


def test_callback_keeps_other_task_content():
    kb = KnowledgeBase.empty(META)
    kb.add("t", [1.0, 2.0, 3.0, 4.0], {"x": 0.3, "a": 0.2}, stderr={"x": 0.01, "a": 0.02},
           provenance={"source_dataset": "digits"}, embed_time=1.5,
           extra_embeddings={"domain": Embedding(np.ones(2), EmbeddingMeta(
               probe="p", weights_sha256="w", method="domain", input_size=16,
               layers="penultimate", dim=2))})
    cb = KnowledgeCallback(kb, emb(values=[1.0, 2.0, 3.0, 4.0], name="t"))
    run_trials(optuna.create_study(direction="maximize"), cb, [cat_trial("a", 0.6, C=1.0)])
    assert kb.scores_frame().loc["t"].to_dict() == {"x": 0.3, "a": 0.6}
    assert kb.stderr[0, 0] == 0.01 and np.isnan(kb.stderr[0, 1])
    assert kb.provenance[0]["source_dataset"] == "digits"
    assert kb.embed_time[0] == 1.5
    np.testing.assert_array_equal(kb.extra_embeddings("domain")[1][0], [1.0, 1.0])


# -------------------------------------------------------------- several workers, one file
EXTS = ["a", "b", "c"]


def _value(number, ext, c):
    # Grows with the trial number, so (nearly) every completed trial beats the recorded
    # score and writes the file: the workers contend for it all the time.
    return min(1.0, 0.3 + 0.02 * number + 0.001 * EXTS.index(ext) + 0.0001 * math.log(c))


def _storage(url):
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def _worker(url, study_name, kb_path, values, meta, task_name, seed, n_trials, barrier):
    study = optuna.load_study(study_name=study_name, storage=_storage(url),
                              sampler=optuna.samplers.RandomSampler(seed=seed))
    cb = KnowledgeCallback(kb_path, Embedding(np.asarray(values), EmbeddingMeta.from_dict(meta),
                                              task_name=task_name), timeout=300)

    def objective(trial):
        ext = trial.suggest_categorical("extractor", EXTS)
        c = trial.suggest_float("C", 1e-2, 1e2, log=True)
        if trial.number % 5 == 3:
            raise optuna.TrialPruned()
        if trial.number % 7 == 5:
            raise RuntimeError("a failed trial")
        return _value(trial.number, ext, c)

    barrier.wait(timeout=120)  # start together
    study.optimize(objective, n_trials=n_trials, callbacks=[cb], catch=(RuntimeError,))


def _run_workers(url, tmp_path, n_workers=4, n_trials=6):
    kb_path = tmp_path / "shared_kb.npz"
    tasks = {"task-A": [1.0, 2.0, 3.0, 4.0], "task-B": [4.0, 1.0, 1.0, 2.0]}
    storage = _storage(url)
    suffix = os.urandom(4).hex()
    names = {t: f"{t}-{suffix}" for t in tasks}
    for n in names.values():
        optuna.create_study(study_name=n, storage=storage, direction="maximize")
    del storage
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(n_workers)
    procs = []
    for w in range(n_workers):
        task = list(tasks)[w % 2]
        procs.append(ctx.Process(target=_worker, args=(
            url, names[task], kb_path, tasks[task], META.to_dict(), task, w, n_trials,
            barrier)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * n_workers
    kb = KnowledgeBase.load(kb_path)
    storage = _storage(url)
    n_complete = 0
    for task, study_name in names.items():
        trials = optuna.load_study(study_name=study_name, storage=storage).trials
        assert {t.state for t in trials} >= {TrialState.COMPLETE}
        assert len(trials) == n_trials * n_workers // 2
        best: dict[str, optuna.trial.FrozenTrial] = {}
        for t in trials:
            if t.state == TrialState.COMPLETE:
                n_complete += 1
                e = t.params["extractor"]
                if e not in best or t.value > best[e].value:
                    best[e] = t
        i = kb.index(task)
        recorded = {e: kb.scores[i, j] for j, e in enumerate(kb.extractor_names)
                    if not np.isnan(kb.scores[i, j])}
        assert recorded == {e: t.value for e, t in best.items()}  # nothing lost
        prov = kb.provenance[i][PROVENANCE_KEY]["best"]
        assert {e: (v["trial"], v["params"]) for e, v in prov.items()} == \
            {e: (t.number, {"C": t.params["C"]}) for e, t in best.items()}
    assert sorted(kb.task_names) == sorted(tasks)
    assert n_complete > 0


def test_callback_in_memory_base_from_many_threads():
    kb = KnowledgeBase.empty(META, NAMES)
    cb = KnowledgeCallback(kb, emb())
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        trial.suggest_categorical("extractor", NAMES)
        return 0.5 + trial.number / 1000.0

    study.optimize(objective, n_trials=60, n_jobs=8, callbacks=[cb])
    best = {}
    for t in study.trials:
        best[t.params["extractor"]] = max(best.get(t.params["extractor"], 0), t.value)
    row = kb.scores[kb.index(cb.task_name)]
    assert {n: row[NAMES.index(n)] for n in best} == pytest.approx(best)
    assert pickle.loads(pickle.dumps(cb)).task_name == cb.task_name  # the lock is not pickled


def test_callback_several_workers_sqlite(tmp_path):
    _run_workers(f"sqlite:///{tmp_path / 'studies.db'}", tmp_path)


# -------------------------------------------------------------- PostgreSQL


def _pg_tool(name):
    found = shutil.which(name)
    if found:
        return found
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return hits[-1] if hits else None


def _pg_driver():
    for module, dialect in (("psycopg2", "postgresql+psycopg2"), ("psycopg", "postgresql+psycopg")):
        try:
            __import__(module)
            return dialect
        except ImportError:
            continue
    return None


@pytest.fixture(scope="module")
def postgres_url():
    dialect = _pg_driver()
    if dialect is None:
        pytest.skip("PostgreSQL test: neither psycopg2 nor psycopg is importable "
                    "(pip install psycopg2-binary)")
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL test: initdb/pg_ctl not found (apt-get install postgresql)")
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL test: running as root and there is no 'postgres' user")
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("PostgreSQL test: running as root without runuser")
        prefix = [runuser, "-u", "postgres", "--"]
    base = tempfile.mkdtemp(prefix="t2v-pg-")
    os.chmod(base, 0o755)
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data = os.path.join(base, "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(*cmd):
        return subprocess.run(prefix + list(cmd), check=True, capture_output=True, text=True,
                              timeout=120)

    try:
        run(initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        run(pg_ctl, "-D", data, "-l", os.path.join(base, "log"), "-w", "-t", "60", "-o",
            f"-k {base} -p {port} -c listen_addresses='' -c fsync=off", "start")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        detail = getattr(exc, "stderr", "") or exc
        pytest.skip(f"PostgreSQL test: could not start a local server: {detail}")
    try:
        yield f"{dialect}://postgres@/postgres?host={base}&port={port}"
    finally:
        with contextlib.suppress(Exception):
            run(pg_ctl, "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_postgresql_storage(postgres_url, tmp_path):
    _run_workers(postgres_url, tmp_path, n_workers=4, n_trials=5)
    storage = _storage(postgres_url)
    study = optuna.create_study(storage=storage, direction="maximize",
                                sampler=Task2VecSampler(StubSelector(), emb(), seed=0))
    assert [p["extractor"] for p in warm_start(study, emb(), StubSelector(), top_k=2)] == \
        ["a", "c"]
    cb = KnowledgeCallback(Path(tmp_path) / "pg_kb.npz", emb())
    study.optimize(lambda t: 0.1 * NAMES.index(t.suggest_categorical("extractor", NAMES)),
                   n_trials=4, callbacks=[cb])
    assert [t.params["extractor"] for t in study.trials[:2]] == ["a", "c"]
    assert KnowledgeBase.load(Path(tmp_path) / "pg_kb.npz").task_names == ["new-task"]
