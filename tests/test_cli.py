"""End-to-end tests of the ``t2v-automl`` command, through the real entry point.

Every sub-command runs in a subprocess (``python -m t2v_automl.cli``, and the installed
``t2v-automl`` script once) on small real data: scikit-learn digits written as image
folders and ``.npz`` files, embedded with the ``tiny_random`` probe at 16 px so that the
whole module stays light on a shared CPU. The demo with the real pre-trained probe is
marked ``slow``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t2v_automl.cli import build_parser, format_table, main, read_embeddings

#: Options that make the tiny probe fast (the knowledge base built below uses them too).
FAST = ["--probe", "tiny_random", "--image-size", "16", "--method", "montecarlo",
        "--max-images", "40"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONWARNINGS="ignore::DeprecationWarning")
    return env


def run_cli(*args: str, cwd: Path, script: str | None = None,
            timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run the command in a subprocess and return its result (text output)."""
    cmd = [script] if script else [sys.executable, "-m", "t2v_automl.cli"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=_env(), check=False)


def assert_ok(res: subprocess.CompletedProcess[str]) -> None:
    assert res.returncode == 0, \
        f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"


def assert_input_error(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit code 3, exactly one error line, no traceback; return the error line."""
    assert res.returncode == 3, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    assert "Traceback" not in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("t2v-automl: error: ")]
    assert len(errors) == 1, res.stderr
    others = [ln for ln in res.stderr.splitlines()
              if ln.strip() and not ln.startswith("t2v-automl: ")]
    assert not others, res.stderr
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


# ----------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits as image folders (pair01, pair23, trio456), a task .npz and an empty folder."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("cli-data")
    d = load_digits()
    rng = np.random.default_rng(0)
    for name, classes in (("pair01", (0, 1)), ("pair23", (2, 3)), ("trio456", (4, 5, 6))):
        for c in classes:
            folder = root / name / f"digit{c}"
            folder.mkdir(parents=True)
            for i in rng.choice(np.flatnonzero(d.target == c), 12, replace=False):
                img = (d.images[i] * 255 / 16).astype(np.uint8)
                Image.fromarray(img).resize((16, 16)).save(folder / f"{i}.png")
    idx = np.flatnonzero(d.target >= 7)[:60]
    np.savez(root / "task789.npz", images=(d.images[idx] / 16).astype(np.float32),
             labels=d.target[idx])
    (root / "empty" / "cats").mkdir(parents=True)
    (root / "empty" / "cats" / "readme.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def kb_file(data: Path) -> Path:
    """``knowledge build`` (built-in path) over 6 tasks of the mini suite, 2 extractors."""
    res = run_cli("knowledge", "build", "kb.npz", "--suite", "mini", "--limit", "6",
                  "--extractors", "raw_pixels,mnist_cnn", *FAST, cwd=data)
    assert_ok(res)
    assert "wrote kb.npz: 6 tasks x 2 extractors" in res.stdout
    return data / "kb.npz"


# ----------------------------------------------------------------------------- in-process
def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = [["demo"], ["embed"], ["select"], ["similarity"], ["knowledge"],
                ["knowledge", "build"], ["knowledge", "info"], ["knowledge", "add"], ["bench"]]
    for cmd in [[], *commands]:
        with pytest.raises(SystemExit) as exc:
            main([*cmd, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: t2v-automl")
        assert "--verbose" in out and "--device" in out


def test_global_options_before_or_after_the_command() -> None:
    parser = build_parser()
    a = parser.parse_args(["--probe", "tiny_random", "-q", "embed", "x"])
    b = parser.parse_args(["embed", "x", "--probe", "tiny_random", "-q"])
    assert a.probe == b.probe == "tiny_random" and a.quiet and b.quiet


def test_format_table_aligns_numbers() -> None:
    text = format_table(["name", "score"], [["a", 0.5], ["long name", 0.25]])
    lines = text.splitlines()
    assert lines[0].startswith("name") and len({len(ln) for ln in lines}) == 1
    assert lines[2].endswith("0.5000") and lines[3].endswith("0.2500")


# ----------------------------------------------------------------------------- usage errors
def test_usage_error_exits_2(data: Path) -> None:
    res = run_cli("select", cwd=data)  # PATH missing
    assert res.returncode == 2
    assert "t2v-automl select: error:" in res.stderr and "Traceback" not in res.stderr


# ----------------------------------------------------------------------------- embed
def test_embed_writes_embeddings_and_metadata(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb" / "e.npz"
    res = run_cli("embed", "pair01", "task789.npz", "--output", str(out), *FAST, cwd=data)
    assert_ok(res)
    assert "embedded 2 task(s)" in res.stdout and "pair01" in res.stdout
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["format"] == "t2v-automl.embeddings"
    assert meta["meta"]["probe"] == "tiny_random" and meta["meta"]["input_size"] == 16
    assert [t["name"] for t in meta["tasks"]] == ["pair01", "task789"]
    assert meta["tasks"][0]["n_classes"] == 2 and meta["tasks"][1]["n_classes"] == 3
    with np.load(out, allow_pickle=False) as z:
        E = z["embeddings"]
        assert E.shape == (2, meta["meta"]["dim"]) and np.isfinite(E).all()
    embs = read_embeddings(out)
    assert embs is not None and [e.task_name for e in embs] == ["pair01", "task789"]
    assert len(embs[0].task_fingerprint) == 64


def test_embed_missing_folder(data: Path) -> None:
    res = run_cli("embed", "no_such_folder", *FAST, cwd=data)
    assert_input_error(res, "no_such_folder", "does not exist")


def test_embed_folder_without_images(data: Path) -> None:
    res = run_cli("embed", "empty", *FAST, cwd=data)
    assert_input_error(res, "no readable images", "empty")
    assert "t2v-automl: warning: skipped 1" in res.stderr  # the non-image file, one line


# ----------------------------------------------------------------------------- knowledge
def test_knowledge_info_through_installed_script(kb_file: Path) -> None:
    scripts = Path(sysconfig.get_path("scripts")) / "t2v-automl"
    script = str(scripts) if scripts.is_file() else shutil.which("t2v-automl")
    if script is None:
        pytest.skip("the t2v-automl script is not installed (pip install -e .)")
    res = run_cli("knowledge", "info", str(kb_file), "--tasks", cwd=kb_file.parent,
                  script=script)
    assert_ok(res)
    assert "tasks: 6; extractors: 2; measured scores: 12/12" in res.stdout
    assert "probe 'tiny_random'" in res.stdout and "method 'montecarlo'" in res.stdout
    assert "raw_pixels" in res.stdout and "mnist_cnn" in res.stdout
    assert "digits/subset/0-vs-6" in res.stdout  # --tasks lists them


def test_knowledge_add_and_its_errors(kb_file: Path, data: Path, tmp_path: Path) -> None:
    from t2v_automl.knowledge import KnowledgeBase

    kb = tmp_path / "kb.npz"
    shutil.copy(kb_file, kb)
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"scores": {"raw_pixels": 0.9, "mnist_cnn": 0.8},
                                  "stderr": {"raw_pixels": 0.02}}))
    res = run_cli("knowledge", "add", str(kb), "pair23", "--scores", str(scores),
                  "--name", "my-digits", cwd=data)
    assert_ok(res)
    assert "now 7 tasks x 2 extractors" in res.stdout
    loaded = KnowledgeBase.load(kb)
    i = loaded.index("my-digits")
    assert loaded.scores[i].tolist() == [0.9, 0.8]
    assert loaded.provenance[i]["n_classes"] == 2
    assert loaded.meta.compat_key() == KnowledgeBase.load(kb_file).meta.compat_key()

    scores.write_text(json.dumps({"raw_pixels": 0.9, "no_such_net": 0.5}))
    res = run_cli("knowledge", "add", str(kb), "trio456", "--scores", str(scores), cwd=data)
    assert_input_error(res, "unknown extractor", "no_such_net")
    res = run_cli("knowledge", "add", str(kb), "trio456", "--scores", "missing.json",
                  cwd=data)
    assert_input_error(res, "missing.json", "does not exist")
    assert len(KnowledgeBase.load(kb)) == 7  # the failed adds changed nothing


def test_knowledge_build_unknown_extractor(data: Path, tmp_path: Path) -> None:
    res = run_cli("knowledge", "build", str(tmp_path / "x.npz"), "--suite", "mini",
                  "--extractors", "raw_pixels,no_such_net", *FAST, cwd=data)
    assert_input_error(res, "unknown extractor", "no_such_net")
    assert not (tmp_path / "x.npz").exists()


# ----------------------------------------------------------------------------- select
def test_select_ranks_extractors_and_shows_nearest_tasks(kb_file: Path, data: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "sel.json"
    res = run_cli("select", "pair01", "--knowledge", str(kb_file), "--json", str(out),
                  cwd=data)
    assert_ok(res)
    assert "Recommended extractor for pair01:" in res.stdout
    assert "Nearest known tasks" in res.stdout
    report = json.loads(out.read_text())[0]
    assert {r["extractor"] for r in report["ranking"]} == {"raw_pixels", "mnist_cnn"}
    preds = [r["predicted"] for r in report["ranking"]]
    assert preds == sorted(preds, reverse=True) and all(0 <= p <= 1 for p in preds)
    dists = [n["distance"] for n in report["nearest"]]
    assert len(dists) == 5 and dists == sorted(dists)
    assert all(n["task"].startswith("digits/") for n in report["nearest"])
    assert report["novelty"] >= 0 and 0 <= report["transferability_weight"] <= 1
    assert "novelty" in res.stdout


def test_select_unknown_extractor(kb_file: Path, data: Path) -> None:
    res = run_cli("select", "pair01", "-k", str(kb_file), "--candidates", "raw_pixels,nope",
                  cwd=data)
    assert_input_error(res, "unknown extractor", "nope")


def test_select_with_knowledge_base_of_another_probe(kb_file: Path, data: Path,
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
    res = run_cli("select", "pair01", "-k", str(tmp_path / "other.npz"), "--probe",
                  "tiny_random", cwd=data)
    assert_input_error(res, "resnet18", "tiny_random")

    # an embeddings file made with other settings than the knowledge base's
    emb = tmp_path / "e32.npz"
    assert_ok(run_cli("embed", "pair01", "-o", str(emb), "--probe", "tiny_random",
                      "--image-size", "24", "--method", "montecarlo", "--max-images", "40",
                      cwd=data))
    res = run_cli("select", str(emb), "-k", str(kb_file), cwd=data)
    assert_input_error(res, "made differently", "input_size")


def test_verbose_shows_the_traceback(kb_file: Path, data: Path) -> None:
    res = run_cli("select", "pair01", "-k", str(kb_file), "--candidates", "nope", "-v",
                  cwd=data)
    assert res.returncode == 3
    assert "Traceback" in res.stderr and "UnknownNameError" in res.stderr


# ----------------------------------------------------------------------------- similarity
def test_similarity_table_figure_map_and_csv(data: Path, tmp_path: Path) -> None:
    fig, tsne, csv = tmp_path / "sim.png", tmp_path / "map.png", tmp_path / "d.csv"
    res = run_cli("similarity", "pair01", "pair23", "trio456", "task789.npz", *FAST,
                  "--figure", str(fig), "--map", str(tsne), "--csv", str(csv), cwd=data)
    assert_ok(res)
    assert "4 tasks, hellinger distance" in res.stdout
    assert png_size(fig) == (600, 500)
    assert png_size(tsne) == (700, 600)
    rows = [ln.split(",") for ln in csv.read_text().splitlines()]
    assert rows[0] == ["task", "pair01", "pair23", "trio456", "task789"]
    D = np.array([[float(x) for x in r[1:]] for r in rows[1:]])
    assert D.shape == (4, 4) and np.allclose(np.diag(D), 0.0) and np.allclose(D, D.T)
    assert (D[~np.eye(4, dtype=bool)] > 0).all()


def test_similarity_needs_two_datasets(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["similarity", str(data / "pair01"), *FAST, "--figure", ""]) == 3
    err = capsys.readouterr().err
    assert err.startswith("t2v-automl: error: similarity needs at least two datasets")
    assert len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- bench
def test_bench_lists_runs_and_prints_tables(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "bench_hello.py").write_text(
        "import sys\nfrom pathlib import Path\n"
        "quick = '--quick' in sys.argv\n"
        "out = Path(__file__).parent / 'results'\nout.mkdir(exist_ok=True)\n"
        "(out / 'hello.md').write_text('| quick | value |\\n|---|---|\\n| %s | 42 |\\n' % quick)\n"
        "print('measured')\n"
        "# accepts \"--quick\"\n")
    assert main(["bench", "--dir", str(bench), "--list"]) == 0
    out = capsys.readouterr().out
    assert "hello" in out and "(none yet)" in out
    assert main(["bench", "nope", "--dir", str(bench)]) == 3
    assert "unknown benchmark(s) ['nope']; known: hello" in capsys.readouterr().err
    res = run_cli("bench", "hello", "--dir", str(bench), "--run", "--quick", cwd=tmp_path)
    assert_ok(res)
    assert "| True | 42 |" in res.stdout and "measured" not in res.stdout
    assert "measured" in res.stderr  # the script's own output goes to stderr


# ----------------------------------------------------------------------------- demo
def test_demo_with_a_small_knowledge_base(kb_file: Path, tmp_path: Path) -> None:
    """The whole demo (selection, warm start, SQLite study, figures) with the tiny probe."""
    out = tmp_path / "demo"
    res = run_cli("demo", "--out", str(out), "--knowledge", str(kb_file), "--dataset",
                  "digits", "--trials", "3", "--top-k", "2",
                  "--extractors", "raw_pixels,mnist_cnn,usps_cnn", cwd=tmp_path)
    assert_ok(res)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["probe"]["name"] == "tiny_random"
    assert summary["task"]["n_train"] == 75
    ranking = summary["ranking"]
    assert set(ranking) == {"raw_pixels", "mnist_cnn"}
    trials = summary["study"]["trials"]
    assert len(trials) == 3
    # the warm start enqueued the top 2 of the ranking as the first trials
    assert [t["extractor"] for t in trials[:2]] == ranking[:2]
    assert [t["from"] for t in trials[:2]] == ["warm start"] * 2
    with sqlite3.connect(out / "study.db") as con:
        n = con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    assert n == 3
    assert png_size(out / "best_so_far.png") == (700, 450)
    assert png_size(out / "task_map.png") == (700, 600)
    assert len(list((out / "demo_task").glob("*/*.png"))) == 75
    # the written image folder is a dataset the other commands take
    res = run_cli("select", str(out / "demo_task"), "-k", str(kb_file), "--top", "1",
                  cwd=tmp_path)
    assert_ok(res)


@pytest.mark.slow
def test_demo_with_the_real_probe(tmp_path: Path) -> None:
    """The README's main job: real pre-trained MobileNetV2, default knowledge base."""
    out = tmp_path / "demo"
    res = run_cli("demo", "--out", str(out), "--trials", "6", cwd=tmp_path, timeout=900)
    assert_ok(res)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["probe"]["name"] == "mobilenet_v2" and summary["probe"]["pretrained"]
    assert summary["probe"]["weights_sha256"].startswith("b0353104")
    assert summary["embedding"]["dim"] > 1000
    assert len(summary["study"]["trials"]) == 6
    assert 0.0 <= summary["study"]["best"]["accuracy"] <= 1.0
    assert (out / "study.db").is_file() and png_size(out / "best_so_far.png") == (700, 450)
    if "ranking" in summary:  # once the default knowledge base is installed
        assert (out / "task_map.png").is_file()
        assert summary["study"]["trials"][0]["from"] == "warm start"
    else:
        assert "no knowledge base yet" in res.stderr
    assert "Traceback" not in res.stderr


def _with_domain_set(kb_file: Path, out: Path) -> Path:
    """The test knowledge base plus the domain embeddings of its tasks."""
    from t2v_automl.estimators import Task2VecEmbedder
    from t2v_automl.estimators._embedder import embedder_params_from_meta
    from t2v_automl.knowledge import KnowledgeBase
    from t2v_automl.suites import iter_suite

    kb = KnowledgeBase.load(kb_file)
    emb = Task2VecEmbedder(**{**embedder_params_from_meta(kb.meta), "method": "domain"}).fit()
    settings = kb.provenance[0]
    suite = {st.name: st for st in iter_suite(settings.get("suite", "mini"),
                                              int(settings.get("seed", 0)))}
    for name in kb.task_names:
        i = kb.index(name)
        scores = {e: float(s) for e, s in zip(kb.extractor_names, kb.scores[i], strict=True)}
        kb.add(name, kb.embeddings[i], scores, provenance=kb.provenance[i],
               extra_embeddings={"domain": emb.embed([suite[name].train])[0]},
               overwrite=True)
    kb.save(out)
    return out


def _stripes_folder(root: Path) -> Path:
    """Horizontal vs vertical stripes: images unlike the digits of the test base."""
    rng = np.random.default_rng(1)
    x = np.arange(16, dtype=np.float64)
    for axis, cls in ((0, "across"), (1, "down")):
        folder = root / "stripes" / cls
        folder.mkdir(parents=True)
        for i in range(12):
            wave = np.sin(rng.uniform(0.5, 1.5) * (x[:, None] if axis else x[None, :])
                          + rng.uniform(0, 6)) * np.ones((16, 16))
            img = np.stack([(wave + 1) * 127, 255 - (wave + 1) * 127, np.full((16, 16), 90)],
                           axis=-1)
            Image.fromarray(img.astype(np.uint8)).save(folder / f"{i}.png")
    return root / "stripes"


def test_select_screens_images_unlike_the_known_tasks(kb_file: Path, data: Path,
                                                      tmp_path: Path) -> None:
    kb2 = _with_domain_set(kb_file, tmp_path / "kb_domain.npz")
    stripes = _stripes_folder(tmp_path)
    out = tmp_path / "sel.json"
    res = run_cli("select", str(stripes), "-k", str(kb2), "--json", str(out), cwd=data)
    assert_ok(res)
    assert "no Fisher embedding" in res.stdout and "domain novelty" in res.stdout
    assert "Nearest known tasks (domain embedding" in res.stdout
    report = json.loads(out.read_text())[0]
    assert report["novelty"] is None and report["domain_novelty"] >= 4.0
    assert report["transferability_weight"] == 1.0
    assert all("logme" in r for r in report["ranking"])
    # a digits task like the known ones still gets its Fisher embedding
    res = run_cli("select", "pair01", "-k", str(kb2), "--json", str(out), cwd=data)
    assert_ok(res)
    assert "no Fisher embedding" not in res.stdout
    near = json.loads(out.read_text())[0]
    assert near["novelty"] is not None and 0 <= near["domain_novelty"] < 4.0
    assert near["domain_novelty"] < report["domain_novelty"]
