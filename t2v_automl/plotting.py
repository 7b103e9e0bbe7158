"""Figures of task space and of selection quality (matplotlib, no display needed).

Every function builds a :class:`matplotlib.figure.Figure` directly (no ``pyplot`` global
state, no window: the figure is drawn with the Agg canvas), returns it, and writes a PNG
when ``path`` is given. The PNG is ``figsize * dpi`` pixels, exactly (no tight cropping),
so that documentation and tests can rely on its size.

- :func:`plot_similarity`: a task-distance matrix, rows and columns reordered by
  hierarchical clustering, with the dendrogram on top (the clustered distance matrix of
  Achille et al., 2019, Figure 2);
- :func:`plot_task_map`: a 2-D t-SNE map of task embeddings computed from Task2Vec
  distances (``metric="precomputed"``), coloured by group (their Figure 1);
- :func:`plot_regret`: the selection regret of several methods, with confidence intervals;
- :func:`plot_best_so_far`: best-so-far curves of several optimisation strategies, the
  median over seeds with the inter-quartile band.

matplotlib is an optional dependency (``pip install 't2v-automl[plot]'``); importing this
module without it raises an :class:`ImportError` that says so.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "t2v_automl.plotting needs matplotlib, which is not installed; run "
        "`pip install 't2v-automl[plot]'` (or `pip install matplotlib`)."
    ) from exc

from t2v_automl.exceptions import InvalidInputTypeError

__all__ = ["plot_similarity", "plot_task_map", "plot_regret", "plot_best_so_far"]

PathLike = str | os.PathLike[str]


# ----------------------------------------------------------------------------- helpers
def _new_figure(figsize: tuple[float, float], dpi: int) -> Figure:
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: PathLike | None) -> None:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=fig.dpi, format="png")


def _group_colors(groups: Sequence[Any]) -> tuple[list[str], dict[str, Any]]:
    """Group labels as strings and a colour per distinct group (first-seen order)."""
    from matplotlib import colormaps

    labels = [str(g) for g in groups]
    distinct = list(dict.fromkeys(labels))
    cmap = colormaps["tab10" if len(distinct) <= 10 else "tab20"]
    colors = {g: cmap(i % cmap.N) for i, g in enumerate(distinct)}
    return labels, colors


def _square_distances(D: Any, n_names: int | None = None) -> np.ndarray:
    M = np.asarray(D, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise InvalidInputTypeError(
            f"D must be a square distance matrix; got an array of shape {M.shape}."
        )
    if not np.isfinite(M).all():
        raise InvalidInputTypeError("D contains NaN or infinite distances.")
    if n_names is not None and n_names != M.shape[0]:
        raise InvalidInputTypeError(
            f"names has {n_names} entries but D is {M.shape[0]} x {M.shape[1]}; give one name "
            "per task."
        )
    return M


def _check_groups(groups: Sequence[Any] | None, n: int) -> None:
    if groups is not None and len(groups) != n:
        raise InvalidInputTypeError(
            f"groups has {len(groups)} entries but there are {n} tasks; give one group per "
            "task."
        )


# ----------------------------------------------------------------------------- figures
def plot_similarity(D: Any, names: Sequence[str], groups: Sequence[Any] | None = None,
                    path: PathLike | None = None, *, method: str = "average",
                    title: str | None = "Task distances", cmap: str = "viridis",
                    figsize: tuple[float, float] = (8.0, 7.0), dpi: int = 100) -> Figure:
    """Clustered heatmap of a task-distance matrix with its dendrogram.

    Rows and columns are reordered by agglomerative clustering of the distances
    (:func:`scipy.cluster.hierarchy.linkage`), so that groups of similar tasks form
    blocks along the diagonal; the dendrogram is drawn above the matrix.

    Parameters
    ----------
    D : array-like of shape (n_tasks, n_tasks)
        Distances (an asymmetric matrix is symmetrised as ``(D + D.T) / 2`` for the
        clustering; the heatmap shows ``D`` itself).
    names : sequence of str
        One label per task.
    groups : sequence, optional
        One group per task (e.g. the source dataset); shown as a coloured strip along the
        rows and a legend.
    path : str or path-like, optional
        Write the figure there as a PNG.
    method : str, default="average"
        Linkage method of :func:`scipy.cluster.hierarchy.linkage`.
    title : str or None, default="Task distances"
    cmap : str, default="viridis"
        Colour map of the heatmap (dark = near).
    figsize : (float, float), default=(8.0, 7.0)
        Size in inches; the PNG is ``figsize * dpi`` pixels.
    dpi : int, default=100

    Returns
    -------
    matplotlib.figure.Figure
    """
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import squareform

    M = _square_distances(D, len(names))
    n = M.shape[0]
    _check_groups(groups, n)
    fig = _new_figure(figsize, dpi)
    show_strip = groups is not None
    left, right = (0.30, 0.83) if show_strip else (0.27, 0.83)
    ax_dendro = fig.add_axes((left, 0.80, right - left, 0.13))
    ax_heat = fig.add_axes((left, 0.08, right - left, 0.71))
    ax_cbar = fig.add_axes((0.85, 0.08, 0.025, 0.71))

    if n >= 2:
        sym = np.clip((M + M.T) / 2.0, 0.0, None)
        np.fill_diagonal(sym, 0.0)
        Z = hierarchy.linkage(squareform(sym, checks=False), method=method)
        dn = hierarchy.dendrogram(Z, ax=ax_dendro, no_labels=True, color_threshold=0,
                                  above_threshold_color="0.3")
        order = np.asarray(dn["leaves"], dtype=int)
        ax_dendro.set_xlim(0.0, 10.0 * n)  # scipy puts leaf i at x = 10 i + 5
    else:
        order = np.arange(n)
    ax_dendro.set_axis_off()
    if title:
        fig.suptitle(title, y=0.975)

    R = M[np.ix_(order, order)]
    im = ax_heat.imshow(R, cmap=cmap, aspect="auto", interpolation="nearest")
    fig.colorbar(im, cax=ax_cbar, label="distance")
    ordered_names = [str(names[i]) for i in order]
    fontsize = max(4.0, min(9.0, 260.0 / max(n, 1)))
    ax_heat.set_yticks(np.arange(n), ordered_names, fontsize=fontsize)
    ax_heat.set_xticks(np.arange(n), ordered_names, fontsize=fontsize, rotation=90)
    if n > 40:  # too many to read: keep the rows, drop the column labels
        ax_heat.set_xticks([])
    if show_strip and groups is not None:
        labels, colors = _group_colors(groups)
        ax_strip = fig.add_axes((left - 0.02, 0.08, 0.015, 0.71))
        strip = np.asarray([colors[labels[i]] for i in order])[:, None, :]
        ax_strip.imshow(strip, aspect="auto", interpolation="nearest")
        ax_strip.set_axis_off()
        ax_heat.yaxis.set_tick_params(pad=10)
        from matplotlib.patches import Patch

        handles = [Patch(color=c, label=g) for g, c in colors.items()]
        fig.legend(handles=handles, loc="upper left", fontsize=7, frameon=False,
                   bbox_to_anchor=(0.01, 0.99))
    _save(fig, path)
    return fig


def _embed_2d(D: np.ndarray, perplexity: float | None, random_state: int) -> np.ndarray:
    """2-D coordinates from a distance matrix: t-SNE, or classical MDS for tiny sets."""
    n = D.shape[0]
    if n < 5:
        # t-SNE needs perplexity < n; classical MDS is exact for so few points
        J = np.eye(n) - 1.0 / n
        B = -0.5 * J @ (D ** 2) @ J
        w, V = np.linalg.eigh(B)
        idx = np.argsort(w)[::-1][:2]
        coords = V[:, idx] * np.sqrt(np.clip(w[idx], 0.0, None))
        if coords.shape[1] < 2:
            coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        return coords
    from sklearn.manifold import TSNE

    perp = float(perplexity) if perplexity is not None else min(30.0, (n - 1) / 3.0)
    perp = max(1.0, min(perp, n - 1.0))
    tsne = TSNE(n_components=2, metric="precomputed", init="random", perplexity=perp,
                random_state=random_state)
    return np.asarray(tsne.fit_transform(D))


def plot_task_map(E: Any, groups: Sequence[Any], metric: str = "hellinger",
                  path: PathLike | None = None, *, names: Sequence[str] | None = None,
                  highlight: Sequence[int] = (), perplexity: float | None = None,
                  random_state: int = 0, title: str | None = "auto",
                  figsize: tuple[float, float] = (7.0, 6.0), dpi: int = 100) -> Figure:
    """2-D t-SNE map of task embeddings, coloured by group.

    The map is computed from Task2Vec distances
    (:func:`t2v_automl.distances.pairwise_distances`), not from the raw vectors:
    scikit-learn's :class:`~sklearn.manifold.TSNE` with ``metric="precomputed"``. With
    fewer than five tasks, classical multidimensional scaling is used instead (t-SNE needs
    more points than its perplexity).

    Parameters
    ----------
    E : array-like of shape (n_tasks, dim) or list of Embedding
        Task embeddings (Embedding objects are checked for compatibility).
    groups : sequence
        One group per task (e.g. the source dataset), for the colours and the legend.
    metric : str, default="hellinger"
        One of :data:`t2v_automl.distances.DISTANCES`; an asymmetric distance is
        symmetrised as ``(D + D.T) / 2``.
    path : str or path-like, optional
        Write the figure there as a PNG.
    names : sequence of str, optional
        Task names; those of ``highlight`` are written next to their points.
    highlight : sequence of int, default=()
        Indices of tasks drawn as large stars (e.g. a new task among the known ones).
    perplexity : float, optional
        t-SNE perplexity; default ``min(30, (n_tasks - 1) / 3)``.
    random_state : int, default=0
    title : str or None, default="auto"
        ``"auto"``: "Task map (t-SNE)" (or "(MDS)" for fewer than five tasks) and the metric.
    figsize : (float, float), default=(7.0, 6.0)
    dpi : int, default=100

    Returns
    -------
    matplotlib.figure.Figure
    """
    from t2v_automl.distances import pairwise_distances

    D = pairwise_distances(E, metric=metric)
    n = D.shape[0]
    _check_groups(groups, n)
    if names is not None and len(names) != n:
        raise InvalidInputTypeError(
            f"names has {len(names)} entries but there are {n} tasks."
        )
    D = np.clip((D + D.T) / 2.0, 0.0, None)
    np.fill_diagonal(D, 0.0)
    xy = _embed_2d(D, perplexity, random_state)

    fig = _new_figure(figsize, dpi)
    ax = fig.add_axes((0.06, 0.06, 0.62, 0.86))
    labels, colors = _group_colors(groups)
    hl = {int(i) for i in highlight}
    labelled: set[str] = set()
    for g, c in colors.items():
        idx = [i for i, lab in enumerate(labels) if lab == g and i not in hl]
        if idx:
            ax.scatter(xy[idx, 0], xy[idx, 1], s=28, color=c, label=g, alpha=0.85,
                       edgecolors="white", linewidths=0.4)
            labelled.add(g)
    for i in sorted(hl):
        g = labels[i]
        ax.scatter(xy[i, 0], xy[i, 1], s=260, marker="*", color=colors[g],
                   edgecolors="black", linewidths=1.0, zorder=5,
                   label=None if g in labelled else g)
        labelled.add(g)
        if names is not None:
            ax.annotate(str(names[i]), xy[i], xytext=(6, 6), textcoords="offset points",
                        fontsize=9, weight="bold")
    ax.set_xticks([])
    ax.set_yticks([])
    if title == "auto":
        title = f"Task map ({'t-SNE' if n >= 5 else 'MDS'}) — {metric} distance"
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    _save(fig, path)
    return fig


def plot_regret(methods: Sequence[str], regrets: Any, cis: Any = None,
                path: PathLike | None = None, *, ylabel: str = "top-1 regret (accuracy points)",
                title: str | None = "Selection regret (lower is better)",
                figsize: tuple[float, float] = (7.0, 4.5), dpi: int = 100) -> Figure:
    """Bar chart of the regret of several selection methods, with confidence intervals.

    Parameters
    ----------
    methods : sequence of str
        Method names, one bar each (in this order).
    regrets : array-like of shape (n_methods,)
        Mean regret of each method.
    cis : array-like of shape (n_methods, 2), optional
        Lower and upper end of each method's confidence interval (NaN: none drawn).
    path : str or path-like, optional
        Write the figure there as a PNG.
    ylabel : str, default="top-1 regret (accuracy points)"
    title : str or None, default="Selection regret (lower is better)"
    figsize : (float, float), default=(7.0, 4.5)
    dpi : int, default=100

    Returns
    -------
    matplotlib.figure.Figure
    """
    r = np.asarray(regrets, dtype=np.float64).reshape(-1)
    if r.shape[0] != len(methods):
        raise InvalidInputTypeError(
            f"regrets has {r.shape[0]} values for {len(methods)} methods."
        )
    fig = _new_figure(figsize, dpi)
    ax = fig.add_axes((0.12, 0.30, 0.84, 0.60))
    x = np.arange(len(methods))
    colors = ["C0"] * len(methods)
    if len(methods) and np.isfinite(r).any():
        colors[int(np.nanargmin(r))] = "C2"
    ax.bar(x, np.nan_to_num(r), color=colors, width=0.65)
    if cis is not None:
        C = np.asarray(cis, dtype=np.float64)
        if C.shape != (len(methods), 2):
            raise InvalidInputTypeError(
                f"cis must have shape ({len(methods)}, 2) (lower, upper per method); got "
                f"{C.shape}."
            )
        ok = np.isfinite(C).all(axis=1) & np.isfinite(r)
        lower = np.clip(r - C[:, 0], 0.0, None)
        upper = np.clip(C[:, 1] - r, 0.0, None)
        ax.errorbar(x[ok], r[ok], yerr=np.vstack([lower[ok], upper[ok]]), fmt="none",
                    ecolor="black", capsize=4, linewidth=1.2)
    tops = r.copy()
    if cis is not None:  # the value goes above the interval, where it can be read
        tops = np.fmax(tops, np.asarray(cis, dtype=np.float64)[:, 1])
    for xi, ri, top in zip(x, r, tops, strict=True):
        if np.isfinite(ri):
            ax.annotate(f"{ri:.2f}", (xi, max(float(top), 0.0)), xytext=(0, 3),
                        textcoords="offset points", ha="center", fontsize=8)
    ax.set_xticks(x, [str(m) for m in methods], rotation=30, ha="right", fontsize=9)
    ax.set_ylabel(ylabel)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    _save(fig, path)
    return fig


def _distinct_style(k: int, n: int) -> tuple[Any, str]:
    """Colour and line style of curve ``k`` of ``n``: no two curves alike.

    Matplotlib's default cycle repeats after 10 colours; up to 10 curves use it, up to 20
    the paired ``tab20`` colours, and beyond that the line style changes every 20 curves.
    """
    from matplotlib import colormaps

    styles = ("-", "--", ":", "-.")
    if n <= 10:
        return f"C{k}", "-"
    return colormaps["tab20"](k % 20), styles[(k // 20) % len(styles)]


def plot_best_so_far(curves: Mapping[str, Any], path: PathLike | None = None, *,
                     maximize: bool | None = None, ylabel: str = "best score so far",
                     title: str | None = "Best so far (median, inter-quartile band)",
                     figsize: tuple[float, float] = (7.0, 4.5), dpi: int = 100) -> Figure:
    """Best-so-far curves: per strategy, the median over seeds and the inter-quartile band.

    Parameters
    ----------
    curves : mapping of str to array-like of shape (n_seeds, n_trials)
        One matrix per strategy (e.g. ``"warm start"``, ``"random"``); a 1-D array is one
        seed. NaN entries (a seed with fewer trials) are ignored in the statistics.
    path : str or path-like, optional
        Write the figure there as a PNG.
    maximize : bool, optional
        When given, ``curves`` hold the raw value of each trial and are turned into
        running maxima (``True``) or minima (``False``) first; by default they are taken
        to be best-so-far values already.
    ylabel : str, default="best score so far"
    title : str or None
    figsize : (float, float), default=(7.0, 4.5)
    dpi : int, default=100

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not curves:
        raise InvalidInputTypeError("curves is empty; give at least one strategy.")
    fig = _new_figure(figsize, dpi)
    ax = fig.add_axes((0.11, 0.12, 0.85, 0.78))
    for k, (label, values) in enumerate(curves.items()):
        V = np.atleast_2d(np.asarray(values, dtype=np.float64))
        if V.ndim != 2:
            raise InvalidInputTypeError(
                f"curves[{label!r}] must be (n_seeds, n_trials); got shape {V.shape}."
            )
        if maximize is not None:
            filled = np.where(np.isnan(V), -np.inf if maximize else np.inf, V)
            acc = np.maximum.accumulate if maximize else np.minimum.accumulate
            V = acc(filled, axis=1)
            V[~np.isfinite(V)] = np.nan
        t = np.arange(1, V.shape[1] + 1)
        with warnings.catch_warnings():  # all-NaN columns give NaN quietly
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(V, axis=0)
            q1, q3 = np.nanpercentile(V, [25, 75], axis=0)
        color, style = _distinct_style(k, len(curves))
        ax.plot(t, med, color=color, linestyle=style, label=f"{label} (n={V.shape[0]})",
                linewidth=2, marker="o" if V.shape[1] <= 30 else None, markersize=3,
                drawstyle="steps-post")
        if V.shape[0] > 1:
            ax.fill_between(t, q1, q3, color=color, alpha=0.2, linewidth=0, step="post")
    ax.set_xlabel("trial")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, frameon=False)
    if title:
        ax.set_title(title)
    _save(fig, path)
    return fig
