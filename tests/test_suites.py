"""Tests of the offline task suites (t2v_automl.suites)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from t2v_automl import suites
from t2v_automl.datasets import CLIPART_ROOT, FASHION_MNIST_ROOT, DatasetNotFoundError
from t2v_automl.exceptions import InvalidParameterError, InvalidTaskError, UnknownNameError
from t2v_automl.suites import SuiteTask, iter_suite, list_suites, make_suite
from t2v_automl.tasks import Task

PROVENANCE_KEYS = {"kind", "pool", "source_dataset", "label_function", "classes",
                   "n_train_per_class", "n_test_per_class", "n_train_per_source_class",
                   "source_classes", "label_map", "n_train", "n_test", "suite", "seed"}


def _check_task(st: SuiteTask) -> None:
    assert isinstance(st.train, Task) and isinstance(st.test, Task)
    assert PROVENANCE_KEYS <= set(st.provenance)
    json.dumps(st.provenance)  # JSON-serialisable, for knowledge-base metadata
    assert st.provenance["kind"] in ("subset", "relabel") and st.kind == st.provenance["kind"]
    assert np.array_equal(st.train.classes, st.test.classes)
    assert list(st.train.classes) == st.provenance["classes"]
    for t in (st.train, st.test):
        assert t.images.dtype == np.float32 and t.images.ndim == 4 and t.images.shape[1] == 3
        assert 0.0 <= t.images.min() and t.images.max() <= 1.0
        assert t.labels.dtype == np.int64
    assert st.provenance["n_train"] == st.train.n_images
    assert st.provenance["n_test"] == st.test.n_images
    counts = np.bincount(st.train.labels, minlength=st.n_classes).tolist()
    assert counts == [st.provenance["n_train_per_class"][c] for c in st.provenance["classes"]]
    assert st.name.startswith(f"{st.provenance['source_dataset']}/")


def _disjoint(specs: list[suites._Spec]) -> None:
    """No image of any task's training set is in any task's test set (per source)."""
    train: dict[str, set[int]] = defaultdict(set)
    test: dict[str, set[int]] = defaultdict(set)
    for s in specs:
        assert len(set(s.train_idx.tolist())) == s.train_idx.shape[0]  # no repeats
        train[s.source].update(s.train_idx.tolist())
        test[s.source].update(s.test_idx.tolist())
    for source in train:
        assert not train[source] & test[source], source


# ---------------------------------------------------------------------- mini (fast)
@pytest.fixture(scope="module")
def mini() -> list[SuiteTask]:
    return make_suite("mini", seed=0)


def test_list_suites() -> None:
    assert {"default", "mini"} <= set(list_suites())
    assert all(isinstance(v, str) and v for v in list_suites().values())


def test_mini_suite(mini: list[SuiteTask]) -> None:
    assert 8 <= len(mini) <= 12
    assert len({st.name for st in mini}) == len(mini)
    assert {st.kind for st in mini} == {"subset", "relabel"}
    for st in mini:
        _check_task(st)
        assert st.train.n_images <= 100 and st.test.n_images <= 200
    assert mini[0].name.startswith("digits/subset/")
    assert "-vs-" in mini[0].name


def test_mini_disjoint_train_test() -> None:
    specs, _ = suites._specs("mini", 0, None, False, None, False)
    _disjoint(specs)


def test_mini_relabel_tasks_share_images(mini: list[SuiteTask]) -> None:
    groups: dict[str, list[SuiteTask]] = defaultdict(list)
    for st in mini:
        if st.kind == "relabel":
            groups[st.provenance["pool"]].append(st)
    assert groups and all(len(g) >= 3 for g in groups.values())
    for g in groups.values():
        ref = g[0]
        for st in g[1:]:
            assert np.array_equal(st.train.images, ref.train.images)
            assert np.array_equal(st.test.images, ref.test.images)
            assert st.provenance["source_classes"] == ref.provenance["source_classes"]
        assert len({st.provenance["label_function"] for st in g}) == len(g)
        assert len({tuple(st.train.labels.tolist()) for st in g}) == len(g)


def test_mini_parity_labels(mini: list[SuiteTask]) -> None:
    digit = next(st for st in mini if st.name == "digits/relabel-a/digit")
    parity = next(st for st in mini if st.name == "digits/relabel-a/parity")
    digits = digit.train.classes[digit.train.labels].astype(int)
    expected = np.where(digits % 2 == 0, "even", "odd")
    assert np.array_equal(parity.train.classes[parity.train.labels], expected)


def test_determinism(mini: list[SuiteTask]) -> None:
    again = make_suite("mini", seed=0)
    assert [st.name for st in again] == [st.name for st in mini]
    for a, b in zip(again, mini, strict=True):
        assert a.train.fingerprint == b.train.fingerprint
        assert a.test.fingerprint == b.test.fingerprint
        assert a.provenance == b.provenance
    other = make_suite("mini", seed=1)
    assert ([st.train.fingerprint for st in other] != [st.train.fingerprint for st in mini])


def test_iter_suite_matches_make_suite(mini: list[SuiteTask]) -> None:
    it = iter_suite("mini", seed=0)
    first = next(it)
    assert first.name == mini[0].name
    assert first.train.fingerprint == mini[0].train.fingerprint
    assert len(list(it)) == len(mini) - 1


def test_suite_task_needs_identical_classes() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (6, 8, 8), dtype=np.uint8)
    a = Task.from_arrays(x, ["a", "a", "b", "b", "c", "c"])
    b = Task.from_arrays(x, ["a", "a", "b", "b", "b", "b"])
    with pytest.raises(InvalidTaskError, match="identical classes"):
        SuiteTask("t", a, b, {})
    assert SuiteTask("t", a, a, {"kind": "subset"}).kind == "subset"


def test_bad_arguments() -> None:
    with pytest.raises(UnknownNameError, match="unknown suite 'huge'"):
        make_suite("huge")
    with pytest.raises(UnknownNameError, match="no pool"):
        make_suite("mini", pools=["fashion_mnist"])
    with pytest.raises(ValueError, match="seed"):
        make_suite("mini", seed=-1)


def test_missing_source(tmp_path: Path) -> None:
    options = {"fashion_mnist": {"root": tmp_path}}
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist"):
        make_suite(pools=["fashion_mnist", "digits"], pool_options=options)
    tasks = make_suite(pools=["fashion_mnist", "digits"], pool_options=options,
                       skip_missing=True)
    assert tasks and {st.provenance["source_dataset"] for st in tasks} == {"digits"}


# ---------------------------------------------------------------------- default (real data)
needs_data = pytest.mark.skipif(
    not (FASHION_MNIST_ROOT.is_dir() and CLIPART_ROOT.is_dir()),
    reason="the Debian data packages are not installed",
)


@pytest.fixture(scope="module")
def default_specs() -> tuple[list[suites._Spec], dict]:
    return suites._specs("default", 0, None, False, None, False)


@pytest.fixture(scope="module")
def default_suite() -> list[SuiteTask]:
    return make_suite("default", seed=0)


@pytest.mark.slow
@needs_data
def test_default_suite_composition(default_suite: list[SuiteTask]) -> None:
    assert len(default_suite) >= 150
    assert len({st.name for st in default_suite}) == len(default_suite)
    by = Counter((st.provenance["source_dataset"], st.kind) for st in default_suite)
    for source in ("fashion_mnist", "mnist", "animal_mnist", "digits", "clipart"):
        assert by[(source, "subset")] >= 10, source
        assert by[(source, "relabel")] >= 4, source
    ks = Counter(st.n_classes for st in default_suite if st.kind == "subset")
    assert ks[2] >= 40 and ks[3] + ks[4] + ks[5] >= 40 and max(ks) <= 5
    for st in default_suite:
        _check_task(st)
        assert st.train.n_images <= 400 and st.test.n_images <= 1000
        if st.kind == "subset":
            per_class = set(st.provenance["n_train_per_class"].values())
            assert len(per_class) == 1  # balanced
            if st.provenance["source_dataset"] != "clipart":
                assert 15 <= per_class.pop() <= 60
                assert min(st.provenance["n_test_per_class"].values()) >= 100
            else:
                assert per_class.pop() >= 10
                assert min(st.provenance["n_test_per_class"].values()) >= 10


@pytest.mark.slow
@needs_data
def test_default_relabel_pools(default_suite: list[SuiteTask]) -> None:
    groups: dict[str, list[SuiteTask]] = defaultdict(list)
    for st in default_suite:
        if st.kind == "relabel":
            groups[st.provenance["pool"]].append(st)
    sources = {g[0].provenance["source_dataset"] for g in groups.values()}
    assert sources == {"fashion_mnist", "mnist", "animal_mnist", "digits", "clipart"}
    for g in groups.values():
        assert len(g) >= 4
        for st in g[1:]:
            assert st.train.images is g[0].train.images or np.array_equal(
                st.train.images, g[0].train.images)
            assert np.array_equal(st.test.images, g[0].test.images)
        assert st.test.n_images >= 400
    functions = {st.provenance["label_function"] for st in default_suite}
    assert {"tops-bottoms-footwear", "parity", "greater-than-4", "mod-3", "category",
            "super-category", "domestic-vs-wild"} <= functions
    fashion = next(st for st in default_suite
                   if st.name == "fashion_mnist/relabel-a/tops-bottoms-footwear")
    assert list(fashion.train.classes) == ["bag", "bottom", "footwear", "top"]
    assert fashion.provenance["label_map"]["ankle_boot"] == "footwear"


@pytest.mark.slow
@needs_data
def test_default_disjoint_and_deterministic(default_specs: tuple[list, dict]) -> None:
    specs, _ = default_specs
    _disjoint(specs)
    again, _ = suites._specs("default", 0, None, False, None, False)
    assert [s.name for s in again] == [s.name for s in specs]
    for a, b in zip(again, specs, strict=True):
        assert np.array_equal(a.train_idx, b.train_idx)
        assert np.array_equal(a.test_idx, b.test_idx)
    other, _ = suites._specs("default", 1, None, False, None, False)
    assert [s.name for s in other] != [s.name for s in specs]


@pytest.mark.slow
@needs_data
def test_pool_restriction_keeps_tasks(default_specs: tuple[list, dict]) -> None:
    specs, _ = default_specs
    only, _ = suites._specs("default", 0, ["mnist"], False, None, False)
    full = [s for s in specs if s.source == "mnist"]
    assert [s.name for s in only] == [s.name for s in full]
    assert all(np.array_equal(a.train_idx, b.train_idx) for a, b in zip(only, full, strict=True))


def test_train_per_class_redraws_only_the_training_split():
    full = {t.name: t for t in make_suite("mini", 0)}
    small = {t.name: t for t in make_suite("mini", 0, train_per_class=3)}
    larger = {t.name: t for t in make_suite("mini", 0, train_per_class=6)}
    for name, t in small.items():
        assert t.test.fingerprint == full[name].test.fingerprint  # test split unchanged
        assert np.array_equal(t.train.classes, full[name].train.classes)
        assert t.provenance["label_function"] == full[name].provenance["label_function"]
    sub = small["digits/subset/0-vs-6"]
    assert sub.provenance["n_train_per_class"] == {"0": 3, "6": 3}
    # nested draws: the 3 images per class are among the 6
    a = {im.tobytes() for im in sub.train.images}
    b = {im.tobytes() for im in larger["digits/subset/0-vs-6"].train.images}
    assert a <= b
    # relabellings: about n per task class, the same number from each source class
    parity = small["digits/relabel-a/parity"]
    assert parity.train.n_images == 10 and parity.provenance["n_train_per_source_class"] == 1
    assert small["digits/relabel-a/digit"].train.n_images == 30
    only = make_suite("mini", 0, tasks=["digits/relabel-a/parity"], train_per_class=3)
    assert [t.name for t in only] == ["digits/relabel-a/parity"]
    assert only[0].train.fingerprint == parity.train.fingerprint
    with pytest.raises(UnknownNameError, match="no task"):
        make_suite("mini", 0, tasks=["nope"])
    with pytest.raises(InvalidParameterError):
        make_suite("mini", 0, train_per_class=0)


# ---------------------------------------------------------------------- v2 (new domains)
def _new_domains_installed() -> bool:
    from t2v_automl.datasets import EMOJI_FONT, EMOJI_TEST, OXYGEN_ROOT, WESNOTH_ROOT

    return EMOJI_FONT.is_file() and EMOJI_TEST.is_file() and WESNOTH_ROOT.is_dir() \
        and OXYGEN_ROOT.is_dir()


needs_new_domains = pytest.mark.skipif(not _new_domains_installed(),
                                       reason="the new domains' Debian packages are missing")


@pytest.fixture(scope="module")
def new_domains() -> list[SuiteTask]:
    return make_suite("v2", pools=list(suites.NEW_DOMAIN_POOLS))


def test_v2_keeps_the_default_tasks_image_for_image() -> None:
    a = make_suite("default", pools=["digits"])
    b = make_suite("v2", pools=["digits"])
    assert [t.name for t in a] == [t.name for t in b]
    assert [t.train.fingerprint for t in a] == [t.train.fingerprint for t in b]
    assert [t.test.fingerprint for t in a] == [t.test.fingerprint for t in b]
    with pytest.raises(UnknownNameError, match="has no pool"):
        make_suite("default", pools=["emoji"])


@needs_new_domains
def test_v2_new_domain_tasks(new_domains: list[SuiteTask]) -> None:
    assert len(new_domains) == 59
    for st in new_domains:
        _check_task(st)
        assert st.provenance["suite"] == "v2"
    kinds = Counter((st.provenance["source_dataset"], st.kind) for st in new_domains)
    assert kinds == {("emoji", "subset"): 14, ("wesnoth", "subset"): 14,
                     ("oxygen", "subset"): 11, ("emoji", "relabel"): 8,
                     ("wesnoth", "relabel"): 6, ("oxygen", "relabel"): 6}
    pools: dict[str, list[SuiteTask]] = defaultdict(list)
    for st in new_domains:
        if st.kind == "relabel":
            pools[st.provenance["pool"]].append(st)
    # the label functions of a pool share images; the two pools of a domain do not
    for tasks in pools.values():
        assert all(np.array_equal(t.train.images, tasks[0].train.images) for t in tasks)
    firsts = [ts[0].train.images.tobytes() for ts in pools.values()]
    assert len(set(firsts)) == len(pools) == 6
    # Wesnoth: a complete 3 x 3 grid, labelled by race and by pose
    [race] = [t for t in pools["wesnoth/relabel-a"] if t.provenance["label_function"]
              == "super-category"]
    [pose] = [t for t in pools["wesnoth/relabel-a"] if t.provenance["label_function"] == "pose"]
    assert race.n_classes == pose.n_classes == 3
    cells = {(r, p) for r, p in zip(race.train.labels, pose.train.labels, strict=True)}
    assert len(cells) == 9
    # no image is in a task's training and test split
    for st in new_domains:
        tr = {row.tobytes() for row in st.train.images}
        assert not tr & {row.tobytes() for row in st.test.images}


def test_pool_label_function_and_its_errors() -> None:
    from t2v_automl.datasets import load_pool

    digits = load_pool("digits")
    assert suites.pool_label_function(digits, "parity")["3"] == "odd"
    assert suites.pool_label_function(digits, "category")["3"] == "3"
    with pytest.raises(UnknownNameError, match="no label function 'race'.*parity"):
        suites.pool_label_function(digits, "race")
    with pytest.raises(UnknownNameError, match="super-category"):
        suites.pool_label_function(digits, "super-category")


def test_source_task_never_holds_a_suite_test_image() -> None:
    src = suites.source_task("digits", "digit", max_per_class=60)
    assert src.provenance["kind"] == "source" and src.n_classes == 10
    seen = {row.tobytes() for row in src.images}
    for st in make_suite("default", pools=["digits"]):
        assert not seen & {row.tobytes() for row in st.test.images}
    with pytest.raises(InvalidParameterError, match="max_per_class"):
        suites.source_task("digits", "digit", max_per_class=0)


@needs_new_domains
def test_source_tasks_of_the_new_domains() -> None:
    pose = suites.source_task("wesnoth", "pose")
    assert set(pose.classes) >= {"attack", "defend", "die", "idle"}
    group = suites.source_task("emoji", "super-category")
    assert "Animals & Nature" in set(group.classes)
    kind = suites.source_task("oxygen", "kind")
    assert set(kind.classes) == {"content", "program", "interface"}
