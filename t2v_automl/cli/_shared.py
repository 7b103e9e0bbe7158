"""Helpers of several commands: inputs, knowledge bases, the embedder, the hybrid, rankings.

Every heavy import happens inside the functions (this module is imported when the parser is
built).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from t2v_automl.cli._base import DEFAULT_PROBE, CLIInputError, Console, parse_names
from t2v_automl.exceptions import IncompatibleEmbeddingError, UnknownNameError

if TYPE_CHECKING:
    from t2v_automl.embedding import Embedding, EmbeddingMeta
    from t2v_automl.estimators import HybridSelector, Task2VecEmbedder
    from t2v_automl.knowledge import KnowledgeBase
    from t2v_automl.tasks import Task

#: Columns of a ranking table (a transferability column may follow).
RANKING_HEADERS = ["rank", "extractor", "predicted", "mean known", "tasks best"]
#: Columns of a nearest-tasks table.
NEAREST_HEADERS = ["task", "distance", "source", "best extractor", "its score"]


def load_kb(path: str | None) -> KnowledgeBase:
    """The knowledge base at ``path``, a packaged one by name (``experts``), or the
    shipped default."""
    import os

    from t2v_automl.knowledge import PACKAGED_KNOWLEDGE, KnowledgeBase

    if path and path in PACKAGED_KNOWLEDGE and not os.path.exists(path):
        return KnowledgeBase.named(path)
    return KnowledgeBase.load(path) if path else KnowledgeBase.default()


def kb_label(path: str | None) -> str:
    """How messages name the knowledge base."""
    return path if path else "the default knowledge base"


def describe_meta(meta: EmbeddingMeta) -> str:
    """One line saying how embeddings were made."""
    return (f"probe {meta.probe!r} (weights {meta.weights_sha256[:12]}), method "
            f"{meta.method!r}, {meta.input_size} px, dim {meta.dim}")


def check_probe(args: argparse.Namespace, meta: EmbeddingMeta, what: str) -> None:
    """The embedding options given must be those of the embeddings they are compared with.

    ``--probe``, ``--method``, ``--image-size`` and (where ``meta`` records it)
    ``--max-images``: the stored settings are used to embed, so a different value would be
    ignored; it is refused instead, naming both values.
    """
    asked = {"--probe": (getattr(args, "probe", None), meta.probe),
             "--method": (getattr(args, "method", None), meta.method),
             "--image-size": (getattr(args, "image_size", None), int(meta.input_size)),
             "--max-images": (getattr(args, "max_images", None),
                              dict(meta.settings).get("max_images"))}
    for option, (value, stored) in asked.items():
        if value is None or stored is None or value == stored:
            continue
        raise IncompatibleEmbeddingError(
            f"{what} holds embeddings made with {option} {stored}, but {option} asks for "
            f"{value}; leave {option} out (the stored settings are used) or give "
            f"{option} {stored}, or use "
            + ("a knowledge base" if "knowledge" in what else "embeddings")
            + f" made with {option} {value}."
        )


def embedder_params(args: argparse.Namespace, meta: EmbeddingMeta | None = None
                    ) -> dict[str, Any]:
    """``Task2VecEmbedder`` parameters from the options, or reproducing ``meta``."""
    from t2v_automl.estimators import embedder_params_from_meta

    if meta is not None:
        params = embedder_params_from_meta(meta)
    else:
        params = {"probe": args.probe or DEFAULT_PROBE}
        for opt in ("method", "image_size", "max_images"):
            value = getattr(args, opt, None)
            if value is not None:
                params[opt] = value
    params.update(device=args.device, n_jobs=args.jobs, verbose=int(args.console.progress))
    return params


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
        ``--probe`` asks for other embeddings than ``meta``'s, or this installation makes
        them differently.
    """
    from t2v_automl.estimators import Task2VecEmbedder

    if meta is not None:
        check_probe(args, meta, what)
    emb = Task2VecEmbedder(**embedder_params(args, meta)).fit()
    if meta is not None and emb.embedding_meta_.compat_key() != meta.compat_key():
        raise IncompatibleEmbeddingError(
            f"{what} holds embeddings made differently from what this installation makes "
            f"({meta.describe_difference(emb.embedding_meta_)}; stored first). Rebuild it "
            f"with `t2v-automl knowledge build`, or embed with matching settings."
        )
    return emb


# ============================================================================ inputs
@dataclass
class Input:
    """One command-line input: a task to embed, or an embedding already made."""

    path: str
    task: Task | None = None
    embedding: Embedding | None = None


def load_inputs(paths: Sequence[str], image_size: int, on_bad_image: str = "skip"
                ) -> list[Input]:
    """Turn command-line paths into tasks (folders, task .npz) or stored embeddings.

    ``on_bad_image`` (``--on-bad-image``) goes to ``Task.from_folder``: ``"skip"`` leaves
    bad image files out with one warning giving their count, ``"fail"`` raises.
    """
    from t2v_automl.knowledge import load_embeddings
    from t2v_automl.tasks import as_task

    items: list[Input] = []
    for p in paths:
        stored = load_embeddings(p)
        if stored is not None:
            items.extend(Input(p, embedding=e) for e in stored)
        else:
            items.append(Input(p, task=as_task(p, image_size=max(int(image_size), 32),
                                               on_bad_image=on_bad_image)))
    return items


def check_made_like(embeddings: Sequence[Embedding], meta: EmbeddingMeta, what: str) -> None:
    """Every embedding was made like ``meta`` (that of ``what``)."""
    for e in embeddings:
        if e.meta.compat_key() != meta.compat_key():
            raise IncompatibleEmbeddingError(
                f"embedding of {e.task_name!r} was made differently from {what} "
                f"({meta.describe_difference(e.meta)}; {what} first). Re-embed the "
                f"dataset with matching settings (e.g. --probe {meta.probe})."
            )


def embed_inputs(args: argparse.Namespace, items: list[Input],
                 meta: EmbeddingMeta | None = None, what: str = "the knowledge base"
                 ) -> tuple[list[Embedding], list[float]]:
    """Embed the tasks among ``items`` (stored embeddings pass through); seconds per item."""
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
        check_made_like(out, meta, what)
    return out, times


def unique_names(names: Sequence[str]) -> list[str]:
    """Names with ``#2``, ``#3``... appended to repeats."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


# ============================================================================ the zoo
def add_zoo_options(p: argparse.ArgumentParser, what: str) -> None:
    """``--zoo FILE`` and ``--extractor NAME`` (repeated): the user's candidate extractors."""
    g = p.add_argument_group("the zoo (your candidate extractors)")
    g.add_argument("--zoo", metavar="FILE",
                   help=f"{what} the extractors named in a zoo file (TOML, JSON or YAML; "
                        "t2v_automl.extractors.read_zoo)")
    g.add_argument("--extractor", action="append", metavar="NAME",
                   help=f"{what} this extractor (repeat the option; a registered name or a "
                        "name scheme such as timm:<name>); adds to --zoo")


def zoo_names(args: argparse.Namespace) -> list[str] | None:
    """The extractors of ``--zoo``, ``--extractor`` and ``--extractors``, in that order.

    Repeats are dropped; the names are checked by whoever uses them (the build, the
    selectors), before any work.

    Returns
    -------
    list of str or None
        None when none of the options is given.

    Raises
    ------
    CLIInputError
        The zoo file cannot be read, or names no extractor.
    """
    names: list[str] = []
    zoo = getattr(args, "zoo", None)
    if zoo:
        try:
            from t2v_automl.extractors import read_zoo  # type: ignore[attr-defined]
        except ImportError:
            raise CLIInputError(
                f"--zoo {zoo!r}: this installation cannot read zoo files (no "
                "t2v_automl.extractors.read_zoo); name the extractors with --extractor NAME, "
                "repeated.") from None
        try:
            names += [str(n) for n in read_zoo(zoo)]
        except OSError as exc:
            raise CLIInputError(f"cannot read the zoo file {zoo!r}: {exc.strerror or exc}."
                                ) from None
        if not names:
            raise CLIInputError(f"the zoo file {zoo!r} names no extractor; add at least one.")
    names += list(getattr(args, "extractor", None) or [])
    names += parse_names(getattr(args, "extractors", None)) or []
    if not names:
        return None
    return list(dict.fromkeys(names))


# ============================================================================ selection
def make_hybrid(args: argparse.Namespace, kb: KnowledgeBase) -> HybridSelector:
    """The fitted :class:`HybridSelector` of ``select`` / ``demo`` from the options.

    ``--transferability none`` is a hybrid without the domain screen whose ``min_gate`` is
    above 1: no transferability score is computed, so its weight is 0 and the knowledge
    base alone ranks.
    """
    from t2v_automl.estimators import (
        ExtractorSelector,
        HybridSelector,
        Task2VecEmbedder,
        TransferabilitySelector,
    )

    params = {k: v for k, v in (("strategy", getattr(args, "strategy", None)),
                                ("metric", getattr(args, "metric", None)),
                                ("n_neighbors", getattr(args, "neighbors", None)))
              if v is not None}
    measure = getattr(args, "transferability", "logme")
    device = args.device or "auto"
    off = {"domain_screen": None, "min_gate": 2.0} if measure == "none" else {}
    return HybridSelector.from_knowledge(
        kb, device=device, selector=ExtractorSelector(**params),
        embedder=Task2VecEmbedder(**embedder_params(args, kb.meta)),
        transferability=TransferabilitySelector(
            measure="logme" if measure == "none" else measure,
            device="cpu" if device == "auto" else device,
            verbose=int(args.console.progress)), **off)


def check_candidates(candidates: Sequence[str] | None, names: Sequence[str]) -> None:
    """Every ``--candidates`` name is an extractor of the knowledge base."""
    unknown = [c for c in candidates or () if c not in names]
    if unknown:
        raise UnknownNameError(
            f"unknown extractor(s) {unknown} in --candidates; the knowledge base knows "
            f"{', '.join(names)}."
        )


def ranking_rows(names: Sequence[str], pred: Any, kb: KnowledgeBase,
                 candidates: Sequence[str] | None = None, top: int | None = None,
                 transfer: Any = None) -> list[list[Any]]:
    """Table rows (rank, extractor, predicted, mean known, tasks best[, transferability]).

    Parameters
    ----------
    names : sequence of str
        Column order of ``pred`` and ``transfer`` (``HybridExplanation.extractor_names``).
    pred : array-like of shape (n_extractors,)
        One task's predicted scores.
    kb : KnowledgeBase
        Its :func:`~t2v_automl.knowledge.extractor_summary` fills the known columns.
    candidates : sequence of str, optional
        Show only these.
    top : int, optional
        Show the first ``top`` only.
    transfer : array-like of shape (n_extractors,), optional
        The task's transferability scores (a last column).
    """
    import numpy as np

    from t2v_automl.knowledge import extractor_summary
    from t2v_automl.metrics import ranking_order

    names = list(names)
    pred = np.asarray(pred, dtype=np.float64)
    cols = np.asarray([names.index(c) for c in candidates] if candidates
                      else range(len(names)), dtype=np.intp)
    order = cols[ranking_order(pred[cols][None, :])[0]]
    known = {s.name: s for s in extractor_summary(kb)}
    rows = []
    for r, j in enumerate(order[:top] if top else order, start=1):
        s = known[names[j]]
        row = [r, names[j], float(pred[j]), s.mean_score, s.n_best]
        if transfer is not None:
            row.append(float(transfer[j]))
        rows.append(row)
    return rows


def nearest_rows(near: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """Rows of :data:`NEAREST_HEADERS` from :func:`~t2v_automl.knowledge.nearest_tasks`."""
    return [[n["task"], n["distance"], n["source"], n["best"], n["best_score"]] for n in near]


def show_ranking(con: Console, rows: list[list[Any]], measure: str | None,
                 indent: str = "  ") -> None:
    """The ranking table (with the ``measure`` column when rows have it)."""
    con.table(RANKING_HEADERS + ([measure] if measure and rows and len(rows[0]) > 5 else []),
              rows, indent=indent)
