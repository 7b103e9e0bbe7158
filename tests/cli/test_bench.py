"""``t2v-automl bench``."""

from __future__ import annotations

from pathlib import Path

import pytest

from t2v_automl.cli import main


def test_bench_lists_runs_and_prints_tables(cli, tmp_path: Path,
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
    (bench / "build_knowledge.py").write_text("raise SystemExit('not a benchmark')\n")
    assert main(["bench", "--dir", str(bench), "--list"]) == 0
    out = capsys.readouterr().out
    assert "hello" in out and "(none yet)" in out and "build_knowledge" not in out
    assert main(["bench", "nope", "--dir", str(bench)]) == 3
    assert "unknown benchmark(s) ['nope']; known: hello" in capsys.readouterr().err
    res = cli.run("bench", "hello", "--dir", str(bench), "--run", "--quick", cwd=tmp_path)
    cli.ok(res)
    assert "| True | 42 |" in res.stdout and "measured" not in res.stdout
    assert "measured" in res.stderr  # the script's own output goes to stderr


def test_bench_failing_script_exits_1(cli, tmp_path: Path) -> None:
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "bench_broken.py").write_text("raise SystemExit(4)\n")
    res = cli.run("bench", "broken", "--dir", str(bench), "--run", cwd=tmp_path)
    assert res.returncode == 1
    assert "bench_broken.py exited with code 4" in res.stderr and "Traceback" not in res.stderr


def test_bench_default_folder_is_the_checkout(capsys: pytest.CaptureFixture[str]) -> None:
    from t2v_automl.cli.bench import bench_dir

    root = Path(__file__).resolve().parents[2] / "benchmarks"
    if not root.is_dir():
        pytest.skip("not a source checkout")
    assert bench_dir(None) == root
