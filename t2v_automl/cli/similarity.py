"""``t2v-automl similarity``: task-distance matrix (table) and a clustered heatmap (PNG)."""

from __future__ import annotations

import argparse
from pathlib import Path

from t2v_automl.cli._base import (
    DISTANCE_CHOICES,
    EXIT_OK,
    SELECTOR_DEFAULTS,
    CLIInputError,
    Command,
    Console,
    add_embedder_options,
    add_input_options,
    check_output,
)
from t2v_automl.cli._shared import describe_meta, embed_inputs, load_inputs, unique_names


class SimilarityCommand(Command):
    """distance matrix of several datasets (table + heatmap)"""

    description = ("Embed several datasets (or read an embeddings file) and print their "
                   "Task2Vec distance matrix; draw it as a clustered heatmap with a "
                   "dendrogram.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--metric", default=SELECTOR_DEFAULTS["metric"],
                            choices=DISTANCE_CHOICES)
        parser.add_argument("--figure", default="similarity.png", metavar="FILE.png",
                            help="heatmap file (default similarity.png; '' for none)")
        parser.add_argument("--map", metavar="FILE.png",
                            help="also draw a 2-D t-SNE map of the tasks")
        parser.add_argument("--csv", metavar="FILE.csv", help="also write the matrix as CSV")
        add_input_options(parser)
        add_embedder_options(parser)

    def run(self, args: argparse.Namespace, con: Console) -> int:
        import numpy as np

        from t2v_automl.distances import pairwise_distances

        for option, path in (("--figure", args.figure), ("--map", args.map),
                             ("--csv", args.csv)):
            if path:
                check_output(path, option)
        items = load_inputs(args.paths, args.image_size or 64, args.on_bad_image)
        if len(items) < 2:
            raise CLIInputError(
                f"similarity needs at least two datasets; got {len(items)}. Name several "
                "image folders, .npz tasks or an embeddings file with several tasks."
            )
        embs, _ = embed_inputs(args, items)
        names = unique_names([e.task_name for e in embs])
        D = pairwise_distances(embs, metric=args.metric)
        con.say(f"{len(embs)} tasks, {args.metric} distance, embeddings: "
                f"{describe_meta(embs[0].meta)}")
        con.table(["task", *names], [[n, *map(float, D[i])] for i, n in enumerate(names)])
        if args.csv:
            rows = [",".join(["task", *names])]
            rows += [",".join([n, *(f"{x:.6g}" for x in D[i])]) for i, n in enumerate(names)]
            Path(args.csv).write_text("\n".join(rows) + "\n")
            con.say(f"wrote {args.csv}")
        if args.figure:
            from t2v_automl.plotting import plot_similarity

            groups = [Path(it.path).name for it in items] if len(set(args.paths)) > 1 \
                else None
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
