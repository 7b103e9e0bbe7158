"""Per-task work through joblib, on whatever backend the caller configured."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

from t2v_automl._logging import logger, progress


def run_jobs(jobs: Sequence[Any], n_jobs: int | None, *, verbose: int | bool = 0,
             desc: str = "tasks") -> list[Any]:
    """Run joblib ``delayed`` calls and return their results in order.

    ``n_jobs=None`` defers to an enclosing ``joblib.parallel_config`` (loky, threading,
    dask, Ray...), and means 1 outside one. Results stream back as they finish (for the
    progress bar) where the backend can do so, and come back all at once otherwise
    (Ray's backend cannot).

    Parameters
    ----------
    jobs : sequence of joblib delayed calls
    n_jobs : int or None
    verbose : int or bool, default=0
        A tqdm bar over the jobs when truthy.
    desc : str, default="tasks"
        The bar's label.

    Returns
    -------
    list
    """
    from joblib import Parallel
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    streams = getattr(backend, "supports_return_generator", False)
    parallel = Parallel(n_jobs=n_jobs, return_as="generator" if streams else "list")
    return list(progress(parallel(jobs), verbose=verbose, desc=desc, total=len(jobs)))


#: glibc's trim threshold below which torch's per-layer buffers go back to the system at
#: every free (``dask.distributed`` sets 65536 for its worker processes).
_SLOW_TRIM_BYTES = 1 << 20


@functools.cache
def check_allocator() -> bool:
    """Warn (once per process) when glibc is told to trim freed memory eagerly.

    ``MALLOC_TRIM_THRESHOLD_`` set to a small value — ``dask.distributed`` sets 65536 for
    the worker processes of a ``LocalCluster`` or ``dask-worker``, and leaves it in the
    environment of the process that started the cluster, so later joblib/loky workers
    inherit it too — makes glibc return and re-map the buffers that torch allocates and
    frees at every layer; the Fisher then runs about 3 times slower. It is read when a
    process starts, so it can only be reported here, not changed.

    Returns
    -------
    bool
        True when the setting was found (and logged).
    """
    value = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    try:
        small = value is not None and int(value) < _SLOW_TRIM_BYTES
    except ValueError:
        return False
    if small:
        logger.warning(
            "MALLOC_TRIM_THRESHOLD_=%s in this worker's environment makes torch about 3x "
            "slower here. dask.distributed sets it for its workers (and in the environment "
            "of the process that started a LocalCluster); start the cluster under "
            "dask.config.set({'distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_': "
            "None}), or unset it before workers start.", value)
    return small
