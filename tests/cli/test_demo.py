"""``t2v-automl demo``: the whole job (the real pre-trained probe is marked slow)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest


def test_demo_with_a_small_knowledge_base(cli, kb_file: Path, tmp_path: Path) -> None:
    """The whole demo (selection, warm start, SQLite study, figures) with the tiny probe."""
    out = tmp_path / "demo"
    res = cli.run("demo", "--out", str(out), "--knowledge", str(kb_file), "--dataset",
                  "digits", "--trials", "3", "--top-k", "2",
                  "--extractors", "raw_pixels,mnist_cnn,usps_cnn", cwd=tmp_path)
    cli.ok(res)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["probe"]["name"] == "tiny_random"
    assert summary["task"]["n_train"] == 75
    ranking = summary["ranking"]
    assert set(ranking) == {"raw_pixels", "mnist_cnn"}
    assert summary["novelty"] >= 0
    trials = summary["study"]["trials"]
    assert len(trials) == 3
    # the warm start enqueued the top 2 of the ranking as the first trials
    assert [t["extractor"] for t in trials[:2]] == ranking[:2]
    assert [t["from"] for t in trials[:2]] == ["warm start"] * 2
    with sqlite3.connect(out / "study.db") as con:
        n = con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    assert n == 3
    assert cli.png_size(out / "best_so_far.png") == (700, 450)
    assert cli.png_size(out / "task_map.png") == (700, 600)
    assert len(list((out / "demo_task").glob("*/*.png"))) == 75
    # the written image folder is a dataset the other commands take
    res = cli.run("select", str(out / "demo_task"), "-k", str(kb_file), "--top", "1",
                  cwd=tmp_path)
    cli.ok(res)


@pytest.mark.slow
def test_demo_with_the_real_probe(cli, tmp_path: Path) -> None:
    """The README's main job: real pre-trained MobileNetV2, default knowledge base."""
    out = tmp_path / "demo"
    res = cli.run("demo", "--out", str(out), "--trials", "6", cwd=tmp_path, timeout=900)
    cli.ok(res)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["probe"]["name"] == "mobilenet_v2" and summary["probe"]["pretrained"]
    assert summary["probe"]["weights_sha256"].startswith("b0353104")
    assert summary["embedding"]["dim"] > 1000
    assert len(summary["study"]["trials"]) == 6
    assert 0.0 <= summary["study"]["best"]["accuracy"] <= 1.0
    assert (out / "study.db").is_file() and cli.png_size(out / "best_so_far.png") == (700, 450)
    if "ranking" in summary:  # once the default knowledge base is installed
        assert (out / "task_map.png").is_file()
        assert summary["study"]["trials"][0]["from"] == "warm start"
    else:
        assert "no knowledge base yet" in res.stderr
    assert "Traceback" not in res.stderr
