"""``t2v-automl knowledge info|add|build``: manage knowledge bases.

The statistics come from :mod:`t2v_automl.knowledge` (:func:`extractor_summary`,
:func:`source_counts`, :func:`task_summary`); the build is
:func:`t2v_automl.building.build_knowledge` (a suite) or
:func:`t2v_automl.folders.build_knowledge_from_folders` (``--tasks DIR...``), cached in
``OUT.cache/`` unless ``--cache DIR`` or ``--no-cache`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2v_automl.cli._base import (
    EXIT_OK,
    EXTRA_EMBEDDING_CHOICES,
    CLIInputError,
    Command,
    Console,
    add_embedder_options,
    add_input_options,
    check_output,
    count,
    parse_names,
)
from t2v_automl.cli._shared import (
    add_zoo_options,
    check_probe,
    describe_meta,
    embed_inputs,
    embedder_params,
    load_inputs,
    load_kb,
    zoo_names,
)
from t2v_automl.exceptions import UnknownNameError

if TYPE_CHECKING:
    from t2v_automl.knowledge import KnowledgeBase

#: Help of the ``knowledge`` group.
GROUP_HELP = "manage knowledge bases (build, info, add)"


class KnowledgeInfoCommand(Command):
    """what a knowledge base holds"""

    description = "Tasks, extractors, embedding settings and scores of a knowledge base."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("path", nargs="?", metavar="KB.npz",
                            help="knowledge base file, or 'experts' for the packaged "
                                 "expert-zoo base (default: the shipped one)")
        parser.add_argument("--tasks", action="store_true", help="also list every task")

    def run(self, args: argparse.Namespace, con: Console) -> int:
        import numpy as np

        from t2v_automl.knowledge import extractor_summary, source_counts, task_summary

        kb = load_kb(args.path)
        S, m = kb.scores, kb.meta
        con.out(f"knowledge base: {args.path or '(default, shipped with t2v-automl)'}")
        con.out(f"  tasks: {len(kb)}; extractors: {len(kb.extractor_names)}; measured "
                f"scores: {int(np.isfinite(S).sum())}/{S.size}")
        con.out(f"  embeddings: probe {m.probe!r}, weights sha256 {m.weights_sha256[:16]}..., "
                f"method {m.method!r}, {m.input_size} px, layers {m.layers}, dim {m.dim}")
        if m.settings:
            con.out("  embedder settings: "
                    + ", ".join(f"{k}={v}" for k, v in m.settings.items()))
        if kb.extra_names:
            con.out("  extra embedding sets: " + ", ".join(kb.extra_names))
        sources = source_counts(kb)
        if sources:
            con.out("  task sources: " + ", ".join(f"{k} ({v})" for k, v in sources.items()))
        info = kb.extractor_info
        con.out("")
        con.table(["extractor", "tasks", "mean score", "tasks best", "trained on"],
                  [[s.name, s.n_measured, s.mean_score, s.n_best,
                    str(info.get(s.name, {}).get("source", "-"))]
                   for s in extractor_summary(kb)])
        if args.tasks:
            con.out("")
            con.table(["task", "source", "best extractor", "score"],
                      [[t["task"], t["source"], t["best"], t["best_score"]]
                       for t in task_summary(kb)])
        return EXIT_OK


def read_scores(path: str, kb: KnowledgeBase | None, allow_unknown: bool
                ) -> dict[str, dict[str, Any]]:
    """Read a scores JSON: ``{"name": score}`` or ``{"scores": {...}, "stderr": {...}}``."""
    from t2v_automl.extractors import list_extractors

    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise CLIInputError(f"scores file {path!r} does not exist.") from None
    except (OSError, ValueError) as exc:
        raise CLIInputError(f"cannot read scores file {path!r}: {exc}") from None
    if not isinstance(doc, dict) or not doc:
        raise CLIInputError(
            f"scores file {path!r} must hold a JSON object: {{\"extractor\": accuracy, ...}} "
            "or {\"scores\": {...}, \"stderr\": {...}, \"eval_time\": {...}}."
        )
    parts = doc if isinstance(doc.get("scores"), dict) else {"scores": doc}
    out: dict[str, dict[str, Any]] = {}
    for key in ("scores", "stderr", "eval_time", "provenance"):
        value = parts.get(key)
        if value is not None and not isinstance(value, dict):
            raise CLIInputError(f"{key!r} in {path!r} must be a JSON object.")
        if value is not None:
            out[key] = value
    for name, v in out["scores"].items():
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise CLIInputError(
                f"score of {name!r} in {path!r} must be a number in [0, 1]; got {v!r}."
            )
    if not allow_unknown:
        known = set(list_extractors()) | set(kb.extractor_names if kb is not None else [])
        unknown = sorted(set(out["scores"]) - known)
        if unknown:
            raise UnknownNameError(
                f"unknown extractor(s) {unknown} in {path!r}; known extractors: "
                f"{', '.join(sorted(known))} (pass --allow-new-extractors to add others)."
            )
    return out


class KnowledgeAddCommand(Command):
    """add a dataset and its scores"""

    description = ("Embed a dataset like the knowledge base's tasks and add it with the "
                   "given extractor scores (the file is created when missing; writes are "
                   "locked and atomic).")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("path", metavar="KB.npz")
        parser.add_argument("dataset", metavar="DATASET", help="image folder or task .npz")
        parser.add_argument("--scores", required=True, metavar="FILE.json",
                            help='{"extractor": accuracy, ...} or {"scores": {...}, '
                                 '"stderr": {...}, "eval_time": {...}, "provenance": {...}}')
        parser.add_argument("--name", help="task name (default: the folder's name)")
        parser.add_argument("--overwrite", action="store_true",
                            help="replace a task of that name")
        parser.add_argument("--allow-new-extractors", action="store_true",
                            help="accept extractor names that are not in the zoo")
        add_input_options(parser)
        add_embedder_options(parser)

    def run(self, args: argparse.Namespace, con: Console) -> int:
        from t2v_automl.knowledge import (
            PROVENANCE_FINGERPRINT,
            PROVENANCE_N_CLASSES,
            PROVENANCE_N_IMAGES,
            PROVENANCE_PATH,
            PROVENANCE_SOURCE,
            KnowledgeBase,
        )

        target = Path(args.path)
        check_output(args.path, "the knowledge base", parents=True)
        existing = KnowledgeBase.load(target) if target.exists() else None
        if existing is not None:  # its settings embed: other values would be ignored
            check_probe(args, existing.meta, f"knowledge base {str(target)!r}")
        parts = read_scores(args.scores, existing, args.allow_new_extractors)
        items = load_inputs([args.dataset],
                            existing.meta.input_size if existing else (args.image_size or 64),
                            args.on_bad_image)
        if items[0].task is None:
            raise CLIInputError(
                f"{args.dataset!r} is an embeddings file; `knowledge add` needs the dataset "
                "itself (an image folder or a .npz of images and labels)."
            )
        embs, times = embed_inputs(args, items, existing.meta if existing else None,
                                   f"knowledge base {str(target)!r}")
        e, task = embs[0], items[0].task
        name = args.name or task.name
        prov = {PROVENANCE_SOURCE: "cli", PROVENANCE_PATH: str(Path(args.dataset).resolve()),
                PROVENANCE_FINGERPRINT: task.fingerprint, PROVENANCE_N_IMAGES: task.n_images,
                PROVENANCE_N_CLASSES: task.n_classes, **parts.get("provenance", {})}
        target.parent.mkdir(parents=True, exist_ok=True)
        with KnowledgeBase.locked_update(target, meta=e.meta, timeout=60) as kb:
            kb.add(name, e, parts["scores"], stderr=parts.get("stderr"),
                   eval_time=parts.get("eval_time"), provenance=prov,
                   overwrite=args.overwrite, embed_time=times[0])
            n_tasks, n_ext = len(kb), len(kb.extractor_names)
        con.say(f"added task {name!r} ({task.n_images} images, {task.n_classes} classes, "
                f"{len(parts['scores'])} scores) to {target}: now {n_tasks} tasks x {n_ext} "
                f"extractors")
        return EXIT_OK


class KnowledgeBuildCommand(Command):
    """build a knowledge base over a task suite or your own image folders"""

    description = (
        "Score extractors on every task (brute force: a linear head on each extractor's "
        "frozen features) and embed the tasks: t2v_automl.building.build_knowledge (the "
        "build of the shipped knowledge base, which also used --test-cap 500), or with "
        "--tasks t2v_automl.folders.build_knowledge_from_folders. Every evaluation and "
        "embedding is cached in OUT.cache/ (or --cache DIR): a killed build run again "
        "continues from there, and a rebuild with more extractors computes only theirs. "
        "OUT is written once, at the end, atomically.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("output", metavar="OUT.npz")
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--suite", default=None,
                           help="a built-in suite: 'default' (189 tasks, the default) or "
                                "'mini'")
        which.add_argument("--tasks", nargs="+", metavar="DIR",
                           help="your tasks: each DIR is a task (DIR/<class>/<image>, or "
                                "DIR/train|test/<class>/<image>) or a folder of such tasks")
        parser.add_argument("--seed", type=int, default=0,
                            help="seed of the suite, and of the train/test split of a task "
                                 "folder without a test/ folder (default 0)")
        parser.add_argument("--test-fraction", type=_fraction, default=0.25, metavar="F",
                            help="share of each class held out for testing where a task "
                                 "folder has no test/ folder (stratified; default 0.25)")
        parser.add_argument("--extractors", metavar="A,B,...",
                            help="extractors to score (default: every installed one)")
        add_zoo_options(parser, "score")
        parser.add_argument("--limit", type=count(0), default=0, metavar="N",
                            help="only the first N tasks of the suite (default 0: all)")
        parser.add_argument("--input-size", type=count(1), default=64, metavar="PX",
                            help="input size of the resizable extractors (default 64)")
        parser.add_argument("--C", type=float, default=1.0,
                            help="inverse regularisation of the linear head (default 1)")
        parser.add_argument("--test-cap", type=count(1), default=None, metavar="N",
                            help="largest test split of a 'subset' task (default: all)")
        parser.add_argument("--extra", default=None, metavar="A,B,...|none",
                            help="extra embedding sets kept for baselines and the domain "
                                 f"screen (one of {','.join(EXTRA_EMBEDDING_CHOICES)}; "
                                 "default: all for a suite, 'domain' for --tasks; 'none')")
        cache = parser.add_mutually_exclusive_group()
        cache.add_argument("--cache", metavar="DIR",
                           help="cache evaluations and embeddings here (default OUT.cache)")
        cache.add_argument("--no-cache", action="store_true",
                           help="no cache: an interrupted build starts again from scratch")
        parser.add_argument("--builtin", action="store_true", help=argparse.SUPPRESS)
        add_input_options(parser)
        add_embedder_options(parser)

    def run(self, args: argparse.Namespace, con: Console) -> int:
        check_output(args.output, "the output", parents=True)  # before the heavy imports
        out = Path(args.output)
        cache = None if args.no_cache else (args.cache or f"{args.output}.cache")
        if cache:
            check_output(cache, "--cache", directory=True, parents=True)
        if args.builtin:
            con.note("--builtin is no longer needed (there is one build); ignored")
        default_extra = "domain" if args.tasks else ",".join(EXTRA_EMBEDDING_CHOICES)
        extra = default_extra if args.extra is None else args.extra
        extra_names = [] if extra.strip() == "none" else parse_names(extra) or []
        unknown = [n for n in extra_names if n not in EXTRA_EMBEDDING_CHOICES]
        if unknown:
            raise UnknownNameError(
                f"unknown extra embedding set(s) {unknown} in --extra; known: "
                f"{', '.join(EXTRA_EMBEDDING_CHOICES)} (or 'none')."
            )

        from t2v_automl.building import DEFAULT_EXTRA_EMBEDDINGS, build_knowledge
        from t2v_automl.estimators import Task2VecEmbedder
        from t2v_automl.folders import build_knowledge_from_folders
        device = args.device if args.device != "auto" else "cpu"
        common = {
            "embedder": Task2VecEmbedder(**embedder_params(args)),
            "extra_embeddings": {n: DEFAULT_EXTRA_EMBEDDINGS[n] for n in extra_names},
            "input_size": args.input_size, "C": args.C, "device": device,
            "n_jobs": args.jobs, "memory": cache, "verbose": int(con.progress)}
        names = zoo_names(args)
        if args.tasks:
            if args.limit or args.test_cap:
                con.note("--limit and --test-cap apply to suites; ignored with --tasks")
            con.say(f"building a knowledge base over the task folders {args.tasks} "
                    f"(a test split where none is given: {args.test_fraction:g} of each "
                    f"class, seed {args.seed})")
            kb = build_knowledge_from_folders(
                args.tasks, names, test_fraction=args.test_fraction, seed=args.seed,
                on_bad_image=args.on_bad_image, **common)
        else:
            suite = args.suite or "default"
            con.say(f"building a knowledge base over suite {suite!r} (seed {args.seed}"
                    + (f", first {args.limit} tasks" if args.limit else "") + ")")
            kb = build_knowledge(suite, names, seed=args.seed, limit=args.limit or None,
                                 skip_missing=True, test_cap=args.test_cap, **common)
            if not len(kb):
                raise CLIInputError(f"suite {suite!r} has no task whose images are installed.")
        out.parent.mkdir(parents=True, exist_ok=True)
        kb.save(out)
        con.say(f"wrote {out}: {len(kb)} tasks x {len(kb.extractor_names)} extractors, "
                f"embeddings: {describe_meta(kb.meta)}")
        if cache:
            con.say(f"cache: {cache} (a rebuild reuses it; delete it to free the space)")
        return EXIT_OK


def _fraction(value: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    try:
        f = float(value)
    except ValueError:
        f = float("nan")
    if not 0 < f < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1; got {value!r}")
    return f
