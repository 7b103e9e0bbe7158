"""``t2v-automl knowledge build OUT --tasks DIR...`` → ``select --knowledge`` → resume a kill.

The tasks are tiny folders of PNGs written here (3 tasks, 2-3 classes, 8 images of
20 px each, one of them laid out as ``train/`` and ``test/``); the extractors are
``raw_pixels`` and ``mnist_cnn`` and the probe the fast ``tiny_random`` (``cli.fast``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXTRACTORS = ("--extractor", "raw_pixels", "--extractor", "mnist_cnn")

#: Runs ``t2v-automl`` in this process with ``evaluate_extractor`` counted (the count is
#: written to argv[1] at exit) and, when argv[2] > 0, the process killed (SIGKILL, no
#: cleanup) as that call starts: a build killed after argv[2] - 1 cached evaluations.
COUNTING_MAIN = """
import atexit, os, signal, sys
import t2v_automl.evaluation as ev
count_file, kill_at = sys.argv[1], int(sys.argv[2])
original, calls = ev.evaluate_extractor, [0]
def counted(*args, **kwargs):
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
ev.evaluate_extractor = counted
atexit.register(lambda: open(count_file, "w").write(str(calls[0])))
from t2v_automl.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _write_class(folder: Path, pattern: int, n: int, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        base = np.zeros((20, 20, 3))
        if pattern == 0:
            base[:10] = 1
        elif pattern == 1:
            base[:, :10] = 1
        else:
            base[::3] = 1
        img = np.clip(base * 200 + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tasks/`` holding ``bars`` and ``grid`` (class folders) and ``split`` (train/test)."""
    root = tmp_path_factory.mktemp("folders") / "tasks"
    rng = np.random.default_rng(0)
    for c, k in (("across", 0), ("down", 1)):
        _write_class(root / "bars" / c, k, 8, rng)
    for c, k in (("across", 0), ("lines", 2), ("down", 1)):
        _write_class(root / "grid" / c, k, 8, rng)
    for split, n in (("train", 8), ("test", 4)):
        for c, k in (("lines", 2), ("down", 1)):
            _write_class(root / "split" / split / c, k, n, rng)
    return root


def _counting_run(cli, count_file: Path, kill_at: int, *args: str, cwd: Path
                  ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", COUNTING_MAIN, str(count_file),
                           str(kill_at), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=cli.env(), check=False)


def test_build_from_folders_select_and_resume_after_a_kill(cli, tasks: Path,
                                                           tmp_path: Path) -> None:
    from t2v_automl.knowledge import KnowledgeBase

    build = ("knowledge", "build", "my_kb.npz", "--tasks", str(tasks), *EXTRACTORS,
             *cli.fast)
    # an uninterrupted build, without a cache: the reference
    res = cli.run("knowledge", "build", "ref.npz", "--tasks", str(tasks / "bars"),
                  str(tasks / "grid"), str(tasks / "split"), *EXTRACTORS, "--no-cache",
                  *cli.fast, cwd=tmp_path)
    cli.ok(res)
    assert "wrote ref.npz: 3 tasks x 2 extractors" in res.stdout
    assert not (tmp_path / "ref.npz.cache").exists()
    ref = KnowledgeBase.load(tmp_path / "ref.npz")

    # killed as the 4th of the 6 evaluations starts: 3 are in OUT.cache, no OUT at all
    count = tmp_path / "count.txt"
    res = _counting_run(cli, count, 4, *build, cwd=tmp_path)
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert not (tmp_path / "my_kb.npz").exists()
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".my_kb*"))
    assert (tmp_path / "my_kb.npz.cache").is_dir()

    # run again: only the 3 missing evaluations are computed, and the base is the same
    res = _counting_run(cli, count, 0, *build, cwd=tmp_path)
    cli.ok(res)
    assert count.read_text() == "3"
    assert "cache: my_kb.npz.cache" in res.stdout
    kb = KnowledgeBase.load(tmp_path / "my_kb.npz")
    assert kb.task_names == ref.task_names == ["bars", "grid", "split"]
    assert kb.extractor_names == ["raw_pixels", "mnist_cnn"]
    np.testing.assert_array_equal(kb.scores, ref.scores)
    np.testing.assert_array_equal(kb.stderr, ref.stderr)
    np.testing.assert_array_equal(kb.embeddings, ref.embeddings)
    assert kb.extra_names == ["domain"]  # the hybrid's screen works on this base
    np.testing.assert_array_equal(kb.extra_embeddings("domain")[1],
                                  ref.extra_embeddings("domain")[1])
    p = {t: kb.provenance[kb.index(t)] for t in kb.task_names}
    assert p["bars"]["path"] == str((tasks / "bars").resolve())
    assert p["bars"]["split"] == {"test_fraction": 0.25, "seed": 0}
    assert p["bars"]["n_train"] == 12 and p["bars"]["n_test"] == 4
    assert p["split"]["split"] == "folders" and p["split"]["n_test"] == 8
    assert p["grid"]["classes"] == ["across", "down", "lines"]

    # a third run computes nothing
    res = _counting_run(cli, count, 0, *build, cwd=tmp_path)
    cli.ok(res)
    assert count.read_text() == "0"

    # the hybrid runs on the new base, the domain screen included
    out = tmp_path / "sel.json"
    res = cli.run("select", str(tasks / "grid"), "--knowledge", "my_kb.npz", "--json",
                  str(out), cwd=tmp_path)
    cli.ok(res)
    assert "Recommended extractor for grid:" in res.stdout
    import json

    report = json.loads(out.read_text())[0]
    assert "domain_novelty" in report
    assert {r["extractor"] for r in report["ranking"]} == {"raw_pixels", "mnist_cnn"}
    assert report["nearest"][0]["task"] == "grid"


def test_a_parallel_build_gives_the_same_base(cli, tasks: Path, tmp_path: Path) -> None:
    from t2v_automl.knowledge import KnowledgeBase

    runs = {}
    for jobs in ("1", "2"):
        out = f"kb{jobs}.npz"
        res = cli.run("knowledge", "build", out, "--tasks", str(tasks), *EXTRACTORS,
                      "--jobs", jobs, "--no-cache", *cli.fast, cwd=tmp_path)
        cli.ok(res)
        runs[jobs] = KnowledgeBase.load(tmp_path / out)
    np.testing.assert_array_equal(runs["1"].scores, runs["2"].scores)
    np.testing.assert_array_equal(runs["1"].embeddings, runs["2"].embeddings)


def test_folder_errors_name_the_folder(cli, tasks: Path, tmp_path: Path) -> None:
    one = tmp_path / "one_class"
    _write_class(one / "cats", 0, 4, np.random.default_rng(0))
    empty = tmp_path / "empty"
    (empty / "cats").mkdir(parents=True)
    (empty / "dogs").mkdir(parents=True)
    (empty / "cats" / "notes.txt").write_text("no image here")
    base = ("knowledge", "build", "kb.npz", *EXTRACTORS, *cli.fast)
    res = cli.run(*base, "--tasks", str(one), cwd=tmp_path)
    cli.input_error(res, str(one), "at least 2 classes")
    res = cli.run(*base, "--tasks", str(empty), cwd=tmp_path)
    cli.input_error(res, str(empty), "no image files")
    res = cli.run(*base, "--tasks", str(tmp_path / "nowhere"), cwd=tmp_path)
    cli.input_error(res, "nowhere", "does not exist")
    parent = tmp_path / "parent"
    (parent / "notask" / "sub").mkdir(parents=True)
    _write_class(parent / "good" / "a", 0, 4, np.random.default_rng(1))
    _write_class(parent / "good" / "b", 1, 4, np.random.default_rng(2))
    res = cli.run(*base, "--tasks", str(parent), cwd=tmp_path)
    cli.input_error(res, str(parent / "notask"), "is not a task")
    res = cli.run(*base, "--tasks", str(tasks), "--extractor", "no_such_net", cwd=tmp_path)
    cli.input_error(res, "no_such_net")
    assert not (tmp_path / "kb.npz").exists() and not (tmp_path / "kb.npz.cache").exists()


def test_an_unwritable_output_is_refused_before_the_work(cli, tasks: Path,
                                                         tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    base = ("--tasks", str(tasks), *EXTRACTORS, *cli.fast)
    res = cli.run("knowledge", "build", str(blocker / "kb.npz"), *base, cwd=tmp_path)
    cli.input_error(res, "cannot write the output", "a_file")
    res = cli.run("knowledge", "build", str(tmp_path), *base, cwd=tmp_path)
    cli.input_error(res, "is a folder")
    res = cli.run("knowledge", "build", "kb.npz", "--cache", str(blocker), *base,
                  cwd=tmp_path)
    cli.input_error(res, "--cache", "not a folder")
    assert "building" not in res.stdout  # refused before the work
    res = cli.run("knowledge", "build", "kb.npz", "--tasks", str(tasks),
                  "--test-fraction", "1.5", cwd=tmp_path)
    assert res.returncode == 2 and "between 0 and 1" in res.stderr
