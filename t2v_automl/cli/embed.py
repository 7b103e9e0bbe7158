"""``t2v-automl embed``: Task2Vec embeddings of datasets -> ``.npz`` + ``.json``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from t2v_automl.cli._base import (
    EXIT_OK,
    Command,
    Console,
    add_embedder_options,
    add_input_options,
    check_output,
)
from t2v_automl.cli._shared import describe_meta, embed_inputs, load_inputs, unique_names


class EmbedCommand(Command):
    """Task2Vec embeddings of datasets -> .npz + .json"""

    description = ("Embed image folders (root/<class>/<image>) or .npz files holding 'images' "
                   "and 'labels'; write the embeddings (.npz, no pickle) and their metadata "
                   "(.json).")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--output", "-o", default="embeddings.npz", metavar="FILE.npz",
                            help="where to write (default embeddings.npz; the .json goes "
                                 "beside it): a regular file (a link to one is followed) or "
                                 "a new path")
        add_input_options(parser)
        add_embedder_options(parser)

    def run(self, args: argparse.Namespace, con: Console) -> int:
        from t2v_automl.knowledge import save_embeddings

        check_output(args.output, "--output", parents=True)
        check_output(str(Path(args.output).with_suffix(".json")), "the .json beside --output",
                     parents=True)
        items = load_inputs(args.paths, args.image_size or 64, args.on_bad_image)
        embs, times = embed_inputs(args, items)
        names = unique_names([e.task_name for e in embs])
        info = []
        for it, e, name, t in zip(items, embs, names, times, strict=True):
            d: dict[str, Any] = {"name": name, "path": str(Path(it.path).resolve()),
                                 "fingerprint": e.task_fingerprint,
                                 "n_images": e.meta.n_images, "embed_time_s": round(t, 3)}
            if it.task is not None:
                d.update(n_classes=it.task.n_classes,
                         classes=[str(c) for c in it.task.classes.tolist()])
            info.append(d)
        for e, n in zip(embs, names, strict=True):
            e.task_name = n
        npz, js = save_embeddings(args.output, embs, info)
        con.say(f"embedded {len(embs)} task(s) with {describe_meta(embs[0].meta)}")
        con.table(["task", "images", "classes", "seconds"],
                  [[d["name"], d["n_images"], d.get("n_classes", "-"), d["embed_time_s"]]
                   for d in info])
        con.say(f"wrote {npz} and {js}")
        return EXIT_OK
