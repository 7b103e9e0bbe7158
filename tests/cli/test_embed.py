"""``t2v-automl embed``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from t2v_automl.knowledge import load_embeddings


def test_embed_writes_embeddings_and_metadata(cli, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb" / "e.npz"
    res = cli.run("embed", "pair01", "task789.npz", "--output", str(out), *cli.fast, cwd=data)
    cli.ok(res)
    assert "embedded 2 task(s)" in res.stdout and "pair01" in res.stdout
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["format"] == "t2v-automl.embeddings"
    assert meta["meta"]["probe"] == "tiny_random" and meta["meta"]["input_size"] == 16
    assert [t["name"] for t in meta["tasks"]] == ["pair01", "task789"]
    assert meta["tasks"][0]["n_classes"] == 2 and meta["tasks"][1]["n_classes"] == 3
    with np.load(out, allow_pickle=False) as z:
        E = z["embeddings"]
        assert E.shape == (2, meta["meta"]["dim"]) and np.isfinite(E).all()
    embs = load_embeddings(out)
    assert embs is not None and [e.task_name for e in embs] == ["pair01", "task789"]
    assert len(embs[0].task_fingerprint) == 64


def test_embed_missing_folder(cli, data: Path) -> None:
    res = cli.run("embed", "no_such_folder", *cli.fast, cwd=data)
    cli.input_error(res, "no_such_folder", "does not exist")


def test_embed_folder_without_images(cli, data: Path) -> None:
    res = cli.run("embed", "empty", *cli.fast, cwd=data)
    cli.input_error(res, "no readable images", "empty")
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("t2v-automl: warning:")]
    assert len(warnings) == 1 and "skipped" in warnings[0] and "readme.txt" in warnings[0]
