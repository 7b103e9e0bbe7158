"""Per-task work under joblib backends: serial, loky, threading, dask and Ray agree bit for bit.

The embedder and :func:`evaluate_zoo` leave the backend to joblib: ``n_jobs=None`` defers
to an enclosing ``joblib.parallel_config``. Dask runs on a ``distributed`` local cluster
(threads, so the probe is shared between concurrent tasks); Ray is skipped where it is
not installed (it is not in the ``test`` extra: ``pip install -e .[ray]``).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from joblib import parallel_config

from t2v_automl.cli.demo import write_image_folder
from t2v_automl.estimators import Task2VecEmbedder
from t2v_automl.estimators import _embedder as embedder_mod
from t2v_automl.evaluation import evaluate_zoo
from t2v_automl.tasks import Task

FAST = dict(probe="tiny_random", image_size=16, max_images=40, head_epochs=3)


@pytest.fixture(scope="module")
def tasks(digit_tasks, tmp_path_factory):
    """Three array tasks and one lazy image-folder task (shipped to workers as file names)."""
    root = tmp_path_factory.mktemp("folder_task")
    write_image_folder(digit_tasks[3], root)
    folder = Task.from_folder(root, image_size=16)
    assert folder.is_lazy
    return [*digit_tasks[:3], folder]


@pytest.fixture(scope="module")
def serial(tasks):
    return Task2VecEmbedder(**FAST).fit().transform(tasks)


@pytest.fixture(scope="module")
def pairs():
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(0)
    out = []
    for classes in [(0, 1, 2), (3, 4), (5, 6, 7)]:
        idx = rng.permutation(np.flatnonzero(np.isin(d.target, classes)))
        tr, te = idx[:40], idx[40:140]
        out.append((Task.from_arrays(d.images[tr] / 16.0, d.target[tr], name=f"d{classes}"),
                    Task.from_arrays(d.images[te] / 16.0, d.target[te], name=f"d{classes}t")))
    return out


@pytest.fixture(scope="module")
def serial_zoo(pairs):
    return evaluate_zoo(["raw_pixels"], pairs)


def _same_zoo(a, b):
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.stderr, b.stderr)
    for ra, rb in zip(a.results, b.results, strict=True):
        for x, y in zip(ra, rb, strict=True):
            np.testing.assert_array_equal(x.correct, y.correct)


@pytest.fixture(scope="module")
def dask_client():
    pytest.importorskip("distributed", reason="dask.distributed is not installed "
                                              "(pip install -e .[dask])")
    from distributed import Client, LocalCluster

    # threads in this process: starts in about a second and shares the probe between
    # tasks that run at the same time (what the per-thread Fisher hooks are for)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture
def threads_seen(monkeypatch):
    """The names of the threads that ran ``_embed_one``."""
    seen: set[str] = set()
    real = embedder_mod._embed_one

    def spy(*args, **kwargs):
        seen.add(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(embedder_mod, "_embed_one", spy)
    return seen


def test_n_jobs_none_defers_to_parallel_config(tasks, serial, threads_seen):
    seen = threads_seen
    with parallel_config(backend="threading", n_jobs=2):
        E = Task2VecEmbedder(**FAST).fit().transform(tasks)
    assert "MainThread" not in seen and seen
    assert np.array_equal(E, serial)
    seen.clear()
    Task2VecEmbedder(**FAST).fit().transform(tasks[:2])  # no config: serial, in-process
    assert seen == {"MainThread"}


def test_embedder_loky_equals_serial(tasks, serial):
    with parallel_config(backend="loky", n_jobs=2):
        E = Task2VecEmbedder(**FAST).fit().transform(tasks)
    assert np.array_equal(E, serial)


def test_embedder_threads_share_the_probe_safely(tasks, serial):
    """Two tasks embedded at once in two threads of one process, one shared probe."""
    E = Task2VecEmbedder(**FAST, n_jobs=2).fit()
    with parallel_config(backend="threading"):
        out = E.transform(tasks + tasks)
    assert np.array_equal(out, np.vstack([serial, serial]))


def test_embedder_dask_equals_serial(tasks, serial, dask_client):
    from distributed import get_task_stream

    # n_jobs=None: the cluster's 2 threads
    with get_task_stream(client=dask_client) as stream, parallel_config(backend="dask"):
        E = Task2VecEmbedder(**FAST).fit().transform(tasks)
    assert stream.data  # the tasks ran on the cluster
    assert np.array_equal(E, serial)


def test_evaluate_zoo_loky_and_dask_equal_serial(pairs, serial_zoo, dask_client):
    with parallel_config(backend="loky", n_jobs=2):
        _same_zoo(evaluate_zoo(["raw_pixels"], pairs), serial_zoo)
    with parallel_config(backend="dask"):
        _same_zoo(evaluate_zoo(["raw_pixels"], pairs), serial_zoo)


def test_ray_backend_equals_serial(tasks, serial, pairs, serial_zoo):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e .[ray]); "
                                            "it is too large for the test extra")
    from ray.util.joblib import register_ray

    register_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False, ignore_reinit_error=True)
    try:
        with parallel_config(backend="ray", n_jobs=2):
            E = Task2VecEmbedder(**FAST).fit().transform(tasks)
            zoo = evaluate_zoo(["raw_pixels"], pairs)
    finally:
        ray.shutdown()
    assert np.array_equal(E, serial)
    _same_zoo(zoo, serial_zoo)


def test_eager_malloc_trimming_is_reported_once(monkeypatch, caplog):
    """dask.distributed's MALLOC_TRIM_THRESHOLD_=65536 makes torch ~3x slower: say so."""
    from t2v_automl import _parallel

    _parallel.check_allocator.cache_clear()
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    try:
        with caplog.at_level("WARNING", logger="t2v_automl"):
            assert _parallel.check_allocator()
            assert _parallel.check_allocator()
        assert sum("pre-spawn-environ" in r.getMessage() for r in caplog.records) == 1
        _parallel.check_allocator.cache_clear()
        monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", str(256 << 20))
        assert not _parallel.check_allocator()
    finally:
        _parallel.check_allocator.cache_clear()
