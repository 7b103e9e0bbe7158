"""``t2v-automl bench``: print (and with ``--run``, re-run) the benchmark tables.

The scripts of ``benchmarks/`` run in a subprocess; nothing of that folder is imported.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from t2v_automl.cli._base import EXIT_OK, BenchmarkFailedError, CLIInputError, Command, Console
from t2v_automl.exceptions import UnknownNameError

#: Scripts of benchmarks/ that are not benchmarks (the knowledge build has its own command).
NOT_BENCHMARKS = ("build_knowledge.py", "conftest.py")


def bench_name(script: Path) -> str:
    """``bench_embedder.py`` -> ``embedder``; ``knowledge_report.py`` -> ``knowledge``."""
    return script.stem.removeprefix("bench_").removesuffix("_report")


def bench_dir(arg: str | None) -> Path:
    """``--dir``, else the source checkout's ``benchmarks/``, else ``./benchmarks``."""
    if arg:
        return Path(arg)
    here = Path(__file__).resolve().parents[2] / "benchmarks"
    return here if here.is_dir() else Path.cwd() / "benchmarks"


class BenchCommand(Command):
    """print the benchmark tables (--run: re-run the benchmarks)"""

    description = (
        "Print the Markdown tables the benchmark scripts (benchmarks/*.py, e.g. "
        "bench_embedder.py, selection.py, warm_start.py, knowledge_report.py) wrote to "
        "benchmarks/results/; with --run, run the scripts first (a full run takes long on a "
        "CPU; --quick where a script has it).")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME",
                            help="benchmarks to show or run (default: all); see --list")
        parser.add_argument("--run", action="store_true",
                            help="run the scripts before printing")
        parser.add_argument("--quick", action="store_true",
                            help="pass --quick to scripts that have it")
        parser.add_argument("--list", action="store_true",
                            help="list the benchmarks and their results")
        parser.add_argument("--dir", metavar="DIR",
                            help="benchmarks folder (default: the checkout's)")

    def run(self, args: argparse.Namespace, con: Console) -> int:
        root = bench_dir(args.dir)
        if not root.is_dir():
            raise CLIInputError(
                f"no benchmarks folder at {str(root)!r}; run from a t2v-automl source "
                "checkout or pass --dir path/to/benchmarks."
            )
        scripts = {bench_name(p): p for p in sorted(root.glob("*.py"))
                   if not p.name.startswith("_") and p.name not in NOT_BENCHMARKS}
        results = root / "results"
        if args.list:
            rows = []
            for name, p in scripts.items():
                mds = sorted(results.glob(f"{name}*.md")) if results.is_dir() else []
                rows.append([name, str(p.relative_to(root.parent)) if root.parent in p.parents
                             else str(p), ", ".join(m.name for m in mds) or "(none yet)"])
            con.table(["benchmark", "script", "results"], rows)
            return EXIT_OK
        unknown = [n for n in args.names if n not in scripts]
        if unknown:
            raise UnknownNameError(
                f"unknown benchmark(s) {unknown}; known: {', '.join(scripts) or '(none)'}."
            )
        chosen = list(args.names) or list(scripts)
        if args.run:
            for name in chosen:
                _run_script(scripts[name], root, args.quick, con)
        if args.names:
            files = [m for n in chosen for m in sorted(results.glob(f"{n}*.md"))] \
                if results.is_dir() else []
        else:
            files = sorted(results.glob("*.md")) if results.is_dir() else []
        if not files:
            con.note("no benchmark tables yet; run `t2v-automl bench NAME --run` (see --list)")
        for f in files:
            con.out(f"<!-- {f} -->")
            con.out(f.read_text().rstrip())
            con.out("")
        return EXIT_OK


def _run_script(script: Path, root: Path, quick: bool, con: Console) -> None:
    """Run one benchmark script (its output on stderr); raise if it fails."""
    cmd = [sys.executable, str(script)]
    if quick:
        if '"--quick"' in script.read_text():
            cmd.append("--quick")
        else:
            con.note(f"{script.name} has no --quick mode; running it in full")
    con.note(f"running {' '.join(cmd)}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root.parent, stdout=sys.stderr, stderr=sys.stderr,
                          check=False)
    if proc.returncode != 0:
        raise BenchmarkFailedError(f"{script.name} exited with code {proc.returncode}")
    con.note(f"{script.name} finished in {time.perf_counter() - t0:.0f} s")
