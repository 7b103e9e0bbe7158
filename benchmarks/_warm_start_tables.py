"""The validation tables of ``benchmarks/warm_start.py``'s held-out tasks.

A helper module of the warm-start benchmark (not a script; which tasks are held out is
``_common.draw_tasks``): the suite's task list (:func:`suite_meta`), the validation split
the knowledge base scored a task on (:func:`validation_split`), and per task the
validation accuracy of every extractor at every C of :data:`C_GRID` (:func:`task_table`,
:func:`build_tables`).

Features come from the product's one feature path,
:func:`t2v_automl.transferability.task_features`, in the benchmarks' one feature cache
(``_common.FEATURE_CACHE``, ``benchmarks/.cache/features``): the training split's features
there are the very ones the hybrid selector's LogME reads
(``TransferabilitySelector(memory=<that cache>)``), as the selection benchmark's do. Only
the accuracy rows (one per extractor: the linear head fitted at each C) are cached here,
under :data:`TABLES`; they are not features.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: The accuracy rows of the validation tables.
TABLES = Path(__file__).resolve().parent / ".cache" / "warm_start"

#: Grid of the linear head's C: half-decades from 1e-3 to 1e2 (11 values, 1.0 included).
C_GRID = 10.0 ** np.arange(-3.0, 2.01, 0.5)
#: Bounds of the study's log-uniform C.
C_LOW, C_HIGH = 1e-3, 1e2
#: Bump when what a cached table row means changes.
_ROW_VERSION = 2


def log(msg: str) -> None:
    """Print a timestamped line."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- tasks
def suite_meta(suite: str = "default", seed: int = 0) -> list[dict[str, Any]]:
    """``name``, ``kind`` and ``source_dataset`` of every task of the suite, in suite order."""
    from t2v_automl.suites import iter_suite

    return [{"name": st.name, "kind": st.kind,
             "source_dataset": st.provenance["source_dataset"]}
            for st in iter_suite(suite, seed)]


def validation_split(test: Any, cap: int | None) -> Any:
    """The test split as the knowledge base scored it: at most ``cap`` images.

    The knowledge-base build's own rule (:func:`t2v_automl.building.cap_test_split`, the
    test cap of subset tasks): each class keeps a share of ``cap`` proportional to its size (largest
    remainders, at least one image), taken from the start of the split's own order; the
    images keep their relative order. The benchmark checks the result against the base:
    its fingerprint must equal the task's ``provenance["test_fingerprint"]``.

    Parameters
    ----------
    test : Task
    cap : int or None
        None (relabel tasks) or a split no larger: ``test`` itself.

    Returns
    -------
    Task
    """
    from t2v_automl.building import cap_test_split

    return cap_test_split(test, cap)


# ----------------------------------------------------------------------------- tables
def accuracy_grid(f_train: np.ndarray, y_train: np.ndarray, f_val: np.ndarray,
                  y_val: np.ndarray, grid: np.ndarray = C_GRID) -> np.ndarray:
    """Validation accuracy of the knowledge base's linear head at each C.

    The head is :func:`t2v_automl.evaluation.make_linear_head` (``StandardScaler`` then
    ``LogisticRegression(C, max_iter=2000, random_state=0)``) on float64 features.

    Parameters
    ----------
    f_train, f_val : ndarray of shape (n, d)
        Features of the training and validation images.
    y_train, y_val : ndarray of shape (n,)
        Integer labels.
    grid : ndarray of shape (n_C,)
        Values of C.

    Returns
    -------
    ndarray of shape (n_C,)
    """
    from sklearn.exceptions import ConvergenceWarning

    from t2v_automl.evaluation import make_linear_head

    x_tr, x_va = np.asarray(f_train, np.float64), np.asarray(f_val, np.float64)
    out = np.empty(len(grid))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for k, C in enumerate(grid):
            model = make_linear_head(float(C), random_state=0).fit(x_tr, y_train)
            out[k] = float((model.predict(x_va) == y_val).mean())
    return out


def _table_row(key: Mapping[str, Any], train: Any, val: Any, features: Any) -> np.ndarray:
    """:func:`accuracy_grid` of one extractor on one task (what the row cache stores).

    ``key`` names the extractor (and its weights), the input size, both splits (their
    fingerprints) and the grid; the tasks and the feature cache are left out of the hash.
    """
    from t2v_automl.transferability import task_features

    kw = {"input_size": key["input_size"], "memory": features}
    f_tr = task_features(key["extractor"], train, **kw)
    f_va = task_features(key["extractor"], val, **kw)
    return accuracy_grid(f_tr, train.labels, f_va, val.labels, np.asarray(key["grid"]))


def task_table(train: Any, val: Any, names: Sequence[str], input_size: int,
               memory: Any = None, features: Any = None, grid: np.ndarray = C_GRID
               ) -> np.ndarray:
    """Validation accuracy of every extractor at every C on one task.

    Parameters
    ----------
    train, val : Task
        Training and validation splits.
    names : sequence of str
        Extractors.
    input_size : int
        Input size of the resizable extractors (as ``task_features`` takes it: the
        knowledge base's evaluation input size, so that the training features are those
        its ``TransferabilitySelector`` reads).
    memory : joblib.Memory, optional
        Cache of the accuracy rows (None: computed).
    features : None, path or joblib.Memory
        The feature cache of :func:`~t2v_automl.transferability.task_features`.
    grid : ndarray of shape (n_C,)

    Returns
    -------
    ndarray of shape (len(names), n_C)
    """
    from t2v_automl.extractors import get_extractor

    row = _table_row if memory is None else memory.cache(
        _table_row, ignore=["train", "val", "features"])
    t0 = time.perf_counter()
    table = np.empty((len(names), len(grid)))
    for j, name in enumerate(names):
        key = {"version": _ROW_VERSION, "extractor": name,
               "weights_sha256": get_extractor(name, "cpu").weights_sha256,
               "input_size": int(input_size), "train": train.fingerprint,
               "val": val.fingerprint, "grid": [float(c) for c in grid]}
        table[j] = row(key, train, val, features)
    log(f"table of {train.name}: best {table.max():.3f} ({time.perf_counter() - t0:.1f}s)")
    return table


def build_tables(names: Sequence[str], tasks: Sequence[str], input_size: int, test_cap: int,
                 memory: Any = None, features: Any = None, suite: str = "default",
                 seed: int = 0
                 ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]], dict[str, Any]]:
    """The validation table, the metadata and the training split of every held-out task.

    The suite is rebuilt deterministically (:func:`~t2v_automl.suites.iter_suite`); the
    tables are computed in this process, one task after the other, in ``tasks`` order
    (several processes started with ``--precompute-only`` on different orders share the
    caches safely).

    Returns
    -------
    tables : dict of str to ndarray of shape (len(names), n_C)
    info : dict of str to dict
        ``kind``, ``source_dataset``, ``n_classes``, ``n_train``, ``n_val`` and the two
        splits' fingerprints (``train_fingerprint``, ``val_fingerprint``).
    train : dict of str to Task
        The training splits (what the hybrid selector gets as ``task=``).
    """
    from t2v_automl.suites import iter_suite

    wanted = set(tasks)
    found = {st.name: st for st in iter_suite(suite, seed) if st.name in wanted}
    missing = wanted - set(found)
    if missing:
        raise SystemExit(f"tasks not in the {suite!r} suite: {sorted(missing)}")
    tables, info, train = {}, {}, {}
    t0 = time.perf_counter()
    for name in tasks:
        st = found[name]
        val = validation_split(st.test, test_cap if st.kind == "subset" else None)
        info[name] = {"kind": st.kind, "source_dataset": st.provenance["source_dataset"],
                      "n_classes": int(st.n_classes), "n_train": int(st.train.n_images),
                      "n_val": int(val.n_images), "train_fingerprint": st.train.fingerprint,
                      "val_fingerprint": val.fingerprint}
        tables[name] = task_table(st.train, val, list(names), input_size, memory, features)
        train[name] = st.train
    log(f"tables of {len(tasks)} tasks in {time.perf_counter() - t0:.0f}s")
    return tables, info, train
