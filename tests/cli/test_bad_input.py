"""Issue 18: bad input never corrupts data or the machine (the command-line side).

Output paths that are not regular files, settings that a knowledge base would ignore,
counts below their minimum, names that hold terminal escapes or bytes that are not UTF-8,
invalid devices, repeated warnings, Ctrl-C at start-up and bad image files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from t2v_automl.cli import main
from t2v_automl.cli._base import format_table, printable
from t2v_automl.cli.bench import BenchCommand

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# -- 1. special files and symbolic links --------------------------------------------------
@needs_fifo
def test_embed_refuses_a_fifo_and_a_folder_and_follows_a_link(cli, data: Path,
                                                               tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)  # stands for /dev/null: never touch the real one in a test
    res = cli.run("embed", "pair01", "-o", str(fifo), *cli.fast, cwd=data)
    cli.input_error(res, "pipe.npz", "not a regular file")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    res = cli.run("embed", "pair01", "-o", str(tmp_path), *cli.fast, cwd=data)
    cli.input_error(res, "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.npz"]  # no temp file left
    assert res.stdout == ""  # refused before the work

    real = tmp_path / "real"
    real.mkdir()
    (real / "e.npz").write_bytes(b"old")
    link = tmp_path / "e.npz"
    link.symlink_to(real / "e.npz")
    res = cli.run("embed", "pair01", "-o", str(link), *cli.fast, cwd=data)
    cli.ok(res)
    assert link.is_symlink() and os.readlink(link) == str(real / "e.npz")
    from t2v_automl.knowledge import load_embeddings

    assert [e.task_name for e in load_embeddings(link) or []] == ["pair01"]
    assert _temp_files(tmp_path) == [] and _temp_files(real) == []


# -- 4. knowledge add: other embedding settings ------------------------------------------
def test_knowledge_add_refuses_other_image_size_or_method(cli, kb_file: Path, data: Path,
                                                          tmp_path: Path) -> None:
    kb = tmp_path / "kb.npz"
    shutil.copy(kb_file, kb)
    before = kb.read_bytes()
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"raw_pixels": 0.9, "mnist_cnn": 0.8}))
    res = cli.run("knowledge", "add", str(kb), "pair23", "--scores", str(scores),
                  "--image-size", "32", cwd=data)
    cli.input_error(res, "--image-size 16", "asks for 32")
    res = cli.run("knowledge", "add", str(kb), "pair23", "--scores", str(scores),
                  "--method", "exact", cwd=data)
    cli.input_error(res, "--method montecarlo", "asks for exact")
    res = cli.run("knowledge", "add", str(kb), "pair23", "--scores", str(scores),
                  "--probe", "mobilenet_v2", cwd=data)
    cli.input_error(res, "--probe tiny_random", "asks for mobilenet_v2")
    assert kb.read_bytes() == before and _temp_files(tmp_path) == []


# -- 5. counts at parse time, output paths before the work -----------------------------------
def test_negative_counts_are_usage_errors(cli, data: Path, tmp_path: Path) -> None:
    for args in (("select", "pair01", "--top", "-1"), ("select", "pair01", "--nearest", "-1"),
                 ("select", "pair01", "--top", "0"), ("select", "pair01", "--neighbors", "0"),
                 ("embed", "pair01", "--max-images", "-5"),
                 ("knowledge", "build", "x.npz", "--limit", "-1")):
        res = cli.run(*args, cwd=data)
        assert res.returncode == 2, (args, res.stderr)
        assert "must be >= " in res.stderr and "Traceback" not in res.stderr


def test_demo_trials_zero_is_refused_at_once(cli, tmp_path: Path) -> None:
    """``demo --trials 0`` used to run ~16 s, then exit 1."""
    t0 = time.perf_counter()
    res = cli.run("demo", "--trials", "0", "--out", str(tmp_path / "d"), cwd=tmp_path)
    assert res.returncode == 2 and "--trials: must be >= 1; got 0" in res.stderr
    assert time.perf_counter() - t0 < 15 and not (tmp_path / "d").exists()


def test_unwritable_outputs_are_refused_before_the_work(cli, kb_file: Path, data: Path,
                                                        tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    cases = [
        (("select", "pair01", "-k", str(kb_file), "--json", str(missing / "s.json")),
         "--json"),
        (("select", "pair01", "-k", str(kb_file), "--json", str(tmp_path)), "is a folder"),
        (("similarity", "pair01", "pair23", "--figure", str(missing / "f.png"), *cli.fast),
         "--figure"),
        (("similarity", "pair01", "pair23", "--csv", str(tmp_path), *cli.fast), "--csv"),
        (("demo", "--out", str(a_file)), "not a folder"),
        (("knowledge", "build", str(tmp_path), "--suite", "mini", *cli.fast), "is a folder"),
        (("knowledge", "add", str(tmp_path), "pair01", "--scores", "s.json"), "is a folder"),
    ]
    for args, needle in cases:
        t0 = time.perf_counter()
        res = cli.run(*args, cwd=data)
        cli.input_error(res, needle)
        assert res.stdout == "", args  # nothing done: refused first
        assert time.perf_counter() - t0 < 60, args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    assert a_file.read_text() == "keep"


# -- 6. names: control characters and bytes that are not UTF-8 -------------------------------
def test_format_table_and_console_escape_control_characters(
        capsys: pytest.CaptureFixture[str]) -> None:
    evil = "task\x1b[2J\x1b]0;owned\x07\nnext\u202e"
    table = format_table(["name", "x"], [[evil, 1.0]])
    assert "\x1b" not in table and "\x07" not in table and "\u202e" not in table
    assert "task\\x1b[2J\\x1b]0;owned\\x07\\x0anext\\u202e" in table
    assert len(table.splitlines()) == 3  # a newline in a name does not add a row
    assert printable("a\nb\tc\x1b") == "a\nb\tc\\x1b"  # lines keep their newlines


def test_task_names_with_escapes_are_printed_escaped(cli, kb_file: Path, data: Path,
                                                     tmp_path: Path) -> None:
    from t2v_automl.knowledge import KnowledgeBase

    evil = "evil\x1b[2J\x1b[31m"
    kb = KnowledgeBase.load(kb_file)
    kb.add(evil, kb.embedding(kb.task_names[0]).values, {"raw_pixels": 0.5})
    kb.save(tmp_path / "kb.npz")
    res = cli.run("knowledge", "info", str(tmp_path / "kb.npz"), "--tasks", cwd=data)
    cli.ok(res)
    assert "\x1b" not in res.stdout and "evil\\x1b[2J\\x1b[31m" in res.stdout
    folder = tmp_path / evil  # a dataset folder whose name holds escapes
    shutil.copytree(data / "pair01", folder)
    res = cli.run("select", str(folder), "-k", str(tmp_path / "kb.npz"), "--nearest", "10",
                  "--transferability", "none", cwd=data)
    cli.ok(res)
    assert "\x1b" not in res.stdout + res.stderr
    assert "Recommended extractor for evil\\x1b[2J\\x1b[31m:" in res.stdout


@pytest.mark.skipif(sys.platform in ("win32", "darwin"),
                    reason="needs a file system that takes any bytes as a name")
def test_a_folder_name_that_is_not_utf8_on_a_strict_stdout(cli, data: Path,
                                                           tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9")  # a lone surrogate in Python
    shutil.copytree(data / "pair01", tmp_path / name)
    env = {**cli.env(), "PYTHONIOENCODING": "utf-8:strict"}
    res = subprocess.run([sys.executable, "-m", "t2v_automl", "embed", name, "-o", "e.npz",
                          *cli.fast], cwd=tmp_path, capture_output=True, env=env,
                         timeout=600, check=False)
    out, err = res.stdout.decode("utf-8"), res.stderr.decode("utf-8", "replace")
    assert res.returncode == 0, err
    assert "caf\\udce9" in out and "UnicodeEncodeError" not in err
    assert (tmp_path / "e.npz").is_file() and (tmp_path / "e.json").is_file()


# -- 7. devices ----------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["tpu", "cuda:abc", "", "meta", "cuda:-1"])
def test_invalid_devices_exit_3(device: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--list", "--device", device]) == 3
    err = capsys.readouterr().err
    assert err.startswith("t2v-automl: error: --device must be 'auto', 'cpu', 'cuda'")
    assert repr(device) in err and len(err.splitlines()) == 1


def test_valid_devices_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(BenchCommand, "run", lambda self, args, con: seen.append(args.device)
                        or 0)
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps", " CUDA:0 "):
        assert main(["bench", "--device", device]) == 0
    assert seen == ["auto", "cpu", "cuda", "cuda:1", "mps", "cuda:0"]


def test_a_repeated_warning_is_shown_once(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The CUDA fallback came 30 times in ``select`` (once per extractor and task)."""
    import logging

    text = "device 'cuda' was asked for but CUDA is not available; using the CPU."

    def run(self, args, con):  # noqa: ANN001
        log = logging.getLogger("t2v_automl.probes")
        for _ in range(30):
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                warnings.warn(text, UserWarning, stacklevel=1)
            log.warning(text)
        warnings.warn("another one", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(BenchCommand, "run", run)
    for _ in range(2):  # and again in the next run
        assert main(["bench"]) == 0
        lines = capsys.readouterr().err.splitlines()
        assert [ln for ln in lines if "CUDA" in ln] == [f"t2v-automl: warning: {text}"]
        assert lines[-1] == "t2v-automl: warning: another one" and len(lines) == 2


def test_select_on_cuda_without_cuda_warns_once(cli, kb_file: Path, data: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is there: no fallback")
    res = cli.run("select", "pair01", "-k", str(kb_file), "--device", "cuda", cwd=data)
    cli.ok(res)
    assert len([ln for ln in res.stderr.splitlines() if "CUDA is not available" in ln]) == 1


# -- 8. Ctrl-C at start-up ------------------------------------------------------------------
def _fast_start_env() -> dict[str, str]:
    """``python -S`` (no site) finds the package and its dependencies through PYTHONPATH."""
    root = Path(__file__).resolve().parents[2]
    paths = [str(root), sysconfig.get_path("purelib"), sysconfig.get_path("platlib"),
             *[p for p in sys.path if p.endswith("site-packages")]]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
            "OMP_NUM_THREADS": "1"}


def _before_the_package(err: str) -> bool:
    """The traceback of a SIGINT that came while Python itself started (no package code ran:
    no frame in t2v_automl/ but the ``from t2v_automl.cli import main`` of __main__.py)."""
    if "init_import_site" in err:
        return True
    files = [ln.split('"')[1] for ln in err.splitlines() if ln.strip().startswith('File "')]
    return "Traceback" in err and not any(
        "t2v_automl" in f and not f.endswith(os.path.join("t2v_automl", "__main__.py"))
        for f in files)


def test_ctrl_c_while_the_command_imports_is_one_line(tmp_path: Path) -> None:
    """The handler is in place as soon as ``t2v_automl.cli`` is imported, before ``main``."""
    code = ("import os, signal, sys, time; sys.argv = ['t2v-automl', 'demo']; "
            "import t2v_automl.cli; os.kill(os.getpid(), signal.SIGINT); time.sleep(30); "
            "print('not interrupted')")
    res = subprocess.run([sys.executable, "-S", "-c", code], env=_fast_start_env(),
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         check=False)
    assert (res.returncode, res.stderr, res.stdout) == (130, "t2v-automl: interrupted\n", "")
    # imported by another program, the package leaves SIGINT alone
    code = ("import signal, t2v_automl.cli; "
            "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler")
    res = subprocess.run([sys.executable, "-S", "-c", code], env=_fast_start_env(),
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr


def test_ctrl_c_in_the_first_second_is_one_line(tmp_path: Path) -> None:
    """SIGINT at 0.15-2 s after ``t2v-automl demo`` starts: one line, exit 130.

    A signal that comes while the interpreter itself starts (no code of the package can run
    before that; on a loaded machine it takes a few tenths of a second) is not counted; at
    least three must land in the package (its imports, the heavy imports, the work).
    """
    env, landed = _fast_start_env(), []
    for delay in (0.15, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0):
        proc = subprocess.Popen([sys.executable, "-S", "-m", "t2v_automl", "demo", "--trials",
                                 "1", "--out", str(tmp_path / "out")], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, raw = proc.communicate(timeout=300)
        err = raw.decode()
        if proc.returncode != 130 and _before_the_package(err):
            continue
        assert proc.returncode == 130, (delay, err)
        assert err == "t2v-automl: interrupted\n", (delay, err)
        landed.append(delay)
    assert len(landed) >= 3, landed


# -- 10. bad image files -------------------------------------------------------------------
def test_on_bad_image_skip_or_fail(cli, data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(data / "pair01", folder)
    (folder / "digit0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    res = cli.run("embed", str(folder), "-o", str(tmp_path / "e.npz"), *cli.fast,
                  cwd=tmp_path)
    cli.ok(res)
    warned = [ln for ln in res.stderr.splitlines() if ln.startswith("t2v-automl: warning:")]
    assert len(warned) == 1 and "1 bad image file" in warned[0] and "broken.png" in warned[0]
    assert json.loads((tmp_path / "e.json").read_text())["tasks"][0]["n_images"] == 24
    res = cli.run("embed", str(folder), "-o", str(tmp_path / "f.npz"), "--on-bad-image",
                  "fail", *cli.fast, cwd=tmp_path)
    cli.input_error(res, "broken.png")
    assert not (tmp_path / "f.npz").exists()


def test_on_bad_image_reaches_the_folder_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    import t2v_automl.tasks as tasks
    from t2v_automl.cli._shared import load_inputs

    seen = []

    def fake(obj, *, name=None, image_size=224, on_bad_image="skip"):  # noqa: ANN001, ANN202
        seen.append(on_bad_image)
        return np.zeros(1)

    monkeypatch.setattr(tasks, "as_task", fake)
    load_inputs(["somewhere"], 64, "fail")
    assert seen == ["fail"]
