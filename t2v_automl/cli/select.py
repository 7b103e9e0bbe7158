"""``t2v-automl select``: rank the extractors for a dataset.

With a knowledge base (the shipped one by default), the ranking and everything said about
it come from one :meth:`HybridSelector.explain
<t2v_automl.estimators.HybridSelector.explain>` call per input: the domain screen, the
Fisher embedding, the novelty, the gate and the transferability scores. With your own zoo
(``--zoo FILE`` / ``--extractor NAME``) and no ``--knowledge``, the candidates are ranked
by :meth:`TransferabilitySelector.predict_scores
<t2v_automl.estimators.TransferabilitySelector.predict_scores>` alone. This module only
prints them.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2v_automl.cli._base import (
    DISTANCE_CHOICES,
    EXIT_OK,
    SELECTOR_DEFAULTS,
    STRATEGY_CHOICES,
    TRANSFERABILITY_CHOICES,
    CLIInputError,
    Command,
    Console,
    add_input_options,
    check_output,
    count,
    parse_names,
)
from t2v_automl.cli._shared import (
    NEAREST_HEADERS,
    Input,
    add_zoo_options,
    check_candidates,
    check_made_like,
    check_probe,
    describe_meta,
    kb_label,
    load_inputs,
    load_kb,
    make_hybrid,
    nearest_rows,
    ranking_rows,
    show_ranking,
    zoo_names,
)
from t2v_automl.exceptions import UnknownNameError

if TYPE_CHECKING:
    from t2v_automl.estimators import HybridExplanation, HybridSelector
    from t2v_automl.knowledge import KnowledgeBase


class SelectCommand(Command):
    """rank the extractors for a dataset"""

    description = (
        "Embed a dataset (image folder, task .npz, or an embeddings file from `embed`) like "
        "the knowledge base's tasks, predict every extractor's score from the nearest known "
        "tasks, and print the ranking and those tasks. When the dataset is unlike every "
        "known task, LogME of each candidate's features of its images weighs in "
        "(HybridSelector). With your own zoo (--zoo FILE or --extractor NAME) and no "
        "--knowledge, the candidates are ranked by that transferability score alone; with "
        "--knowledge KB.npz as well, by the hybrid on that base.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        d = SELECTOR_DEFAULTS
        parser.add_argument("path", metavar="PATH")
        parser.add_argument("--knowledge", "-k", metavar="KB.npz",
                            help="knowledge base file, or 'experts' for the packaged expert-zoo "
                                 "base (default: the one shipped with t2v-automl)")
        parser.add_argument("--strategy", choices=STRATEGY_CHOICES,
                            help="how scores are predicted (default: ExtractorSelector's, "
                                 f"{d['strategy']!r})")
        parser.add_argument("--metric", choices=DISTANCE_CHOICES,
                            help="task distance (default: ExtractorSelector's, "
                                 f"{d['metric']!r})")
        parser.add_argument("--neighbors", type=count(1),
                            help="known tasks averaged by the 'nearest' strategy (default "
                                 f"{d['n_neighbors']})")
        parser.add_argument("--transferability", default="logme",
                            choices=[*TRANSFERABILITY_CHOICES, "none"],
                            help="score of the candidates' features computed on the "
                                 "dataset's images when it is unlike every known task "
                                 "(default logme; 'none': the knowledge base alone)")
        parser.add_argument("--candidates", metavar="A,B,...",
                            help="rank only these extractors (comma-separated)")
        add_zoo_options(parser, "rank")
        parser.add_argument("--input-size", type=count(1), default=64, metavar="PX",
                            help="input size of the resizable extractors for a zoo ranked "
                                 "without a knowledge base (default 64, the build's; with "
                                 "a knowledge base, its own)")
        parser.add_argument("--top", type=count(1), default=None, metavar="N",
                            help="show the first N only")
        parser.add_argument("--nearest", type=count(0), default=5, metavar="N",
                            help="nearest known tasks shown (default 5; 0: none)")
        parser.add_argument("--json", metavar="FILE", help="also write the result as JSON")
        add_input_options(parser)

    def run(self, args: argparse.Namespace, con: Console) -> int:
        if args.json:
            check_output(args.json, "--json")
        zoo = zoo_names(args)
        if zoo is not None and args.candidates:
            raise CLIInputError("--candidates and --zoo/--extractor both name the candidates; "
                                "give one of them.")
        if zoo is not None and not args.knowledge:
            return _rank_zoo(args, con, zoo)
        kb = load_kb(args.knowledge)
        label = kb_label(args.knowledge)
        check_probe(args, kb.meta, label)
        candidates = zoo or parse_names(args.candidates) or None
        if zoo is not None:
            unknown = [c for c in zoo if c not in kb.extractor_names]
            if unknown:
                raise UnknownNameError(
                    f"extractor(s) {unknown} of --zoo/--extractor are not in {label}, which "
                    f"knows {', '.join(kb.extractor_names)}; build a base over your zoo "
                    "(t2v-automl knowledge build OUT.npz --tasks DIR... --zoo FILE), or "
                    "leave --knowledge out to rank them by transferability alone.")
        check_candidates(candidates, kb.extractor_names)
        items = load_inputs([args.path], kb.meta.input_size, args.on_bad_image)
        check_made_like([it.embedding for it in items if it.embedding is not None],
                        kb.meta, label)
        hybrid = make_hybrid(args, kb)
        selector = hybrid.selector_
        con.say(f"knowledge: {label} ({len(kb)} tasks x {len(kb.extractor_names)} "
                f"extractors); selector: {selector.strategy}, {selector.metric} distance")
        report = []
        for it in items:
            t0 = time.perf_counter()
            if it.task is not None:
                ex = hybrid.explain([it.task])
            else:
                assert it.embedding is not None
                ex = hybrid.explain(None, embeddings=[it.embedding])
            seconds = time.perf_counter() - t0
            report.append(_show(args, con, kb, hybrid, it, ex, seconds, candidates))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
            con.say(f"\nwrote {args.json}")
        return EXIT_OK


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _show(args: argparse.Namespace, con: Console, kb: KnowledgeBase, hybrid: HybridSelector,
          it: Input, ex: HybridExplanation, seconds: float,
          candidates: list[str] | None) -> dict[str, Any]:
    """Print what ``ex`` (one task) says; return the task's JSON report."""
    from t2v_automl.knowledge import nearest_tasks

    measure = args.transferability
    screened = bool(ex.screened[0])
    novelty, domain_novelty = _finite(ex.novelty[0]), _finite(ex.domain_novelty[0])
    weight = float(ex.gate[0])
    evidence = None if ex.evidence_weight is None else _finite(ex.evidence_weight[0])
    transfer = ex.transfer_scores[0] if ex.transfer_computed[0] else None
    mix = (f"{measure} alone ranks" if evidence is None else
           f"{measure} (weight {evidence:.2f}, from the images per class) and the best on "
           f"average of the known tasks rank")
    t_transfer = float(ex.transfer_seconds[0].sum())
    t_rest = max(seconds - t_transfer, 0.0)
    spent = f"; {measure} {t_transfer:.1f} s" if transfer is not None else ""
    if screened:
        near_emb = ex.domain_embeddings[0]
        assert near_emb is not None
        near_metric = str(hybrid.screen_selector_.metric)  # type: ignore[union-attr]
        name = near_emb.task_name
        con.say(f"task {name!r}: its images are unlike every known task's (domain novelty "
                f"{domain_novelty:.2f} >= {hybrid.domain_screen:g}; domain pass "
                f"{t_rest:.1f} s{spent}): no Fisher embedding, {mix}")
    else:
        near_emb = ex.embeddings[0]
        assert near_emb is not None and novelty is not None
        near_metric = str(hybrid.selector_.metric)
        name = near_emb.task_name
        if it.task is not None:
            con.say(f"task {name!r}: {near_emb.meta.n_images or '?'} images embedded in "
                    f"{t_rest:.1f} s with {describe_meta(near_emb.meta)}")
        else:
            con.say(f"task {name!r}: embedding read from {it.path} "
                    f"({describe_meta(near_emb.meta)})")
        con.say(f"novelty {novelty:.2f} (distance to the nearest known task / the usual "
                f"distance between known neighbours"
                + (f"; domain novelty {domain_novelty:.2f}" if domain_novelty is not None
                   else "")
                + f"); weight of {measure} in the ranking: {weight:.2f}{spent}")
    rows = ranking_rows(ex.extractor_names, ex.scores[0], kb, candidates, args.top, transfer)
    con.out(f"\nRecommended extractor for {name}: {rows[0][1]}\n")
    show_ranking(con, rows, measure)
    near = nearest_tasks(kb, near_emb, near_metric, args.nearest) if args.nearest else []
    if near:
        kind = "domain embedding, " if screened else ""
        con.out(f"\nNearest known tasks ({kind}{near_metric} distance):")
        con.table(NEAREST_HEADERS, nearest_rows(near))
    return {"task": name, "novelty": novelty,
            **({"domain_novelty": domain_novelty} if domain_novelty is not None else {}),
            "transferability_weight": weight,
            **({"evidence_weight": evidence} if evidence is not None else {}),
            "ranking": [{"extractor": r[1], "predicted": r[2], "mean_known": r[3],
                         "tasks_best": r[4], **({measure: r[5]} if len(r) > 5 else {})}
                        for r in rows],
            "nearest": near}


def _rank_zoo(args: argparse.Namespace, con: Console, zoo: list[str]) -> int:
    """Rank the user's candidates by a transferability score alone (no knowledge base)."""
    from t2v_automl.estimators import TransferabilitySelector
    from t2v_automl.metrics import ranking_order

    measure = args.transferability
    if measure == "none":
        raise CLIInputError(
            "--transferability none leaves nothing to rank your zoo by without a knowledge "
            "base; choose a score (default logme) or give --knowledge KB.npz.")
    items = load_inputs([args.path], args.input_size, args.on_bad_image)
    if any(it.task is None for it in items):
        raise CLIInputError(
            f"{args.path!r} is an embeddings file; ranking a zoo without a knowledge base "
            "needs the images (an image folder or a .npz of images and labels).")
    device = "cpu" if args.device == "auto" else args.device
    sel = TransferabilitySelector(measure=measure, extractors=zoo, input_size=args.input_size,
                                  device=device, verbose=int(con.progress)).fit()
    con.say(f"no knowledge base: ranking {len(zoo)} candidate(s) by {measure} of their "
            f"features of each dataset's images ({args.input_size} px)")
    report = []
    for it in items:
        assert it.task is not None
        scores, seconds = sel.predict_scores([it.task], return_times=True)
        order = ranking_order(scores)[0][:args.top] if args.top else ranking_order(scores)[0]
        rows = [[r, sel.extractor_names_[j], float(scores[0, j]), float(seconds[0, j])]
                for r, j in enumerate(order, start=1)]
        con.out(f"\nRecommended extractor for {it.task.name}: {rows[0][1]}\n")
        con.table(["rank", "extractor", measure, "seconds"], rows)
        report.append({"task": it.task.name, "measure": measure,
                       "ranking": [{"extractor": r[1], measure: _finite(r[2]),
                                    "seconds": r[3]} for r in rows]})
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        con.say(f"\nwrote {args.json}")
    return EXIT_OK
