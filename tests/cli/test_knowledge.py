"""``t2v-automl knowledge info|add|build``."""

from __future__ import annotations

import json
import shutil
import sysconfig
from pathlib import Path

import pytest


def test_build_uses_the_library_build(kb_file: Path) -> None:
    from t2v_automl.knowledge import KnowledgeBase

    kb = KnowledgeBase.load(kb_file)
    assert kb.extractor_names == ["raw_pixels", "mnist_cnn"]
    assert set(kb.extra_names) == {"domain", "label_stat", "montecarlo_full"}
    assert kb.provenance[0]["evaluation"]["input_size"] == 64


def test_knowledge_info_through_installed_script(cli, kb_file: Path) -> None:
    scripts = Path(sysconfig.get_path("scripts")) / "t2v-automl"
    script = str(scripts) if scripts.is_file() else shutil.which("t2v-automl")
    if script is None:
        pytest.skip("the t2v-automl script is not installed (pip install -e .)")
    res = cli.run("knowledge", "info", str(kb_file), "--tasks", cwd=kb_file.parent,
                  script=script)
    cli.ok(res)
    assert "tasks: 6; extractors: 2; measured scores: 12/12" in res.stdout
    assert "probe 'tiny_random'" in res.stdout and "method 'montecarlo'" in res.stdout
    assert "raw_pixels" in res.stdout and "mnist_cnn" in res.stdout
    assert "extra embedding sets: domain" in res.stdout
    assert "digits/subset/0-vs-6" in res.stdout  # --tasks lists them


def test_knowledge_add_and_its_errors(cli, kb_file: Path, data: Path, tmp_path: Path) -> None:
    from t2v_automl.knowledge import KnowledgeBase

    kb = tmp_path / "kb.npz"
    shutil.copy(kb_file, kb)
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"scores": {"raw_pixels": 0.9, "mnist_cnn": 0.8},
                                  "stderr": {"raw_pixels": 0.02}}))
    res = cli.run("knowledge", "add", str(kb), "pair23", "--scores", str(scores),
                  "--name", "my-digits", cwd=data)
    cli.ok(res)
    assert "now 7 tasks x 2 extractors" in res.stdout
    loaded = KnowledgeBase.load(kb)
    i = loaded.index("my-digits")
    assert loaded.scores[i].tolist() == [0.9, 0.8]
    assert loaded.provenance[i]["n_classes"] == 2 and loaded.provenance[i]["source"] == "cli"
    assert loaded.meta.compat_key() == KnowledgeBase.load(kb_file).meta.compat_key()

    scores.write_text(json.dumps({"raw_pixels": 0.9, "no_such_net": 0.5}))
    res = cli.run("knowledge", "add", str(kb), "trio456", "--scores", str(scores), cwd=data)
    cli.input_error(res, "unknown extractor", "no_such_net")
    res = cli.run("knowledge", "add", str(kb), "trio456", "--scores", "missing.json",
                  cwd=data)
    cli.input_error(res, "missing.json", "does not exist")
    assert len(KnowledgeBase.load(kb)) == 7  # the failed adds changed nothing


def test_knowledge_build_errors(cli, data: Path, tmp_path: Path) -> None:
    res = cli.run("knowledge", "build", str(tmp_path / "x.npz"), "--suite", "mini",
                  "--extractors", "raw_pixels,no_such_net", *cli.fast, cwd=data)
    cli.input_error(res, "unknown extractor", "no_such_net")
    res = cli.run("knowledge", "build", str(tmp_path / "x.npz"), "--suite", "mini",
                  "--extra", "domain,nope", *cli.fast, cwd=data)
    cli.input_error(res, "unknown extra embedding set", "nope")
    assert not (tmp_path / "x.npz").exists()


def test_knowledge_build_never_touches_benchmarks() -> None:
    import t2v_automl.cli.knowledge as module

    source = Path(module.__file__).read_text()
    assert "importlib" not in source and "build_knowledge.py" not in source


def test_knowledge_info_of_the_packaged_expert_base(cli, tmp_path: Path) -> None:
    from t2v_automl.knowledge import PACKAGED_KNOWLEDGE

    packaged = Path(__file__).resolve().parents[2] / "t2v_automl" / "data" / \
        PACKAGED_KNOWLEDGE["experts"]
    if not packaged.is_file():
        pytest.skip("this checkout has no packaged expert base")
    res = cli.run("knowledge", "info", "experts", cwd=tmp_path)
    cli.ok(res)
    assert "tasks: 153; extractors: 35" in res.stdout
    assert "expert-wesnoth-pose" in res.stdout
    bad = cli.run("knowledge", "info", "expertz", cwd=tmp_path)
    assert bad.returncode != 0 and "expertz" in bad.stderr
