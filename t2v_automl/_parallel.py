"""Per-task work through joblib, on whatever backend the caller configured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from t2v_automl._logging import progress


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
