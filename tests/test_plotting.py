"""Tests of the figures: real PNGs of the expected size, and the content they show."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("matplotlib")

from t2v_automl.exceptions import InvalidInputTypeError  # noqa: E402
from t2v_automl.plotting import (  # noqa: E402
    plot_best_so_far,
    plot_regret,
    plot_similarity,
    plot_task_map,
)


def png(path: Path) -> Image.Image:
    im = Image.open(path)
    assert im.format == "PNG"
    im.load()
    return im


def two_blocks(n_per: int = 5, seed: int = 0) -> tuple[np.ndarray, list[str], list[str]]:
    """Positive 'Fisher-like' embeddings of two clearly different kinds of task, shuffled."""
    rng = np.random.default_rng(seed)
    a = rng.random((n_per, 30)) * 0.1
    a[:, :10] += 1.0
    b = rng.random((n_per, 30)) * 0.1
    b[:, 20:] += 1.0
    E = np.vstack([a, b])
    groups = ["fashion"] * n_per + ["digits"] * n_per
    order = rng.permutation(len(E))
    names = [f"{groups[i]}-{i}" for i in order]
    return E[order], names, [groups[i] for i in order]


def test_plot_similarity_is_a_clustered_heatmap(tmp_path: Path) -> None:
    from t2v_automl.distances import pairwise_distances

    E, names, groups = two_blocks()
    D = pairwise_distances(E, metric="hellinger")
    path = tmp_path / "sim.png"
    fig = plot_similarity(D, names, groups=groups, path=path, figsize=(6, 5), dpi=100)
    assert png(path).size == (600, 500)
    heat = next(ax for ax in fig.axes if ax.images and len(ax.get_yticklabels()) == len(names))
    shown = [t.get_text() for t in heat.get_yticklabels()]
    assert sorted(shown) == sorted(names)
    # clustering puts each group in one contiguous run of rows
    kinds = [s.split("-")[0] for s in shown]
    assert sum(k1 != k2 for k1, k2 in zip(kinds, kinds[1:], strict=False)) == 1
    # the heatmap shows D reordered like the labels
    idx = [names.index(s) for s in shown]
    assert np.allclose(heat.images[0].get_array(), D[np.ix_(idx, idx)])
    # a dendrogram was drawn (line collections in the top axes)
    assert any(ax.collections for ax in fig.axes if ax is not heat)


def test_plot_similarity_without_groups_and_without_path() -> None:
    D = np.array([[0.0, 0.3], [0.3, 0.0]])
    fig = plot_similarity(D, ["a", "b"])
    assert fig.get_size_inches().tolist() == [8.0, 7.0]


def test_plot_similarity_rejects_bad_input() -> None:
    with pytest.raises(InvalidInputTypeError, match="square"):
        plot_similarity(np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(InvalidInputTypeError, match="names"):
        plot_similarity(np.zeros((2, 2)), ["a"])
    with pytest.raises(InvalidInputTypeError, match="groups"):
        plot_similarity(np.zeros((2, 2)), ["a", "b"], groups=["x"])
    with pytest.raises(InvalidInputTypeError, match="NaN"):
        plot_similarity(np.full((2, 2), np.nan), ["a", "b"])


def test_plot_task_map_separates_groups(tmp_path: Path) -> None:
    E, names, groups = two_blocks(n_per=8)
    path = tmp_path / "map.png"
    fig = plot_task_map(E, groups, metric="hellinger", path=path, names=names,
                        highlight=[0], figsize=(5, 4), dpi=80)
    assert png(path).size == (400, 320)
    ax = fig.axes[0]
    assert "t-SNE" in ax.get_title() and "hellinger" in ax.get_title()
    pts = {c.get_label(): c.get_offsets() for c in ax.collections
           if not c.get_label().startswith("_")}
    assert set(pts) == {"fashion", "digits"}
    ca, cb = (np.asarray(p).mean(axis=0) for p in pts.values())
    spread = max(np.asarray(p).std(axis=0).max() for p in pts.values())
    assert np.linalg.norm(ca - cb) > 2 * spread
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(legend) == ["digits", "fashion"]


def test_plot_task_map_few_tasks_and_embeddings(tmp_path: Path) -> None:
    from t2v_automl.embedding import Embedding, EmbeddingMeta

    meta = EmbeddingMeta(probe="tiny_random", weights_sha256="0" * 64, method="exact",
                         input_size=16, layers="l", dim=30)
    E, _, groups = two_blocks(n_per=2)
    embs = [Embedding(v, meta, task_name=f"t{i}") for i, v in enumerate(E[:3])]
    fig = plot_task_map(embs, groups[:3], path=tmp_path / "m.png")
    assert "MDS" in fig.axes[0].get_title()
    assert png(tmp_path / "m.png").size == (700, 600)
    with pytest.raises(InvalidInputTypeError, match="groups"):
        plot_task_map(E, groups[:2])


def test_plot_regret_bars_and_intervals(tmp_path: Path) -> None:
    methods = ["task2vec", "domain", "best fixed"]
    regrets = [1.4, 1.6, 4.2]
    cis = [[1.0, 1.9], [1.1, 2.0], [3.5, 5.0]]
    fig = plot_regret(methods, regrets, cis, path=tmp_path / "r.png", dpi=50)
    assert png(tmp_path / "r.png").size == (350, 225)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert np.allclose(heights, regrets)
    assert [t.get_text() for t in ax.get_xticklabels()] == methods
    with pytest.raises(InvalidInputTypeError, match="cis"):
        plot_regret(methods, regrets, [[0, 1]])
    with pytest.raises(InvalidInputTypeError, match="3 methods"):
        plot_regret(methods, regrets[:2])


def test_plot_best_so_far_median_and_band(tmp_path: Path) -> None:
    raw = np.array([[0.5, 0.7, 0.6, 0.8], [0.6, 0.6, 0.9, 0.7], [0.4, 0.5, 0.5, 0.6]])
    curves = {"warm start": raw, "random": raw[:, ::-1]}
    fig = plot_best_so_far(curves, path=tmp_path / "b.png", maximize=True)
    assert png(tmp_path / "b.png").size == (700, 450)
    ax = fig.axes[0]
    line = ax.get_lines()[0]
    expected = np.median(np.maximum.accumulate(raw, axis=1), axis=0)
    assert np.allclose(line.get_ydata(), expected)
    assert len(ax.collections) == 2  # one inter-quartile band per strategy
    # already best-so-far values are drawn as given; a 1-D curve is one seed
    fig = plot_best_so_far({"one": [0.1, 0.3, 0.3]})
    assert np.allclose(fig.axes[0].get_lines()[0].get_ydata(), [0.1, 0.3, 0.3])
    with pytest.raises(InvalidInputTypeError, match="empty"):
        plot_best_so_far({})


def test_figures_leave_pyplot_alone() -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot_regret(["a"], [1.0])
    plot_best_so_far({"a": [1.0, 2.0]})
    assert plt.get_fignums() == before


def test_plot_best_so_far_gives_many_curves_distinct_looks() -> None:
    from matplotlib.colors import to_rgba

    rng = np.random.default_rng(0)
    curves = {f"s{k}": rng.random((2, 5)) for k in range(23)}
    lines = plot_best_so_far(curves).axes[0].get_lines()
    looks = {(to_rgba(line.get_color()), line.get_linestyle()) for line in lines}
    assert len(lines) == 23 and len(looks) == 23
