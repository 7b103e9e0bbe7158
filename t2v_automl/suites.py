"""Offline task suites: many small classification tasks cut from installed image pools.

A suite is a list of :class:`SuiteTask`, each a training :class:`~t2v_automl.tasks.Task`
and a disjoint, larger test ``Task`` with the same classes. Two kinds of task:

``"subset"``
    A pair or a small (3-5-way) subset of one pool's classes, labelled by the pool's own
    classes (for clip art: k categories, within or across super-categories).
``"relabel"``
    One fixed set of images (an *image pool*: the same training images and the same test
    images) labelled by several *label functions*: Fashion-MNIST tops / bottoms /
    footwear, digit parity, digit > 4, digit mod 3, clip-art category vs super-category,
    Animal-MNIST domestic vs wild... Tasks that share ``provenance["pool"]`` have
    identical images and differ only in what the labels mean.

Every task's training images come from a per-class *training reserve* and its test images
from a disjoint *test reserve* (Fashion-MNIST: its official train and test splits; other
pools: a third of each class, at least 15 images where the class has 30, at most 60), so
no image is in the training set and the test set of one task. Training sets are balanced
(the same number of images per class, or per source class for relabel tasks); test sets
take up to the cap of each class, so a small clip-art category gives fewer test images
than its neighbours (``provenance["n_test_per_class"]`` says how many). Everything is a
deterministic function of the suite name and ``seed``.

Suites
------
``"default"``
    189 tasks over Fashion-MNIST, the MNIST subset, Animal-MNIST, scikit-learn's digits
    and clip art. 135 subset tasks: 15-60 training images per class (fewer where a
    clip-art category is small), up to 250 test images per class and 1,000 per task. 54
    relabel tasks: two image pools per source, 15 or 40 training images per source class
    (clip art: 15 or 20 per category, 4 super-categories x 2 categories), 100 test images
    per source class.
``"v2"``
    The 189 tasks of ``"default"`` (the same tasks, image for image) and 59 from three
    more domains: the Noto colour emoji (classes: Unicode subgroups, super-classes: groups),
    Battle for Wesnoth unit sprites (classes: race/pose, super-classes: races) and the
    Oxygen icons (classes: categories). 39 subset tasks (pairs and 3-5-way subsets of
    classes with at least 30 images) and 20 relabel tasks: per domain two image pools,
    emoji as clip art (4 groups x 2 subgroups: ``category``, ``super-category``,
    ``cross-grouping``, ``super-pairs``), Wesnoth sprites as a grid of 3 races x 3 poses
    labelled by ``category`` (race/pose), ``super-category`` (race) and ``pose``, Oxygen's
    7 categories of at least 30 icons by ``category``, ``kind`` and ``arbitrary-parity``
    (10 / 6 training images per class for emoji's pools a / b, 15 / 30 for Wesnoth's,
    15 / 8 for Oxygen's: the pools of a domain never hold the same images).
``"mini"``
    10 small tasks from scikit-learn's digits only (always installed): 6 subset tasks
    and 4 label functions over one image pool; for tests and demos.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from t2v_automl._logging import logger, progress
from t2v_automl._validation import check_int
from t2v_automl.datasets import (
    ANIMAL_MNIST_CLASSES,
    FASHION_MNIST_CLASSES,
    DatasetNotFoundError,
    InvalidParameterError,
    Pool,
    load_pool,
)
from t2v_automl.exceptions import InvalidTaskError, UnknownNameError
from t2v_automl.tasks import Task

__all__ = ["SuiteTask", "make_suite", "iter_suite", "list_suites", "LABEL_FUNCTIONS",
           "MAX_TRAIN_PER_CLASS", "DEFAULT_POOLS", "NEW_DOMAIN_POOLS", "pool_label_function",
           "source_task"]

#: At most this many images of each class are reserved for training: a class of ``n``
#: images (in a pool without an official test split) reserves
#: ``min(60, max(n // 3, min(15, n // 2)))`` for training and the rest for testing.
MAX_TRAIN_PER_CLASS = 60

_SUITES = {
    "default": "189 tasks: class subsets and relabellings of Fashion-MNIST, the MNIST subset, "
               "Animal-MNIST, sklearn digits and clip art",
    "v2": "248 tasks: the default suite's 189 and 59 from three more domains (Noto colour "
          "emoji, Wesnoth unit sprites, Oxygen icons)",
    "mini": "10 small tasks from sklearn digits (subsets and relabellings); for tests and demos",
}

#: The image pools of the ``"default"`` suite (``"v2"`` adds :data:`NEW_DOMAIN_POOLS`).
DEFAULT_POOLS = ("fashion_mnist", "mnist", "animal_mnist", "digits", "clipart")
#: The three domains that suite ``"v2"`` adds.
NEW_DOMAIN_POOLS = ("emoji", "wesnoth", "oxygen")


def _grouping(groups: Mapping[str, Sequence[str]]) -> dict[str, str]:
    return {c: g for g, members in groups.items() for c in members}


_DIGITS = tuple(str(d) for d in range(10))
#: Oxygen's categories with at least 30 icons at 64 px (its relabel pools use these).
_OXYGEN_CLASSES = ("actions", "apps", "categories", "devices", "mimetypes", "places", "status")
_DIGIT_FUNCTIONS: dict[str, dict[str, str]] = {
    "digit": {d: d for d in _DIGITS},
    "parity": {d: ("even" if int(d) % 2 == 0 else "odd") for d in _DIGITS},
    "greater-than-4": {d: ("high" if int(d) > 4 else "low") for d in _DIGITS},
    "mod-3": {d: f"mod{int(d) % 3}" for d in _DIGITS},
    "prime": {d: ("prime" if d in "2357" else "not_prime") for d in _DIGITS},
    "closed-loop": {d: ("loop" if d in "0689" else "no_loop") for d in _DIGITS},
}

#: Label functions of the relabel tasks: pool -> function name -> {source class: label}.
#: Clip art's functions depend on the categories drawn and are built in the code.
LABEL_FUNCTIONS: dict[str, dict[str, dict[str, str]]] = {
    "fashion_mnist": {
        "class": {c: c for c in FASHION_MNIST_CLASSES},
        "tops-bottoms-footwear": _grouping({
            "top": ("tshirt", "pullover", "coat", "shirt", "dress"), "bottom": ("trouser",),
            "footwear": ("sandal", "sneaker", "ankle_boot"), "bag": ("bag",)}),
        "clothing-vs-accessory": _grouping({
            "clothing": ("tshirt", "trouser", "pullover", "dress", "coat", "shirt"),
            "accessory": ("sandal", "sneaker", "bag", "ankle_boot")}),
        "long-sleeved": _grouping({
            "long_sleeves": ("pullover", "coat", "shirt"),
            "other": ("tshirt", "trouser", "dress", "sandal", "sneaker", "bag", "ankle_boot")}),
        "footwear-vs-rest": _grouping({
            "footwear": ("sandal", "sneaker", "ankle_boot"),
            "other": ("tshirt", "trouser", "pullover", "dress", "coat", "shirt", "bag")}),
        "arbitrary-parity": {c: ("group_a" if i % 2 == 0 else "group_b")
                             for i, c in enumerate(FASHION_MNIST_CLASSES)},
    },
    "mnist": _DIGIT_FUNCTIONS,
    "digits": _DIGIT_FUNCTIONS,
    "animal_mnist": {
        "animal": {c: c for c in ANIMAL_MNIST_CLASSES},
        "domestic-vs-wild": _grouping({
            "domestic": ("cat", "cow", "dog", "horse", "sheep"),
            "wild": ("bear", "bird", "elephant", "giraffe", "zebra")}),
        "large-vs-small": _grouping({
            "large": ("bear", "cow", "elephant", "giraffe", "horse", "zebra"),
            "small": ("bird", "cat", "dog", "sheep")}),
        "order": _grouping({
            "carnivora": ("bear", "cat", "dog"), "artiodactyla": ("cow", "giraffe", "sheep"),
            "perissodactyla": ("horse", "zebra"), "proboscidea": ("elephant",),
            "aves": ("bird",)}),
        "arbitrary-parity": {c: ("group_a" if i % 2 == 0 else "group_b")
                             for i, c in enumerate(ANIMAL_MNIST_CLASSES)},
    },
    "oxygen": {
        "category": {c: c for c in _OXYGEN_CLASSES},
        "kind": _grouping({"content": ("mimetypes", "places", "categories"),
                           "program": ("apps",),
                           "interface": ("actions", "status", "devices")}),
        "arbitrary-parity": {c: ("group_a" if i % 2 == 0 else "group_b")
                             for i, c in enumerate(_OXYGEN_CLASSES)},
    },
}

#: Hand-picked clip-art subset tasks (used where all their categories are present).
_CLIPART_CURATED: dict[str, tuple[str, ...]] = {
    "flags-by-continent": ("signs_and_symbols/flags/africa", "signs_and_symbols/flags/america",
                           "signs_and_symbols/flags/asia", "signs_and_symbols/flags/europe"),
    "fruit-vs-desserts": ("food/fruit", "food/desserts"),
    "mammals-birds-bugs-fish": ("animals/mammals", "animals/birds", "animals/bugs",
                                "animals/fish"),
    "card-styles": ("recreation/games/cards/white", "recreation/games/cards/simple",
                    "recreation/games/cards/ornamental", "recreation/games/cards/bordered"),
    "icon-themes": ("computer/icons/flat-theme/action", "computer/icons/lemon-theme/actions",
                    "computer/icons/etiquette-theme"),
    "vehicles-vs-boats": ("transportation/vehicles", "transportation/boating"),
}

_TRAIN_SIZES = (15, 20, 30, 40, 60)


@dataclass(eq=False)
class SuiteTask:
    """One task of a suite: a training task and a disjoint test task with the same classes.

    Attributes
    ----------
    name : str
        Unique within its suite and readable, e.g. ``"fashion_mnist/subset/shirt-vs-coat"``
        or ``"mnist/relabel-a/parity"``.
    train : Task
    test : Task
        Disjoint from ``train``; ``test.classes`` equals ``train.classes``.
    provenance : dict
        JSON-serialisable. Always has ``kind`` (``"subset"`` or ``"relabel"``), ``pool``
        (the image pool: tasks with the same ``pool`` have identical training and test
        images), ``source_dataset``, ``label_function`` (``"identity"`` for subsets),
        ``classes`` (the task's classes in label order), ``n_train_per_class`` and
        ``n_test_per_class`` (class -> number of images), ``n_train_per_source_class``
        (images drawn from each class of the source), ``source_classes``, ``label_map``
        (source class -> task class), ``n_train``, ``n_test``, ``suite`` and ``seed``.
    """

    name: str
    train: Task
    test: Task
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tr, te = np.asarray(self.train.classes), np.asarray(self.test.classes)
        if tr.shape != te.shape or not np.array_equal(tr, te):
            raise InvalidTaskError(
                f"suite task {self.name!r}: train and test must have identical classes; got "
                f"train classes {tr.tolist()} and test classes {te.tolist()}."
            )

    @property
    def kind(self) -> str:
        """``"subset"`` or ``"relabel"``."""
        return str(self.provenance.get("kind", ""))

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return self.train.n_classes

    def __repr__(self) -> str:
        return (f"SuiteTask(name={self.name!r}, kind={self.kind!r}, n_classes={self.n_classes}, "
                f"n_train={self.train.n_images}, n_test={self.test.n_images})")


@dataclass
class _Spec:
    """What a suite task is made of, before any pixel is converted."""

    name: str
    source: str
    image_pool: str
    train_idx: np.ndarray
    test_idx: np.ndarray
    label_map: dict[str, str]
    kind: str
    label_function: str
    n_per_source_class: int


def _rng(seed: int, *keys: object) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the (string) keys."""
    key = zlib.crc32("\x1f".join(str(k) for k in keys).encode())
    return np.random.default_rng([int(seed), key])


def _reserves(pool: Pool, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per class: shuffled indices reserved for training and, disjoint, for testing."""
    train, test = [], []
    for c, cname in enumerate(pool.class_names):
        idx = np.flatnonzero(pool.labels == c)
        rng = _rng(seed, pool.name, "reserve", cname)
        if pool.official_test is not None:
            tr = rng.permutation(idx[~pool.official_test[idx]])
            te = rng.permutation(idx[pool.official_test[idx]])
        else:
            perm = rng.permutation(idx)
            k = _train_reserve_size(perm.shape[0])
            tr, te = perm[:k], perm[k:]
        train.append(tr)
        test.append(te)
    return train, test


def _train_reserve_size(n: int) -> int:
    """How many of a class's ``n`` images are reserved for training (the rest test)."""
    return min(MAX_TRAIN_PER_CLASS, max(n // 3, min(15, n // 2)))


def _draw(rng: np.random.Generator, reserves: list[np.ndarray], classes: Sequence[int],
          n_per_class: int) -> np.ndarray:
    """``n_per_class`` images of each class (fewer where a reserve is smaller), shuffled."""
    parts = [rng.permutation(reserves[c])[:n_per_class] for c in classes]
    return rng.permutation(np.concatenate(parts))


class _Builder:
    """Turns suite plans into specs for one seed, pool by pool."""

    def __init__(self, seed: int, pools: dict[str, Pool]) -> None:
        self.seed = seed
        self.pools = pools
        self.reserves = {n: _reserves(p, seed) for n, p in pools.items()}
        self.specs: list[_Spec] = []

    # -------------------------------------------------------------- subsets
    def subset(self, source: str, classes: Sequence[int], n_train: int, max_test: int,
               max_test_per_class: int, label: str | None = None) -> None:
        pool = self.pools[source]
        tr_res, te_res = self.reserves[source]
        n_train = min(n_train, *(tr_res[c].shape[0] for c in classes))
        n_test = min(max_test_per_class, max_test // len(classes))
        names = [pool.class_names[c] for c in classes]
        label = label or "-vs-".join(_short_names(pool)[c] for c in classes)
        name = f"{source}/subset/{label}"
        rng = _rng(self.seed, name)
        self.specs.append(_Spec(
            name, source, name, _draw(rng, tr_res, classes, n_train),
            _draw(rng, te_res, classes, n_test), {c: c for c in names}, "subset", "identity",
            n_train,
        ))

    def random_subsets(self, source: str, n_pairs: int, n_small: int, max_test: int,
                       max_test_per_class: int, sizes: Sequence[int] = _TRAIN_SIZES,
                       eligible: Sequence[int] | None = None,
                       exclude: set[tuple[int, ...]] | None = None) -> None:
        pool = self.pools[source]
        cand = list(range(pool.n_classes)) if eligible is None else list(eligible)
        rng = _rng(self.seed, source, "subsets")
        seen: set[tuple[int, ...]] = set(exclude or ())
        pairs = [p for p in combinations(cand, 2) if p not in seen]
        chosen: list[tuple[int, ...]] = [
            pairs[i] for i in np.sort(rng.choice(len(pairs), min(n_pairs, len(pairs)),
                                                 replace=False))]
        seen.update(chosen)
        tries = 0
        while len(chosen) < n_pairs + n_small and tries < 1000:
            tries += 1
            k = 3 + (len(chosen) - n_pairs) % 3
            if k > len(cand):
                break
            combo = tuple(sorted(int(c) for c in rng.choice(cand, k, replace=False)))
            if combo not in seen:
                seen.add(combo)
                chosen.append(combo)
        for combo in chosen:
            self.subset(source, combo, int(rng.choice(sizes)), max_test, max_test_per_class)

    # -------------------------------------------------------------- relabellings
    def relabel(self, source: str, tag: str, classes: Sequence[int], n_train: int,
                n_test_per_class: int, functions: Mapping[str, Mapping[str, str]]) -> None:
        pool = self.pools[source]
        tr_res, te_res = self.reserves[source]
        n_train = min(n_train, *(tr_res[c].shape[0] for c in classes))
        image_pool = f"{source}/relabel-{tag}"
        rng = _rng(self.seed, image_pool)
        tr_idx = _draw(rng, tr_res, classes, n_train)
        te_idx = _draw(rng, te_res, classes, n_test_per_class)
        names = [pool.class_names[c] for c in classes]
        for fname, mapping in functions.items():
            missing = [c for c in names if c not in mapping]
            if missing:  # a label function must label every image of the pool
                raise InvalidTaskError(
                    f"label function {fname!r} of {source} gives no label to class(es) "
                    f"{missing}; every class of the image pool needs one."
                )
            self.specs.append(_Spec(
                f"{image_pool}/{fname}", source, image_pool, tr_idx, te_idx,
                {c: mapping[c] for c in names}, "relabel", fname, n_train,
            ))

    def clipart_relabel(self, tag: str, n_train: int, n_test_per_class: int,
                        n_super: int = 4, min_images: int = 40) -> None:
        self.super_relabel("clipart", tag, n_train, n_test_per_class, n_super, min_images)

    def super_relabel(self, source: str, tag: str, n_train: int, n_test_per_class: int,
                      n_super: int = 4, min_images: int = 40) -> None:
        """Two classes from each of ``n_super`` super-classes, four label functions."""
        pool = self.pools[source]
        assert pool.super_labels is not None and pool.super_class_names is not None
        counts = np.bincount(pool.labels, minlength=pool.n_classes)
        by_super: dict[int, list[int]] = {}
        for c in range(pool.n_classes):
            if counts[c] >= min_images:
                s = int(pool.super_labels[np.flatnonzero(pool.labels == c)[0]])
                by_super.setdefault(s, []).append(c)
        supers = sorted(s for s, cs in by_super.items() if len(cs) >= 2)
        if len(supers) < 2:
            logger.warning("%s has fewer than 2 super-categories with 2 categories of "
                           ">= %d images; no relabel pool %r", source, min_images, tag)
            return
        rng = _rng(self.seed, source, "relabel", tag)
        chosen_supers = sorted(int(s) for s in rng.choice(supers, min(n_super, len(supers)),
                                                          replace=False))
        classes: list[int] = []
        category, superc, cross, pairs = {}, {}, {}, {}
        for j, s in enumerate(chosen_supers):
            two = sorted(int(c) for c in rng.choice(by_super[s], 2, replace=False))
            for i, c in enumerate(two):
                name = pool.class_names[c]
                classes.append(c)
                category[name] = name
                superc[name] = pool.super_class_names[s]
                cross[name] = "group_a" if i == 0 else "group_b"
                pairs[name] = "group_a" if j < len(chosen_supers) // 2 else "group_b"
        self.relabel(source, tag, classes, n_train, n_test_per_class,
                     {"category": category, "super-category": superc,
                      "cross-grouping": cross, "super-pairs": pairs})

    def grid_relabel(self, source: str, tag: str, n_rows: int, n_cols: int, n_train: int,
                     n_test_per_class: int, min_images: int = 30) -> None:
        """A grid of super-classes x class suffixes (Wesnoth: races x poses), all cells
        present with ``min_images``; labelled by cell, by row and by column."""
        pool = self.pools[source]
        counts = pool.class_counts()
        cells = {tuple(c.split("/", 1)) for c, k in counts.items()
                 if "/" in c and k >= min_images}
        rows = sorted({r for r, _ in cells})
        rng = _rng(self.seed, source, "grid", tag)
        best: tuple[list[str], list[str]] | None = None
        for _ in range(2000):  # random search for a complete grid
            rr = sorted(str(r) for r in rng.choice(rows, min(n_rows, len(rows)), replace=False))
            cols = sorted(set.intersection(*({c for r2, c in cells if r2 == r} for r in rr)))
            if len(cols) >= n_cols:
                best = (rr, sorted(str(c) for c in rng.choice(cols, n_cols, replace=False)))
                break
        if best is None:
            logger.warning("%s has no complete %dx%d grid of classes with >= %d images; no "
                           "relabel pool %r", source, n_rows, n_cols, min_images, tag)
            return
        rr, cc = best
        names = [f"{r}/{c}" for r in rr for c in cc]
        index = {n: i for i, n in enumerate(pool.class_names)}
        self.relabel(source, tag, [index[n] for n in names], n_train, n_test_per_class,
                     {"category": {n: n for n in names},
                      "super-category": {n: n.split("/", 1)[0] for n in names},
                      "pose": {n: n.split("/", 1)[1] for n in names}})


def _short_names(pool: Pool) -> list[str]:
    """Shortest unique trailing part of each class name (clip-art folder paths), '.'-joined."""
    parts = [n.split("/") for n in pool.class_names]
    out = []
    for p in parts:
        for k in range(1, len(p) + 1):
            tail = p[-k:]
            if sum(1 for q in parts if q[-k:] == tail) == 1:
                break
        out.append(".".join(tail))
    return out


def _load_pools(names: Sequence[str], skip_missing: bool,
                pool_options: Mapping[str, Mapping[str, Any]], verbose: int | bool
                ) -> dict[str, Pool]:
    pools: dict[str, Pool] = {}
    for n in progress(names, verbose=verbose, desc="loading image pools"):
        try:
            pools[n] = load_pool(n, **dict(pool_options.get(n, {})))
        except DatasetNotFoundError as exc:
            if not skip_missing:
                raise
            logger.warning("leaving %s out of the suite: %s", n, exc)
    return pools


def _plan_default(b: _Builder) -> None:
    max_test, max_test_pc = 1000, 250
    plans = {"fashion_mnist": (20, 15), "mnist": (15, 10), "animal_mnist": (15, 10),
             "digits": (10, 5)}
    for source, (n_pairs, n_small) in plans.items():
        if source in b.pools:
            b.random_subsets(source, n_pairs, n_small, max_test, max_test_pc)
    if "clipart" in b.pools:
        pool = b.pools["clipart"]
        index = {n: i for i, n in enumerate(pool.class_names)}
        done: set[tuple[int, ...]] = set()
        rng = _rng(b.seed, "clipart", "curated")
        for label, cats in _CLIPART_CURATED.items():
            if all(c in index for c in cats):
                combo = tuple(sorted(index[c] for c in cats))
                done.add(combo)
                b.subset("clipart", combo, int(rng.choice(_TRAIN_SIZES)), max_test, max_test_pc,
                         label=label)
        counts = np.bincount(pool.labels, minlength=pool.n_classes)
        eligible = [c for c in range(pool.n_classes) if counts[c] >= 40]
        if len(eligible) < 6:
            eligible = list(range(pool.n_classes))
        n_random = 35 - len(done)
        b.random_subsets("clipart", n_random * 2 // 5, n_random - n_random * 2 // 5, max_test,
                         max_test_pc, eligible=eligible, exclude=done)
    for source in ("fashion_mnist", "mnist", "digits", "animal_mnist"):
        if source in b.pools:
            all_classes = list(range(b.pools[source].n_classes))
            b.relabel(source, "a", all_classes, 15, 100, LABEL_FUNCTIONS[source])
            b.relabel(source, "b", all_classes, 40, 100, LABEL_FUNCTIONS[source])
    if "clipart" in b.pools:
        b.clipart_relabel("a", 15, 100)
        b.clipart_relabel("b", 20, 100)


def _plan_new_domains(b: _Builder) -> None:
    """Suite ``"v2"``'s tasks from the emoji, Wesnoth and Oxygen pools."""
    max_test, max_test_pc = 1000, 250
    for source, (n_pairs, n_small) in {"emoji": (8, 6), "wesnoth": (8, 6),
                                       "oxygen": (6, 5)}.items():
        if source in b.pools:
            counts = np.bincount(b.pools[source].labels, minlength=b.pools[source].n_classes)
            eligible = [c for c in range(b.pools[source].n_classes) if counts[c] >= 30]
            b.random_subsets(source, n_pairs, n_small, max_test, max_test_pc,
                             eligible=eligible)
    if "emoji" in b.pools:  # small subgroups: the two pools differ in classes and size
        b.super_relabel("emoji", "a", 10, 100, min_images=20)
        b.super_relabel("emoji", "b", 6, 100, min_images=20)
    if "wesnoth" in b.pools:
        b.grid_relabel("wesnoth", "a", 3, 3, 15, 100)
        b.grid_relabel("wesnoth", "b", 3, 3, 30, 100)
    if "oxygen" in b.pools:
        pool = b.pools["oxygen"]
        classes = [pool.class_names.index(c) for c in _OXYGEN_CLASSES if c in pool.class_names]
        functions = {f: {c: m[c] for c in (pool.class_names[i] for i in classes)}
                     for f, m in LABEL_FUNCTIONS["oxygen"].items()}
        b.relabel("oxygen", "a", classes, 15, 100, functions)
        b.relabel("oxygen", "b", classes, 8, 100, functions)  # other images: a 15 / 8 split


def _plan_v2(b: _Builder) -> None:
    _plan_default(b)
    _plan_new_domains(b)


def _plan_mini(b: _Builder) -> None:
    b.random_subsets("digits", 4, 2, 90, 30, sizes=(10,))
    funcs = {k: LABEL_FUNCTIONS["digits"][k]
             for k in ("digit", "parity", "greater-than-4", "mod-3")}
    b.relabel("digits", "a", list(range(10)), 8, 20, funcs)


_PLANS = {"default": (_plan_default, DEFAULT_POOLS),
          "v2": (_plan_v2, DEFAULT_POOLS + NEW_DOMAIN_POOLS),
          "mini": (_plan_mini, ("digits",))}


def list_suites() -> dict[str, str]:
    """Names of the suites :func:`make_suite` builds, each with a one-line description."""
    return dict(_SUITES)


def _resize_train(builder: _Builder, n_per_class: int, draw: int) -> None:
    """Redraw every spec's training split: about ``n_per_class`` images per task class.

    From the same training reserve (so still disjoint from the unchanged test split), the
    same number from each source class: ``max(1, round(n_per_class * n_task_classes /
    n_source_classes))`` (fewer where a reserve is smaller). The draw depends on the
    image pool and ``draw`` only, so the label functions of a pool share their images and
    the draws of increasing sizes are nested.
    """
    for spec in builder.specs:
        pool = builder.pools[spec.source]
        reserve = builder.reserves[spec.source][0]
        src = [pool.class_names.index(c) for c in spec.label_map]
        n_task = len(set(spec.label_map.values()))
        per_src = max(1, int(round(n_per_class * n_task / len(src))))
        rng = _rng(builder.seed, spec.image_pool, "train-resize", draw)
        spec.train_idx = _draw(rng, reserve, src, per_src)
        spec.n_per_source_class = min(per_src, *(reserve[c].shape[0] for c in src))


def _specs(name: str, seed: int, pools: Sequence[str] | None, skip_missing: bool,
           pool_options: Mapping[str, Mapping[str, Any]] | None, verbose: int | bool,
           train_per_class: int | None = None, train_draw: int = 0,
           tasks: Sequence[str] | None = None) -> tuple[list[_Spec], dict[str, Pool]]:
    if name not in _PLANS:
        raise UnknownNameError(
            f"unknown suite {name!r}; expected one of {', '.join(_PLANS)}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or int(seed) < 0:
        raise InvalidParameterError(
            f"seed must be a non-negative integer; got {seed!r}."
        )
    plan, default_pools = _PLANS[name]
    wanted = list(default_pools) if pools is None else list(pools)
    unknown = [p for p in wanted if p not in default_pools]
    if unknown:
        raise UnknownNameError(
            f"suite {name!r} has no pool(s) {unknown}; its pools are {list(default_pools)}."
        )
    loaded = _load_pools(wanted, skip_missing, pool_options or {}, verbose)
    builder = _Builder(int(seed), loaded)
    plan(builder)
    names = [s.name for s in builder.specs]
    if len(set(names)) != len(names):  # a bug in a plan, never the user's doing
        dup = sorted({n for n in names if names.count(n) > 1})
        raise RuntimeError(f"suite {name!r} has duplicate task names {dup[:5]}")
    if train_per_class is not None:
        _resize_train(builder, check_int(train_per_class, "train_per_class", 1),
                      check_int(train_draw, "train_draw", 0))
    specs = builder.specs
    if tasks is not None:
        wanted_tasks = list(tasks)
        missing = sorted(set(wanted_tasks) - set(names))
        if missing:
            raise UnknownNameError(
                f"suite {name!r} (seed {seed}) has no task(s) {missing[:5]}; list its tasks "
                f"with [t.name for t in iter_suite({name!r})].")
        keep = set(wanted_tasks)
        specs = [sp for sp in specs if sp.name in keep]
    return specs, loaded


def _materialise(spec: _Spec, pool: Pool, suite: str, seed: int,
                 shared: dict[str, tuple[Task, Task, bytes]]) -> SuiteTask:
    def labels(idx: np.ndarray) -> np.ndarray:
        src = np.asarray(pool.class_names, dtype=object)[pool.labels[idx]]
        return np.asarray([spec.label_map[s] for s in src], dtype=str)

    y_tr, y_te = labels(spec.train_idx), labels(spec.test_idx)
    classes = sorted(set(spec.label_map.values()))
    source_classes = list(spec.label_map)
    prov: dict[str, Any] = {
        "kind": spec.kind,
        "pool": spec.image_pool,
        "source_dataset": spec.source,
        "label_function": spec.label_function,
        "classes": classes,
        "n_train_per_class": {c: int((y_tr == c).sum()) for c in classes},
        "n_test_per_class": {c: int((y_te == c).sum()) for c in classes},
        "n_train_per_source_class": int(spec.n_per_source_class),
        "source_classes": source_classes,
        "label_map": dict(spec.label_map),
        "n_train": int(y_tr.shape[0]),
        "n_test": int(y_te.shape[0]),
        "suite": suite,
        "seed": int(seed),
    }
    key = spec.train_idx.tobytes() + b"|" + spec.test_idx.tobytes()
    base = shared.get(spec.image_pool)
    if base is not None and base[2] != key:  # redrawn training splits differ per labelling
        base = None
    tasks = []
    for split, idx, y in (("train", spec.train_idx, y_tr), ("test", spec.test_idx, y_te)):
        p = {**prov, "split": split}
        tname = f"{spec.name}:{split}"
        if base is None:
            tasks.append(Task.from_arrays(pool.images[idx], y, name=tname, provenance=p))
        else:  # same images as an earlier label function: share the float array
            images = (base[0] if split == "train" else base[1]).images
            cls, codes = np.unique(y, return_inverse=True)
            tasks.append(Task(images, codes.astype(np.int64), cls, tname, p))
    if base is None and spec.kind == "relabel":
        shared.clear()  # keep only the latest image pool's arrays
        shared[spec.image_pool] = (tasks[0], tasks[1], key)
    return SuiteTask(spec.name, tasks[0], tasks[1], prov)


def iter_suite(name: str = "default", seed: int = 0, *, pools: Sequence[str] | None = None,
               skip_missing: bool = False,
               pool_options: Mapping[str, Mapping[str, Any]] | None = None,
               verbose: int | bool = False, train_per_class: int | None = None,
               train_draw: int = 0, tasks: Sequence[str] | None = None
               ) -> Iterator[SuiteTask]:
    """Yield the tasks of a suite one at a time (same tasks, same order as :func:`make_suite`).

    Only the source pools (``uint8``) and the current task's float images are held in
    memory, which matters for the default suite: all its tasks at once take about 1 GB.
    Parameters are those of :func:`make_suite`; pools are loaded and the suite's
    composition is drawn before the first task is yielded.
    """
    specs, loaded = _specs(name, seed, pools, skip_missing, pool_options, verbose,
                           train_per_class, train_draw, tasks)
    return _iter_specs(specs, loaded, name, int(seed), verbose)


def _iter_specs(specs: list[_Spec], loaded: dict[str, Pool], name: str, seed: int,
                verbose: int | bool) -> Iterator[SuiteTask]:
    shared: dict[str, tuple[Task, Task, bytes]] = {}
    for spec in progress(specs, verbose=verbose, desc=f"building suite {name!r}",
                         total=len(specs)):
        yield _materialise(spec, loaded[spec.source], name, seed, shared)


def make_suite(name: str = "default", seed: int = 0, *, pools: Sequence[str] | None = None,
               skip_missing: bool = False,
               pool_options: Mapping[str, Mapping[str, Any]] | None = None,
               verbose: int | bool = False, train_per_class: int | None = None,
               train_draw: int = 0, tasks: Sequence[str] | None = None) -> list[SuiteTask]:
    """Build a task suite from installed image pools.

    Parameters
    ----------
    name : str, default="default"
        One of :func:`list_suites`.
    seed : int, default=0
        Every random choice (which classes, which images) is a function of ``seed``; the
        same seed gives the same tasks, image for image, on any machine.
    pools : sequence of str, optional
        Build only the tasks from these source pools (default: all of the suite's pools);
        the other pools' tasks are the same as in the full suite.
    skip_missing : bool, default=False
        Leave out, with a logged warning, the pools whose source is not installed,
        instead of raising :class:`~t2v_automl.datasets.DatasetNotFoundError`.
    pool_options : mapping, optional
        Per-pool options for :func:`~t2v_automl.datasets.load_pool`, e.g.
        ``{"clipart": {"root": "/my/clipart"}}``.
    verbose : bool or int, default=False
        Show progress bars.
    train_per_class : int, optional
        Redraw every task's training split with about this many images per class (the
        small-task protocol of ``benchmarks/small_tasks.py``): the same classes, label
        function and test split, the training images drawn anew from the same training
        reserve (at most :data:`MAX_TRAIN_PER_CLASS` per source class), the same number
        from each source class (``max(1, round(train_per_class * n_task_classes /
        n_source_classes))``). The label functions of an image pool share their
        images, and the draws of increasing sizes (same ``train_draw``) are nested.
    train_draw : int, default=0
        Which redraw (with ``train_per_class``).
    tasks : sequence of str, optional
        Build only these tasks (by name); their content is the same as in the full suite.

    Returns
    -------
    list of SuiteTask
        In the plan's order: for ``"default"``, the ``"subset"`` tasks first, pool by
        pool, then the ``"relabel"`` tasks; ``"v2"`` appends the new domains' subset
        tasks, then their relabel tasks.

    Raises
    ------
    UnknownNameError
        Unknown suite or pool name.
    DatasetNotFoundError
        A source is not installed (and ``skip_missing`` is False); the message says what
        to install.

    See Also
    --------
    iter_suite : the same tasks, built one at a time to save memory.
    """
    return list(iter_suite(name, seed, pools=pools, skip_missing=skip_missing,
                           pool_options=pool_options, verbose=verbose,
                           train_per_class=train_per_class, train_draw=train_draw,
                           tasks=tasks))


def pool_label_function(pool: Pool, function: str) -> dict[str, str]:
    """A label function over every class of ``pool``: ``{class name: label}``.

    Parameters
    ----------
    pool : Pool
    function : str
        ``"category"`` (the pool's own classes), ``"super-category"`` (clip art's top
        folders, emoji groups, Wesnoth races), ``"pose"`` (Wesnoth: the part of the class
        name after ``/``) or a name of :data:`LABEL_FUNCTIONS` for the pool (e.g.
        ``"parity"`` for ``"mnist"``).

    Returns
    -------
    dict of str to str
        Classes the function does not label (e.g. Oxygen's ``emotes``) are left out.

    Raises
    ------
    UnknownNameError
        The pool has no such label function.
    """
    names = list(pool.class_names)
    if function == "category":
        return {c: c for c in names}
    if function == "super-category" and pool.super_labels is not None:
        assert pool.super_class_names is not None
        first = {int(lab): int(pool.super_labels[i])
                 for i, lab in reversed(list(enumerate(pool.labels)))}
        return {c: pool.super_class_names[first[i]] for i, c in enumerate(names) if i in first}
    if function == "pose" and all("/" in c for c in names):
        return {c: c.split("/", 1)[1] for c in names}
    table = LABEL_FUNCTIONS.get(pool.name, {})
    if function in table:
        return {c: table[function][c] for c in names if c in table[function]}
    known = ["category"] + (["super-category"] if pool.super_labels is not None else []) + (
        ["pose"] if all("/" in c for c in names) else []) + list(table)
    raise UnknownNameError(
        f"pool {pool.name!r} has no label function {function!r}; expected one of "
        f"{', '.join(known)}.")


def source_task(pool: Pool | str, function: str = "category", *, seed: int = 0,
                max_per_class: int = 100, min_per_class: int = 2,
                name: str | None = None) -> Task:
    """The task an *expert* is trained on: a pool's training reserve, relabelled.

    The images are those the suites reserve for training (the same ``seed``), so no
    test image of any suite task of that seed is among them: an expert trained on this
    task can be evaluated on the suite's test splits.

    Parameters
    ----------
    pool : Pool or str
        The image pool (or its name for :func:`~t2v_automl.datasets.load_pool`).
    function : str, default="category"
        A label function of :func:`pool_label_function`.
    seed : int, default=0
        The suite seed whose reserves are used.
    max_per_class : int, default=100
        At most this many images of each source class (the first of its shuffled
        training reserve).
    min_per_class : int, default=2
        Source classes with fewer reserved images are left out.
    name : str, optional
        The task's name (default ``"<pool>/<function>"``).

    Returns
    -------
    Task
        With ``provenance`` ``{"kind": "source", "source_dataset", "label_function",
        "label_map", "seed", "n_per_source_class"}``.
    """
    if isinstance(pool, str):
        pool = load_pool(pool)
    max_per_class = check_int(max_per_class, "max_per_class", 1)
    mapping = pool_label_function(pool, function)
    train_res, _ = _reserves(pool, int(seed))
    idx, used = [], {}
    for c, cname in enumerate(pool.class_names):
        if cname in mapping and train_res[c].shape[0] >= min_per_class:
            take = train_res[c][:max_per_class]
            idx.append(take)
            used[cname] = mapping[cname]
    if len(set(used.values())) < 2:
        raise InvalidTaskError(
            f"label function {function!r} of pool {pool.name!r} gives fewer than 2 labels "
            f"to classes with >= {min_per_class} reserved images; choose another function.")
    order = np.concatenate(idx)
    src = np.asarray(pool.class_names, dtype=object)[pool.labels[order]]
    y = np.asarray([used[c] for c in src], dtype=str)
    prov = {"kind": "source", "source_dataset": pool.name, "label_function": function,
            "label_map": used, "seed": int(seed),
            "n_per_source_class": {c: int(min(max_per_class, train_res[i].shape[0]))
                                   for i, c in enumerate(pool.class_names) if c in used}}
    return Task.from_arrays(pool.images[order], y, name=name or f"{pool.name}/{function}",
                            provenance=prov)
