"""What every sub-command shares: the console, tables, exit codes, errors, options.

Nothing here imports numpy, torch, scikit-learn or optuna: the parser of ``t2v-automl``
is built from this module and the command modules, and ``--help`` must stay quick. The
choices of the options are literals; ``tests/cli/test_parser.py`` checks that they equal
the library's lists.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from t2v_automl.exceptions import T2VError

__all__ = [
    "DEFAULT_PROBE", "DEMO_EXTRACTORS", "DISTANCE_CHOICES", "EMBEDDER_DEFAULTS", "EXIT_INPUT",
    "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_UNEXPECTED", "EXIT_USAGE", "EXTRA_EMBEDDING_CHOICES",
    "METHOD_CHOICES", "PROG", "SELECTOR_DEFAULTS", "STRATEGY_CHOICES",
    "TRANSFERABILITY_CHOICES", "BenchmarkFailedError", "CLIInputError", "Command", "Console",
    "add_embedder_options", "common_options", "format_table", "parse_names",
]

PROG = "t2v-automl"
#: Exit codes.
EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# -- static choices (equal to the library's lists: tests/cli/test_parser.py) -----------------
#: :data:`t2v_automl.distances.DISTANCES`.
DISTANCE_CHOICES = ("hellinger", "symmetric", "asymmetric", "cosine", "normalized_cosine")
#: :data:`t2v_automl.estimators.STRATEGIES`.
STRATEGY_CHOICES = ("nearest", "model2vec")
#: :func:`t2v_automl.transferability.list_transferability` (the built-in scores).
TRANSFERABILITY_CHOICES = ("logme", "leep", "nce", "h_score", "knn_accuracy")
#: :data:`t2v_automl.fisher.METHODS`, the embedder's default first.
METHOD_CHOICES = ("exact", "montecarlo", "empirical", "domain", "label_stat")
#: Keys of :data:`t2v_automl.building.DEFAULT_EXTRA_EMBEDDINGS`.
EXTRA_EMBEDDING_CHOICES = ("domain", "label_stat", "montecarlo_full")
#: ``ExtractorSelector()``'s parameters that ``select`` can change.
SELECTOR_DEFAULTS: dict[str, Any] = {"strategy": "nearest", "metric": "hellinger",
                                     "n_neighbors": 3}
#: ``Task2VecEmbedder()``'s parameters that the embedding options can change.
EMBEDDER_DEFAULTS: dict[str, Any] = {"probe": "mobilenet_v2", "method": "exact",
                                     "image_size": 64, "max_images": 500}
DEFAULT_PROBE = EMBEDDER_DEFAULTS["probe"]
#: Extractors the demo searches over: fast enough on a CPU (no Keras start-up).
DEMO_EXTRACTORS = ("efficientnet_lite0", "mobilenet_v2", "deepsort_mobilenet_v2", "mnist_cnn",
                   "svhn_cnn", "raw_pixels")


class CLIInputError(T2VError, ValueError):
    """An input the command line names is missing or malformed (exit code 3)."""


class BenchmarkFailedError(RuntimeError):
    """A benchmark script exited with an error (exit code 1)."""


# ============================================================================ terminal
@dataclass
class Console:
    """Where the command's output goes: results on stdout, notes and progress on stderr.

    Attributes
    ----------
    verbosity : int
        -1 quiet, 0 normal, 1 ``-v``, 2 ``-vv``.
    """

    verbosity: int = 0
    _t0: float = field(default_factory=time.perf_counter)

    @property
    def progress(self) -> bool:
        """Show tqdm bars: with ``--verbose``, or by default when stderr is a terminal."""
        return self.verbosity >= 1 or (self.verbosity == 0 and sys.stderr.isatty())

    def out(self, text: str = "") -> None:
        """A result line (always shown)."""
        print(text, flush=True)

    def say(self, text: str = "") -> None:
        """A narrative line on stdout (hidden by ``--quiet``)."""
        if self.verbosity >= 0:
            print(text, flush=True)

    def note(self, text: str) -> None:
        """A one-line note on stderr (hidden by ``--quiet``)."""
        if self.verbosity >= 0:
            print(f"{PROG}: note: {text}", file=sys.stderr, flush=True)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]],
              indent: str = "  ") -> None:
        """An aligned plain-text table on stdout (always shown)."""
        self.out(format_table(headers, rows, indent))


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        return f"{x:.4f}" if abs(x) < 10 else f"{x:.1f}"
    return str(x)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> str:
    """Format rows as an aligned text table (numbers right-aligned).

    Parameters
    ----------
    headers : sequence of str
    rows : sequence of sequence
    indent : str, default=""

    Returns
    -------
    str
    """
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(r[i], int | float) and not isinstance(r[i], bool)
                   for r in rows) and bool(rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w)
                 for v, w, num in zip(values, widths, numeric, strict=True)]
        return (indent + "  ".join(parts)).rstrip()

    out = [line(list(headers)), indent + "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)


def setup_logging(verbosity: int) -> logging.Handler:
    """Send the package logger to stderr at the level ``verbosity`` asks for."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    log = logging.getLogger("t2v_automl")
    log.addHandler(handler)
    log.setLevel(level)
    return handler


def one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                     lineno: int, file: Any = None, line: str | None = None) -> None:
    """``warnings.showwarning`` of the command: ``t2v-automl: warning: ...`` on one line."""
    text = " ".join(str(message).split())
    print(f"{PROG}: warning: {text}", file=sys.stderr, flush=True)


def parse_names(value: str | None) -> list[str] | None:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; None stays None."""
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


# ============================================================================ commands
class Command:
    """One sub-command of ``t2v-automl`` (the table is ``t2v_automl.cli._COMMANDS``).

    The first line of a command's docstring is its summary in ``t2v-automl --help``;
    ``description`` (default: that line) heads ``t2v-automl COMMAND --help``.
    :meth:`add_arguments` adds the command's options (no heavy import there); :meth:`run`
    does the work, importing what it needs, and returns the exit code.
    """

    description: ClassVar[str | None] = None

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        return (inspect.getdoc(cls) or "").strip().splitlines()[0]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's arguments to its parser."""

    def run(self, args: argparse.Namespace, con: Console) -> int:
        """Do the work; return the exit code."""
        raise NotImplementedError


def common_options() -> argparse.ArgumentParser:
    """The global options, accepted before and after the sub-command."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    g = common.add_argument_group("global options")
    g.add_argument("--device", help="'auto' (CUDA when present, the default), 'cpu', 'cuda', "
                                    "'cuda:1'...")
    g.add_argument("--jobs", "-j", type=int, metavar="N",
                   help="parallel jobs (joblib) for embedding and evaluation (default: 1)")
    g.add_argument("--probe", metavar="NAME",
                   help="probe network (default: the knowledge base's, else "
                        f"{DEFAULT_PROBE}; 'tiny_random' for quick tests; "
                        "'<arch>@/path/weights.pth')")
    v = g.add_mutually_exclusive_group()
    v.add_argument("--quiet", "-q", action="store_true",
                   help="only results and errors")
    v.add_argument("--verbose", "-v", action="count",
                   help="log what happens and show progress bars (-vv: debug); tracebacks "
                        "on errors")
    return common


#: Values of the global and embedding options when a command line leaves them out.
OPTION_DEFAULTS: dict[str, Any] = {"device": "auto", "jobs": None, "probe": None,
                                   "quiet": False, "verbose": 0, "method": None,
                                   "image_size": None, "max_images": None}


def add_embedder_options(p: argparse.ArgumentParser) -> None:
    """``--method``, ``--image-size``, ``--max-images`` (the embedder's settings)."""
    g = p.add_argument_group("embedding")
    g.add_argument("--method", choices=METHOD_CHOICES,
                   help=f"Fisher estimator (default: the embedder's, "
                        f"{EMBEDDER_DEFAULTS['method']!r})")
    g.add_argument("--image-size", type=int, metavar="PX",
                   help="images are resized to PX x PX for the probe (default "
                        f"{EMBEDDER_DEFAULTS['image_size']})")
    g.add_argument("--max-images", type=int, metavar="N",
                   help="at most N images per task, class-balanced (default "
                        f"{EMBEDDER_DEFAULTS['max_images']})")
