"""``t2v-automl select``: one HybridSelector.explain call per input, printed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def test_select_ranks_extractors_and_shows_nearest_tasks(cli, kb_file: Path, data: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "sel.json"
    res = cli.run("select", "pair01", "--knowledge", str(kb_file), "--json", str(out),
                  cwd=data)
    cli.ok(res)
    assert "Recommended extractor for pair01:" in res.stdout
    assert "Nearest known tasks (hellinger distance)" in res.stdout
    assert "no Fisher embedding" not in res.stdout
    report = json.loads(out.read_text())[0]
    # evidence_weight only where a transferability score was computed
    assert set(report) - {"evidence_weight"} == {"task", "novelty", "domain_novelty",
                                                 "transferability_weight", "ranking",
                                                 "nearest"}
    assert {r["extractor"] for r in report["ranking"]} == {"raw_pixels", "mnist_cnn"}
    assert set(report["ranking"][0]) >= {"extractor", "predicted", "mean_known", "tasks_best"}
    preds = [r["predicted"] for r in report["ranking"]]
    assert preds == sorted(preds, reverse=True) and all(0 <= p <= 1 for p in preds)
    dists = [n["distance"] for n in report["nearest"]]
    assert len(dists) == 5 and dists == sorted(dists)
    assert all(n["task"].startswith("digits/") for n in report["nearest"])
    assert report["novelty"] >= 0 and 0 <= report["transferability_weight"] <= 1
    assert 0 <= report["domain_novelty"] < 4.0  # the build's domain set: the screen ran
    assert "novelty" in res.stdout and "images embedded in" in res.stdout


def test_select_screens_images_unlike_the_known_tasks(cli, kb_file: Path, data: Path,
                                                      stripes: Path, tmp_path: Path) -> None:
    out = tmp_path / "sel.json"
    res = cli.run("select", str(stripes), "-k", str(kb_file), "--json", str(out), cwd=data)
    cli.ok(res)
    assert "no Fisher embedding" in res.stdout and "domain novelty" in res.stdout
    assert "Nearest known tasks (domain embedding, normalized_cosine" in res.stdout
    report = json.loads(out.read_text())[0]
    assert report["novelty"] is None and report["domain_novelty"] >= 4.0
    assert report["transferability_weight"] == 1.0
    assert all("logme" in r for r in report["ranking"])
    assert "evidence_weight" not in report  # the default: no evidence blend
    logme = [r["logme"] for r in report["ranking"]]
    assert logme == sorted(logme, reverse=True)  # LogME alone ranks


def test_select_without_transferability(cli, kb_file: Path, stripes: Path, data: Path,
                                        tmp_path: Path) -> None:
    out = tmp_path / "sel.json"
    res = cli.run("select", str(stripes), "-k", str(kb_file), "--transferability", "none",
                  "--candidates", "mnist_cnn", "--json", str(out), cwd=data)
    cli.ok(res)
    report = json.loads(out.read_text())[0]
    assert "domain_novelty" not in report and report["novelty"] is not None
    assert report["transferability_weight"] == 0.0
    assert [r["extractor"] for r in report["ranking"]] == ["mnist_cnn"]
    assert all(set(r) == {"extractor", "predicted", "mean_known", "tasks_best"}
               for r in report["ranking"])


def test_select_from_an_embeddings_file(cli, kb_file: Path, data: Path,
                                        tmp_path: Path) -> None:
    emb = tmp_path / "e.npz"
    cli.ok(cli.run("embed", "pair01", "trio456", "-o", str(emb), *cli.fast, cwd=data))
    out = tmp_path / "sel.json"
    res = cli.run("select", str(emb), "-k", str(kb_file), "--top", "1", "--json", str(out),
                  cwd=data)
    cli.ok(res)
    assert "embedding read from" in res.stdout
    report = json.loads(out.read_text())
    assert [r["task"] for r in report] == ["pair01", "trio456"]
    assert all(len(r["ranking"]) == 1 and "domain_novelty" not in r for r in report)
    assert all(math.isfinite(r["novelty"]) for r in report)


def test_select_unknown_extractor(cli, kb_file: Path, data: Path) -> None:
    res = cli.run("select", "pair01", "-k", str(kb_file), "--candidates", "raw_pixels,nope",
                  cwd=data)
    cli.input_error(res, "unknown extractor", "nope")


def test_select_with_knowledge_base_of_another_probe(cli, kb_file: Path, data: Path,
                                                     tmp_path: Path) -> None:
    from t2v_automl.embedding import EmbeddingMeta
    from t2v_automl.knowledge import KnowledgeBase

    rng = np.random.default_rng(0)
    other = KnowledgeBase(
        EmbeddingMeta(probe="resnet18", weights_sha256="0" * 64, method="exact",
                      input_size=64, layers="stages[4:] conv (12 layers)", dim=40),
        task_names=["t1", "t2", "t3"], embeddings=rng.random((3, 40)),
        extractor_names=["raw_pixels", "mnist_cnn"], scores=rng.random((3, 2)))
    other.save(tmp_path / "other.npz")
    res = cli.run("select", "pair01", "-k", str(tmp_path / "other.npz"), "--probe",
                  "tiny_random", cwd=data)
    cli.input_error(res, "resnet18", "tiny_random")

    # an embeddings file made with other settings than the knowledge base's
    emb = tmp_path / "e24.npz"
    cli.ok(cli.run("embed", "pair01", "-o", str(emb), "--probe", "tiny_random",
                   "--image-size", "24", "--method", "montecarlo", "--max-images", "40",
                   cwd=data))
    res = cli.run("select", str(emb), "-k", str(kb_file), cwd=data)
    cli.input_error(res, "made differently", "input_size")


def test_verbose_shows_the_traceback(cli, kb_file: Path, data: Path) -> None:
    res = cli.run("select", "pair01", "-k", str(kb_file), "--candidates", "nope", "-v",
                  cwd=data)
    assert res.returncode == 3
    assert "Traceback" in res.stderr and "UnknownNameError" in res.stderr


def test_select_ranks_your_zoo_without_a_knowledge_base(cli, data: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "zoo.json"
    res = cli.run("select", "pair01", "--extractor", "raw_pixels", "--extractor",
                  "mnist_cnn", "--json", str(out), cwd=data)
    cli.ok(res)
    assert "no knowledge base: ranking 2 candidate(s) by logme" in res.stdout
    assert "Recommended extractor for pair01:" in res.stdout
    assert "Nearest known tasks" not in res.stdout
    report = json.loads(out.read_text())[0]
    assert report["task"] == "pair01" and report["measure"] == "logme"
    assert {r["extractor"] for r in report["ranking"]} == {"raw_pixels", "mnist_cnn"}
    logme = [r["logme"] for r in report["ranking"]]
    assert logme == sorted(logme, reverse=True)


def test_select_your_zoo_on_a_knowledge_base(cli, kb_file: Path, data: Path,
                                             tmp_path: Path) -> None:
    out = tmp_path / "sel.json"
    res = cli.run("select", "pair01", "-k", str(kb_file), "--extractor", "mnist_cnn",
                  "--json", str(out), cwd=data)
    cli.ok(res)
    report = json.loads(out.read_text())[0]
    assert [r["extractor"] for r in report["ranking"]] == ["mnist_cnn"]
    assert "novelty" in report  # the hybrid ran
    res = cli.run("select", "pair01", "-k", str(kb_file), "--extractor", "svhn_cnn",
                  cwd=data)
    cli.input_error(res, "svhn_cnn", "not in", "leave --knowledge out")


def test_select_zoo_options_bad_input(cli, data: Path, tmp_path: Path) -> None:
    res = cli.run("select", "pair01", "--extractor", "raw_pixels", "--candidates",
                  "raw_pixels", cwd=data)
    cli.input_error(res, "--candidates", "give one of them")
    res = cli.run("select", "pair01", "--extractor", "raw_pixels", "--transferability",
                  "none", cwd=data)
    cli.input_error(res, "nothing to rank")
    res = cli.run("select", "pair01", "--zoo", str(tmp_path / "missing.toml"), cwd=data)
    cli.input_error(res, "missing.toml")


def test_select_reads_a_zoo_file(cli, data: Path, tmp_path: Path) -> None:
    import t2v_automl.extractors as extractors

    zoo = tmp_path / "zoo.json"
    zoo.write_text(json.dumps({"extractors": ["raw_pixels", "mnist_cnn"]}))
    res = cli.run("select", "pair01", "--zoo", str(zoo), cwd=data)
    if not hasattr(extractors, "read_zoo"):
        cli.input_error(res, "--extractor NAME")
        return
    cli.ok(res)
    assert "ranking 2 candidate(s) by logme" in res.stdout
