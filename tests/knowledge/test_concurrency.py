"""Many writers at once on one knowledge-base file lose nothing (issue 8, item 5).

The fast version of ``benchmarks/bench_knowledge_stress.py`` (whose worker and checking
code it runs), plus the cases that once lost writes: a file named through a symbolic link
by some writers and through its real path by others, and threads of one process.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import optuna
import pytest

from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.exceptions import KnowledgeBaseError
from t2v_automl.integration.optuna import KnowledgeCallback
from t2v_automl.knowledge import KnowledgeBase
from tests.conftest import load_benchmark

META = EmbeddingMeta(probe="p", weights_sha256="0" * 64, method="exact", input_size=32,
                     layers="all", dim=8)

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods() or sys.platform == "win32",
    reason="needs fcntl and the fork start method")


@pytest.fixture(scope="module")
def stress() -> ModuleType:
    return load_benchmark("bench_knowledge_stress", "bench_knowledge_stress")


def test_adds_and_callbacks_at_once_lose_nothing(stress: ModuleType, tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    r = stress.run_stress(tmp_path / "run", adders=4, callbacks=4, writes=10, dim=16)
    assert r["problems"] == []
    assert (r["add_attempted"], r["add_stored"], r["add_lost"]) == (40, 40, 0)
    assert r["trials_completed"] == 40
    assert r["callback_cells_expected"] == r["callback_cells_stored"] > 0
    assert r["unexpected"] == 0
    # independently of the checker: the file verifies and holds exactly what was written
    kb = KnowledgeBase.load(tmp_path / "run" / "kb.npz")
    assert len(kb) == 1 + 4 * 5 + 2 and len(set(kb.task_names)) == len(kb)
    assert len(kb.extractor_names) == 1 + 4 * 5 + len(stress.EXTRACTORS)
    assert sorted(os.listdir(tmp_path / "run")) == sorted(
        ["kb.npz", "kb.npz.lock", "studies.db"] + [f"timing-{w}.json" for w in range(4)])


def test_the_checker_sees_a_lost_write(stress: ModuleType, tmp_path: Path) -> None:
    r = stress.run_stress(tmp_path, adders=2, callbacks=0, writes=4, dim=8)
    assert r["problems"] == [] and r["add_lost"] == 0
    path = tmp_path / "kb.npz"
    kb = KnowledgeBase.load(path)
    kb.subset([n for n in kb.task_names if n != "add-w1-k2"]).save(path)
    again = stress.check(str(path), 2, 4, 8, None, {})
    assert again["add_lost"] == 1 and again["problems"] == ["task add-w1-k2 lost"]


def _vec(k: int) -> np.ndarray:
    return np.random.default_rng(k).random(META.dim) + 0.1


def _link_writer(path: str, worker: int, n: int, barrier: object) -> None:
    barrier.wait(timeout=60)  # type: ignore[attr-defined]
    for k in range(n):
        with KnowledgeBase.locked_update(path, META) as kb:
            kb.add(f"w{worker}-{k}", _vec(100 * worker + k), {"e": 0.5})


def test_writers_through_a_symlink_and_the_real_path_share_one_lock(tmp_path: Path) -> None:
    # Regression: the lock file was "<name as given>.lock" and os.replace() replaced the
    # link itself, so writers using the link and writers using the real path each kept
    # their own file and lost the other's writes.
    (tmp_path / "shared").mkdir()
    real = tmp_path / "shared" / "kb.npz"
    KnowledgeBase.empty(META).save(real)
    link = tmp_path / "mine.npz"
    link.symlink_to(real)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_link_writer, args=(str(p), w, 8, barrier))
             for w, p in enumerate([real, link, real, link])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 4
    assert link.is_symlink()
    assert sorted(KnowledgeBase.load(link).task_names) == sorted(
        f"w{w}-{k}" for w in range(4) for k in range(8))
    assert sorted(os.listdir(tmp_path)) == ["mine.npz", "shared"]
    # save() through a link writes the file it points to and keeps the link
    kb = KnowledgeBase.load(link)
    kb.add("via-link", _vec(999), {"e": 0.1})
    kb.save(link)
    assert link.is_symlink() and "via-link" in KnowledgeBase.load(real)


def test_threads_of_one_process_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "kb.npz"
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for k in range(10):
                with KnowledgeBase.locked_update(path, META) as kb:
                    kb.add(f"t{worker}-{k}", _vec(100 * worker + k), {f"col{worker}": 0.5})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    kb = KnowledgeBase.load(path)
    assert sorted(kb.task_names) == sorted(f"t{w}-{k}" for w in range(6) for k in range(10))
    assert sorted(kb.extractor_names) == [f"col{w}" for w in range(6)]


def test_callback_on_a_file_from_optuna_threads_loses_nothing(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [f"e{j:02d}" for j in range(24)]
    path = tmp_path / "kb.npz"
    cb = KnowledgeCallback(path, Embedding(_vec(1), META, task_name="task"))
    study = optuna.create_study(direction="maximize")
    for e in names:
        study.enqueue_trial({"extractor": e})
    study.optimize(lambda t: 0.01 + names.index(t.suggest_categorical("extractor", names)) / 50,
                   n_trials=len(names), n_jobs=6, callbacks=[cb])
    kb = KnowledgeBase.load(path)
    assert sorted(kb.extractor_names) == names
    row = kb.scores_frame().loc["task"]
    assert {e: row[e] for e in names} == {e: 0.01 + j / 50 for j, e in enumerate(names)}


# ------------------------------------------------------------------ docs/scale.md, Recipe 2
def _recipe(marker: str) -> str:
    """The fenced Python block of docs/scale.md that starts with ``# recipe: <marker>``."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "scale.md").read_text()
    for block in text.split("```python\n")[1:]:
        code = block.split("```", 1)[0]
        if code.startswith(f"# recipe: {marker}"):
            return code
    raise AssertionError(f"docs/scale.md has no block '# recipe: {marker}'")


def _recipe_worker(url: str, task: str, seed: int, barrier: object) -> None:
    ns: dict[str, object] = {}
    exec(_recipe("worker"), ns)  # noqa: S102 - the documented code, run as documented
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    barrier.wait(timeout=60)  # type: ignore[attr-defined]
    emb = Embedding(_vec(len(task)), META, task_name=task)
    study = ns["start_study"](url, f"study-{task}", emb, direction="maximize",  # type: ignore[operator]
                              sampler=optuna.samplers.RandomSampler(seed=seed))

    def objective(trial: optuna.Trial) -> float:
        ext = trial.suggest_categorical("extractor", ["a", "b", "c", "d"])
        c = trial.suggest_float("C", 1e-2, 1e2, log=True)
        if trial.number % 4 == 3:
            raise optuna.TrialPruned()
        return 0.01 + 0.98 * ((trial.number * 0.618034 + 0.1 * "abcd".index(ext) + c) % 1.0)

    study.optimize(objective, n_trials=8)


def test_docs_recipe_consolidates_an_rdb_storage_into_one_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.storages.RDBStorage(url)  # create the schema before the workers race for it
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_recipe_worker, args=(url, task, seed, barrier))
             for seed, task in enumerate(["task-one", "task-two", "task-one", "task-two"])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 4
    ns: dict[str, object] = {}
    exec(_recipe("consolidate"), ns)  # noqa: S102
    kb_path = tmp_path / "team.npz"
    replayed = ns["consolidate"](url, kb_path)  # type: ignore[operator]
    storage = optuna.storages.RDBStorage(url)
    complete = 0
    kb = KnowledgeBase.load(kb_path)
    for task in ("task-one", "task-two"):
        study = optuna.load_study(study_name=f"study-{task}", storage=storage)
        best: dict[str, optuna.trial.FrozenTrial] = {}
        for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
            complete += 1
            e = t.params["extractor"]
            if e not in best or t.value > best[e].value:
                best[e] = t
        row = kb.scores_frame().loc[task].dropna().to_dict()
        assert row == {e: t.value for e, t in best.items()}
        np.testing.assert_array_equal(kb.embedding(task).values, _vec(len(task)))
        prov = kb.provenance[kb.index(task)]["optuna"]["best"]
        assert {e: v["trial"] for e, v in prov.items()} == {e: t.number for e, t in best.items()}
    assert replayed == complete == 4 * 6
    # running it again changes nothing
    before = kb.scores
    assert ns["consolidate"](url, kb_path) == complete  # type: ignore[operator]
    np.testing.assert_array_equal(KnowledgeBase.load(kb_path).scores, before)


def _child_writes(path: str, done: object) -> None:
    with KnowledgeBase.locked_update(path, META, timeout=20) as kb:
        kb.add("from-child", _vec(7), {"e": 0.5})
    done.set()  # type: ignore[attr-defined]


def test_a_child_forked_while_a_thread_writes_can_write(tmp_path: Path) -> None:
    # The child inherits the parent's in-process lock in the state it had at fork time;
    # a lock held by another parent thread must not block the child forever.
    path = str(tmp_path / "kb.npz")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with KnowledgeBase.locked_update(path, META) as kb:
            kb.add("from-thread", _vec(8), {"e": 0.4})
            holding.set()
            release.wait(timeout=60)

    t = threading.Thread(target=hold)
    t.start()
    assert holding.wait(timeout=60)
    ctx = multiprocessing.get_context("fork")
    done = ctx.Event()
    child = ctx.Process(target=_child_writes, args=(path, done))
    child.start()
    release.set()  # the parent thread finishes; the child then gets the file lock
    t.join(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0 and done.is_set()
    assert sorted(KnowledgeBase.load(path).task_names) == ["from-child", "from-thread"]


def _die_mid_save(path: str, saving: object) -> None:
    def stuck_savez(fh: object, **arrays: object) -> None:
        fh.write(b"PK partial")  # type: ignore[attr-defined]
        saving.set()  # type: ignore[attr-defined]
        time.sleep(600)

    np.savez = stuck_savez  # this child process only
    with KnowledgeBase.locked_update(path, META) as kb:
        kb.add("doomed", _vec(1), {"e": 0.5})


def test_a_writer_killed_mid_save_leaves_the_lock_free(tmp_path: Path) -> None:
    path = tmp_path / "kb.npz"
    with KnowledgeBase.locked_update(path, META) as kb:
        kb.add("kept", _vec(0), {"e": 0.5})
    good = path.read_bytes()
    ctx = multiprocessing.get_context("fork")
    saving = ctx.Event()
    child = ctx.Process(target=_die_mid_save, args=(str(path), saving))
    child.start()
    try:
        assert saving.wait(60), "the child never reached its save"
        with pytest.raises(KnowledgeBaseError, match="could not lock"):
            with KnowledgeBase.locked_update(path, META, timeout=0.2):
                pass
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert path.read_bytes() == good  # the half-written temporary file never replaced it
    (left,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert left.name.startswith(f".kb.npz.{child.pid}.")  # the dead writer's, by its pid
    old = time.time() - 120  # as if the crash was two minutes ago
    os.utime(left, (old, old))
    with KnowledgeBase.locked_update(path, META, timeout=10) as kb:
        assert kb.task_names == ["kept"]
        kb.add("after", _vec(2), {"e": 0.25})
    assert KnowledgeBase.load(path).task_names == ["kept", "after"]
    assert not left.exists()  # removed by the next writer (issue 18)
