"""Exit codes and what reaches the terminal: usage errors, Ctrl-C, a closed pipe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from t2v_automl.cli import main
from t2v_automl.cli.bench import BenchCommand


def test_usage_error_exits_2(cli, tmp_path: Path) -> None:
    res = cli.run("select", cwd=tmp_path)  # PATH missing
    assert res.returncode == 2
    assert "t2v-automl select: error:" in res.stderr and "Traceback" not in res.stderr


def test_jobs_zero_is_an_input_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--list", "--jobs", "0"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("t2v-automl: error: --jobs must not be 0")


def test_ctrl_c_exits_130_with_one_line(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(self, args, con):  # noqa: ANN001
        raise KeyboardInterrupt

    monkeypatch.setattr(BenchCommand, "run", interrupted)
    assert main(["bench"]) == 130
    assert capsys.readouterr().err == "t2v-automl: interrupted\n"


def test_closed_pipe_exits_0_quietly(cli, tmp_path: Path) -> None:
    """``t2v-automl bench | head -1``: the reader goes away, the command exits 0 silently."""
    bench = tmp_path / "benchmarks"
    (bench / "results").mkdir(parents=True)
    (bench / "bench_big.py").write_text("print('never run')\n")
    # far more than a pipe buffer, so that the writer meets the closed pipe
    (bench / "results" / "big.md").write_text("| row | value |\n" * 200_000)
    proc = subprocess.Popen([sys.executable, "-m", "t2v_automl", "bench", "--dir", str(bench)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli.env())
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=120)
    assert first.startswith(b"<!-- ")
    assert rc == 0, err
    assert err == "", err  # no traceback, no "Exception ignored ... BrokenPipeError"


def test_closed_pipe_through_the_shell(tmp_path: Path) -> None:
    bench = tmp_path / "benchmarks"
    (bench / "results").mkdir(parents=True)
    (bench / "results" / "big.md").write_text("| row | value |\n" * 200_000)
    res = subprocess.run(
        f"set -o pipefail; {sys.executable} -m t2v_automl bench --dir {bench} | head -1",
        shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=120,
        check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("<!-- ") and res.stderr == ""
