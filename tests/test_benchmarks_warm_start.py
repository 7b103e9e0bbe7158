"""Fast checks of the warm-start benchmark's objective, studies, summary and tables."""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from tests.conftest import load_benchmark  # noqa: E402

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "warm_start.py"


@pytest.fixture(scope="module")
def ws() -> Any:
    return load_benchmark(_PATH.stem, "bench_warm_start")


@pytest.fixture(scope="module")
def wst(ws: Any) -> Any:
    """The benchmark's helper module (importable once the script put benchmarks/ on the path)."""
    return importlib.import_module("_warm_start_tables")


NAMES = ["a", "b", "c", "d", "e"]


@pytest.fixture()
def table(ws: Any) -> np.ndarray:
    """5 extractors x the C grid; the best cell is extractor "d" at C = 10."""
    rng = np.random.default_rng(0)
    t = 0.6 + 0.1 * rng.random((len(NAMES), len(ws.C_GRID)))
    t[3, ws.snap_index(10.0)] = 0.95
    return t


PREDICTED = [0.70, 0.60, 0.80, 0.90, 0.50]


class FakeSelector:
    """The minimal selector interface warm_start and Task2VecSampler use."""

    extractor_names_ = NAMES
    embedding_meta_ = None
    n_features_in_ = 3

    def predict_scores(self, X: Any) -> np.ndarray:
        return np.array([PREDICTED] * len(X))

    def predict(self, X: Any) -> np.ndarray:
        return self.predict_scores(X)


class SpyHybrid(FakeSelector):
    """A selector with ``explain`` (as HybridSelector) that records what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any]] = []

    def explain(self, X: Any = None, embeddings: Any = None,
                domain_embeddings: Any = None) -> Any:
        self.calls.append((X, embeddings))
        n = len(embeddings)
        return SimpleNamespace(scores=np.array([PREDICTED] * n), novelty=np.full(n, 3.0),
                               gate=np.ones(n))


def test_snap_index(ws: Any) -> None:
    grid = ws.C_GRID
    assert len(grid) == 11 and np.isclose(grid[0], 1e-3) and np.isclose(grid[-1], 1e2)
    assert np.isclose(grid[ws.snap_index(1.0)], 1.0)
    assert ws.snap_index(1e-3) == 0 and ws.snap_index(1e2) == len(grid) - 1
    assert np.isclose(grid[ws.snap_index(0.9)], 1.0)  # nearest in log scale
    assert np.isclose(grid[ws.snap_index(0.5)], 10 ** -0.5)


def test_objective_looks_up_the_snapped_cell(ws: Any, table: np.ndarray) -> None:
    obj = ws.make_objective(table, NAMES)
    trial = optuna.trial.FixedTrial({"extractor": "d", "C": 12.0})
    assert obj(trial) == table[3, ws.snap_index(10.0)] == 0.95
    with pytest.raises(ValueError, match="shape"):
        ws.make_objective(table[:, :3], NAMES)


def test_trials_to_reach_and_gap(ws: Any) -> None:
    assert ws.trials_to_reach(np.array([0.5, 0.9, 0.995, 1.0]), 1.0) == 3  # 0.5 points
    assert math.isinf(ws.trials_to_reach(np.array([0.5, 0.9, 0.99]), 1.0))
    gap = ws.best_so_far_gap(np.array([0.5, 0.9, 0.7, 1.0]), 1.0)
    np.testing.assert_allclose(gap, [50, 10, 10, 0])


def test_summary_ratio_and_censoring(ws: Any) -> None:
    n_tasks, n_seeds, n_trials = 4, 3, 10
    best = np.ones(n_tasks)

    def runs_reaching_at(k: int | None) -> np.ndarray:
        v = np.full((n_tasks, n_seeds, n_trials), 0.5)
        if k is not None:
            v[:, :, k - 1:] = 1.0
        return v

    s = ws.summarise({"tpe": runs_reaching_at(9), "warm_start+tpe": runs_reaching_at(3),
                      "random": runs_reaching_at(None)}, best, n_trials)
    m = s["methods"]
    assert m["tpe"]["median_trials_to_reach"] == 9
    assert m["warm_start+tpe"]["median_trials_to_reach"] == 3
    assert m["warm_start+tpe"]["fraction_reached"] == 1.0
    assert math.isinf(m["random"]["median_trials_to_reach"])
    assert m["random"]["fraction_reached"] == 0.0
    np.testing.assert_allclose(m["tpe"]["gap_curve_median"][[0, 8]], [50, 0])
    r = s["ratios"]["warm_start+tpe"]
    assert r["ratio_to_tpe"] == pytest.approx(1 / 3) and r["goal_met"]
    assert "random" not in s["ratios"]
    md = ws.markdown_table(s)
    assert ">10" in md and "0.33" in md and md.count("\n") == 4


def test_bootstrap_median_ci_keeps_censored(ws: Any) -> None:
    lo, hi = ws.bootstrap_median_ci(np.array([1.0, 2.0, math.inf, math.inf, math.inf]))
    assert lo <= 2.0 and math.isinf(hi)


@pytest.mark.parametrize("method", [
    "random", "tpe", "warm_start+tpe", "warm_start(C sampled)+tpe", "t2v_sampler",
    "warm_start+t2v_sampler", "oracle_warm_start+tpe"])
def test_run_study(ws: Any, table: np.ndarray, method: str) -> None:
    emb = np.array([0.1, 0.2, 0.3])
    out = ws.run_study(method, table, NAMES, n_trials=6, seed=0, selector=FakeSelector(),
                       embedding=emb)
    values = out["values"]
    assert values.shape == (6,) and np.isin(values, table).all()
    if method.startswith("warm_start"):
        assert out["enqueued"] == ["d", "c", "a"]  # the fake selector's top 3
        assert out["extractors"][:3] == ["d", "c", "a"]
    if method == "oracle_warm_start+tpe":  # the table's own ranking
        assert out["enqueued"][0] == "d" and len(out["enqueued"]) == 3
    if method in ("warm_start+tpe", "warm_start+t2v_sampler", "oracle_warm_start+tpe"):
        assert values[0] == table[3, ws.snap_index(1.0)]  # C fixed to 1
    again = ws.run_study(method, table, NAMES, n_trials=6, seed=0, selector=FakeSelector(),
                         embedding=emb)
    np.testing.assert_array_equal(values, again["values"])  # seeded


@pytest.mark.parametrize("method", ["warm_start+tpe", "t2v_sampler", "warm_start+t2v_sampler",
                                    "oracle_warm_start+tpe"])
def test_run_study_gives_the_hybrid_the_task(ws: Any, table: np.ndarray, method: str) -> None:
    # the integration asks a selector with explain() for explain([task], embeddings=[emb])
    emb, task = np.array([0.1, 0.2, 0.3]), object()
    spy = SpyHybrid()
    out = ws.run_study(method, table, NAMES, n_trials=4, seed=0, selector=spy,
                       embedding=emb, task=task)
    if method.startswith("oracle"):  # the oracle replaces the selector, and gets no task
        assert spy.calls == [] and out["enqueued"][0] == "d"
        return
    assert spy.calls and all(X == [task] for X, _ in spy.calls)
    assert all(np.array_equal(np.asarray(E[0]), emb) for _, E in spy.calls)
    assert len(spy.calls) == 2 if method == "warm_start+t2v_sampler" else len(spy.calls) == 1


def test_task_studies_wires_selectors_and_task(ws: Any, table: np.ndarray) -> None:
    emb, task = np.array([0.1, 0.2, 0.3]), object()
    hybrid, plain = SpyHybrid(), SpyHybrid()
    methods = ["tpe", "warm_start+tpe", "warm_start(embedding only)+tpe"]
    out = ws.task_studies(methods, 2, table, NAMES, 4, hybrid, plain, emb, task, 1.0)
    assert sorted(out) == sorted((m, s) for m in methods for s in range(2))
    assert [X for X, _ in hybrid.calls] == [[task]] * 2  # warm_start+tpe, two seeds
    assert [X for X, _ in plain.calls] == [None] * 2  # embedding only: no task
    again = ws.run_study("warm_start+tpe", table, NAMES, 4, 1, SpyHybrid(), emb, task=task)
    np.testing.assert_array_equal(out[("warm_start+tpe", 1)]["values"], again["values"])


def test_oracle_selector_follows_the_selector_contract(ws: Any) -> None:
    scores = np.array([0.2, 0.9, 0.5])
    oracle = ws.OracleSelector(["a", "b", "c"], scores).fit()
    np.testing.assert_array_equal(oracle.predict([None, None]), np.tile(scores, (2, 1)))
    assert list(oracle.select([None])) == ["b"]
    assert list(oracle.rank([None])[0]) == ["b", "c", "a"]


def test_accuracy_grid_on_blobs(wst: Any) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    x = rng.normal(size=(40, 4)) + 3.0 * y[:, None]
    acc = wst.accuracy_grid(x[::2], y[::2], x[1::2], y[1::2], wst.C_GRID[::5])
    assert acc.shape == (3,) and (acc >= 0.9).all()


def test_validation_split_caps_by_class_in_order(wst: Any) -> None:
    from t2v_automl.tasks import Task

    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    rng = np.random.default_rng(0)
    order = rng.permutation(labels.size)
    images = rng.random((labels.size, 3, 4, 4)).astype(np.float32)
    test = Task.from_arrays(images[order], labels[order], name="t")
    assert wst.validation_split(test, None) is test
    assert wst.validation_split(test, 100) is test
    val = wst.validation_split(test, 20)
    assert val.n_images == 20
    np.testing.assert_array_equal(np.bincount(val.labels), [12, 6, 2])
    for c, k in enumerate([12, 6, 2]):  # the first images of each class, in split order
        first = np.flatnonzero(test.labels == c)[:k]
        np.testing.assert_array_equal(val.images[val.labels == c], test.images[first])


def test_task_table_features_are_the_hybrids(wst: Any, digits: Any, tmp_path: Path) -> None:
    # the table's training features go through task_features into the shared cache, where
    # the hybrid's TransferabilitySelector reads them (no second feature path)
    from joblib import Memory

    from t2v_automl.estimators import TransferabilitySelector
    from t2v_automl.extractors import get_extractor
    from t2v_automl.transferability import logme, task_features
    from tests.conftest import make_digit_task

    train = make_digit_task(digits, (0, 1, 2), n_per_class=20, seed=0)
    val = make_digit_task(digits, (0, 1, 2), n_per_class=20, seed=1)
    features = Memory(str(tmp_path / "features"), verbose=0)
    rows = Memory(str(tmp_path / "rows"), verbose=0)
    names = ["raw_pixels"]
    grid = wst.C_GRID[::5]
    table = wst.task_table(train, val, names, 16, rows, features, grid)
    ext = get_extractor("raw_pixels", "cpu")
    expected = wst.accuracy_grid(ext.transform(train.images), train.labels,
                                 ext.transform(val.images), val.labels, grid)
    np.testing.assert_array_equal(table[0], expected)

    def entries() -> set[str]:  # one folder per cached call of the product's feature path
        return {p.parent.name for p in (tmp_path / "features").rglob("output.pkl")}

    cached = entries()
    assert len(cached) == 2  # the training and the validation split
    sel = TransferabilitySelector(extractors=names, input_size=16, memory=features).fit()
    got = sel.predict_scores([train])
    assert entries() == cached  # LogME read the table's training features
    assert got[0, 0] == pytest.approx(logme(task_features("raw_pixels", train), train.labels))
    np.testing.assert_array_equal(  # and the rows are cached: same table without features
        wst.task_table(train, val, names, 16, rows, None, grid), table)


@pytest.fixture(scope="module")
def common(ws: Any) -> Any:
    """``benchmarks/_common.py``, whose draw of held-out tasks the benchmark uses."""
    return importlib.import_module("_common")


def test_select_tasks_spreads_over_sources(common: Any) -> None:
    meta = [{"name": f"{s}/{k}/{i}", "kind": k, "source_dataset": s}
            for s in ("x", "y") for k in ("subset", "relabel") for i in range(6)]
    picked = common.select_tasks(meta, 3, 1, seed=0)
    assert len(picked) == 8 and picked == common.select_tasks(meta, 3, 1, seed=0)
    assert sum(p.startswith("x/subset") for p in picked) == 3
    assert sum(p.startswith("y/relabel") for p in picked) == 1


def test_draw_tasks_is_the_union_of_the_draws_grouped_by_source(ws: Any, common: Any) -> None:
    meta = [{"name": f"{s}/{k}/{i}", "kind": k, "source_dataset": s}
            for s in ("x", "y") for k in ("subset", "relabel") for i in range(6)]
    a, b = (common.select_tasks(meta, 2, 1, seed=s) for s in (0, 1))
    both = ws.draw_tasks(meta, 2, 1, [0, 1])
    assert set(both) == set(a) | set(b) and len(both) == len(set(both))
    first_y = next(i for i, t in enumerate(both) if t.startswith("y/"))
    assert all(t.startswith("x/") for t in both[:first_y])
    assert all(t.startswith("y/") for t in both[first_y:])
    assert ws.draw_tasks(meta, 2, 1, [0]) == a


def test_c_from_history(ws: Any) -> None:
    n_c = len(ws.C_GRID)
    j1 = ws.snap_index(1.0)
    # extractor "a" is best at the smallest C on every task; C = 1 is 2 points short
    def tab() -> np.ndarray:
        t = np.full((len(NAMES), n_c), 0.5)
        t[0] = 0.9
        t[0, 0] = 0.92
        return t

    tables = {f"s{k}/t": tab() for k in range(3)}
    info = {t: {"source_dataset": t.split("/")[0], "selector_top3": ["a", "b", "c"],
                "n_train": 100} for t in tables}
    got = ws.c_from_history(tables, info, NAMES, j1)
    assert got == {"C = 1 (as run)": 0, "median best C": 3, "lowest mean loss": 3,
                   "C x n_train": 3, "portfolio (ties: C = 1, rank, smaller C)": 3,
                   "portfolio (ties: C = 1, rank, larger C)": 3,
                   "portfolio (ties: top-1 at C = 1, rank, smaller C)": 3}
    # with no past study of another source, every rule falls back to C = 1
    one = {"s0/t": tables["s0/t"]}
    assert set(ws.c_from_history(one, info, NAMES, j1).values()) == {0}


def test_c_from_history_scales_c_by_training_set_size(ws: Any) -> None:
    # the best C of extractor "a" is 1 / n_train on every task (C * n constant):
    # the median best C of the others misses it; C x n_train finds it on every task
    n_c = len(ws.C_GRID)
    sizes = {"s0/t": 1000, "s1/t": 100, "s2/t": 10, "s3/t": 10}
    tables = {}
    for t, n in sizes.items():
        tab = np.full((len(NAMES), n_c), 0.5)
        tab[0, ws.snap_index(1.0 / n)] = 0.92
        tables[t] = tab
    info = {t: {"source_dataset": t.split("/")[0], "selector_top3": ["a", "b", "c"],
                "n_train": n} for t, n in sizes.items()}
    got = ws.c_from_history(tables, info, NAMES, ws.snap_index(1.0))
    assert got["C x n_train"] == 4
    assert got["median best C"] == 0
    assert got["C = 1 (as run)"] == 0


def test_past_knowledge_records_each_extractors_best_c(ws: Any) -> None:
    # two known tasks of different source datasets; the second one's source is held out
    import optuna

    from t2v_automl.integration.optuna import warm_start
    from t2v_automl.knowledge import KnowledgeBase

    kb = KnowledgeBase.default()
    by_source: dict[str, str] = {}
    for name, prov in zip(kb.task_names, kb.provenance, strict=True):
        by_source.setdefault(prov["source_dataset"], name)
    (src_a, task_a), (src_b, task_b) = list(by_source.items())[:2]
    names = list(kb.extractor_names)
    n_c = len(ws.C_GRID)
    tab = np.full((len(names), n_c), 0.4)
    for e in range(len(names)):  # extractor e is best at grid index e % n_c
        tab[e, e % n_c] = 0.6 + 0.01 * e
    tables = {task_a: tab, task_b: np.full((len(names), n_c), 0.5)}
    info = {task_a: {"source_dataset": src_a}, task_b: {"source_dataset": src_b}}
    past = ws.past_knowledge(kb, tables, info, names, src_b)
    assert past.task_names == [task_a]
    np.testing.assert_allclose(past.scores[0], tab.max(axis=1))
    # warm_start reads each enqueued extractor's best C from it
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    top = ws.OracleSelector(names, tab.max(axis=1)).fit()
    enq = warm_start(study, kb.embedding(task_b), top, top_k=2, knowledge=past,
                     choices=names)
    best = [names[i] for i in np.argsort(-tab.max(axis=1), kind="stable")[:2]]
    assert [p["extractor"] for p in enq] == best
    for p in enq:
        e = names.index(p["extractor"])
        assert p["C"] == pytest.approx(ws.C_GRID[e % n_c])


def test_plot_draws_the_readme_methods_only(ws: Any, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    gaps = {m: np.linspace(3.0, 0.0, 8)[None, :].repeat(2, axis=0)
            for m in ("tpe", "warm_start+tpe(3 start-up)", "t2v_sampler")}
    fig = ws.plot(gaps, tmp_path / "p.png", n_tasks=1, n_seeds=2)
    assert (tmp_path / "p.png").stat().st_size > 0
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["tpe (n=2)", "warm_start+tpe(3 start-up) (n=2)"]
    # none of them: every method is drawn
    fig = ws.plot({"t2v_sampler": gaps["t2v_sampler"]}, tmp_path / "q.png", 1, 2)
    assert len(fig.axes[0].get_legend().get_texts()) == 1
