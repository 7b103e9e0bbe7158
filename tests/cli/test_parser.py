"""The parser: help of every command, static choices, and no heavy import to build it."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from t2v_automl.cli import _COMMANDS, Command, _base, build_parser, format_table, main

HEAVY = ("torch", "torchvision", "timm", "sklearn", "numpy", "scipy", "optuna", "matplotlib",
         "PIL", "joblib", "pandas")


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = [["demo"], ["embed"], ["select"], ["similarity"], ["knowledge"],
                ["knowledge", "build"], ["knowledge", "info"], ["knowledge", "add"], ["bench"]]
    assert {" ".join(c) for c in commands} - {"knowledge"} == set(_COMMANDS)
    for cmd in [[], *commands]:
        with pytest.raises(SystemExit) as exc:
            main([*cmd, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: t2v-automl")
        assert "--verbose" in out and "--device" in out


def test_the_command_table() -> None:
    for name, command_type in _COMMANDS.items():
        assert issubclass(command_type, Command), name
        assert command_type.summary(), name  # the docstring's first line is the help
        assert command_type.run is not Command.run, name
        # one command per module, in the module named after it
        assert command_type.__module__ == f"t2v_automl.cli.{name.split()[0]}", name


def test_help_imports_nothing_heavy() -> None:
    """Building the parser, and every --help, leaves torch, numpy & co. unimported."""
    code = (
        "import sys, json\n"
        "import t2v_automl.cli as cli\n"
        "cli.build_parser()\n"
        "for cmd in ([], ['select'], ['knowledge', 'build'], ['demo'], ['similarity']):\n"
        "    try:\n"
        "        cli.main([*cmd, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1]) == []


def test_static_choices_equal_the_library_lists() -> None:
    from t2v_automl.building import DEFAULT_EXTRA_EMBEDDINGS
    from t2v_automl.distances import DISTANCES
    from t2v_automl.estimators import STRATEGIES, ExtractorSelector, Task2VecEmbedder
    from t2v_automl.fisher import METHODS
    from t2v_automl.transferability import list_transferability

    assert _base.DISTANCE_CHOICES == tuple(DISTANCES)
    assert _base.STRATEGY_CHOICES == tuple(STRATEGIES)
    assert _base.TRANSFERABILITY_CHOICES == tuple(list_transferability())
    assert sorted(_base.METHOD_CHOICES) == sorted(METHODS)
    assert _base.EXTRA_EMBEDDING_CHOICES == tuple(DEFAULT_EXTRA_EMBEDDINGS)
    sel = ExtractorSelector().get_params()
    assert {k: sel[k] for k in _base.SELECTOR_DEFAULTS} == _base.SELECTOR_DEFAULTS
    emb = Task2VecEmbedder().get_params()
    assert {k: emb[k] for k in _base.EMBEDDER_DEFAULTS} == _base.EMBEDDER_DEFAULTS
    assert _base.METHOD_CHOICES[0] == emb["method"]


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


def test_python_dash_m_and_version(tmp_path: Path) -> None:
    from t2v_automl import __version__

    for module in ("t2v_automl", "t2v_automl.cli"):
        res = subprocess.run([sys.executable, "-m", module, "--version"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120, check=False)
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == f"t2v-automl {__version__}"


def test_every_module_stays_small() -> None:
    import t2v_automl.cli as cli

    folder = Path(inspect.getfile(cli)).parent
    for f in folder.glob("*.py"):
        assert len(f.read_text().splitlines()) < 800, f.name
