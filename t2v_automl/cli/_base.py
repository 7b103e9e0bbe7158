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
import os
import re
import stat
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
    "add_embedder_options", "add_input_options", "check_device", "check_output",
    "common_options", "count", "format_table", "parse_names", "printable",
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
TRANSFERABILITY_CHOICES = ("logme", "leep", "nce", "h_score", "knn_accuracy", "logme_authors",
                           "logme_pca", "ncti", "etran")
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
#: :data:`t2v_automl.images.BAD_IMAGE_POLICIES`: what ``Task.from_folder`` does with a bad
#: image file.
BAD_IMAGE_CHOICES = ("skip", "fail")
#: What ``--device`` accepts (``probes.resolve_device`` accepts the same; case and spaces
#: are ignored).
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda|cuda:\d+|mps")


class CLIInputError(T2VError, ValueError):
    """An input the command line names is missing or malformed (exit code 3)."""


class BenchmarkFailedError(RuntimeError):
    """A benchmark script exited with an error (exit code 1)."""


# ============================================================================ terminal
#: Characters never written raw to the terminal: C0 and C1 controls (escape sequences
#: start with one), lone surrogates (a file name that is not UTF-8) and the bidirectional
#: overrides that reorder what is shown.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, keep: str = "\n\t") -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), as ``repr`` does.

    A task name from a folder name may hold terminal escape sequences or bytes that are not
    UTF-8 (lone surrogates after :func:`os.fsdecode`); printed raw they drive the terminal,
    or fail to encode on a strict UTF-8 stdout.

    Parameters
    ----------
    text : str
    keep : str, default="\\n\\t"
        Control characters left as they are (a table cell keeps none).

    Returns
    -------
    str
    """
    return _UNPRINTABLE.sub(lambda m: m.group() if m.group() in keep else _escape(m), text)


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
        """A result line (always shown; control characters escaped)."""
        print(printable(text), flush=True)

    def say(self, text: str = "") -> None:
        """A narrative line on stdout (hidden by ``--quiet``)."""
        if self.verbosity >= 0:
            print(printable(text), flush=True)

    def note(self, text: str) -> None:
        """A one-line note on stderr (hidden by ``--quiet``)."""
        if self.verbosity >= 0:
            print(f"{PROG}: note: {printable(text)}", file=sys.stderr, flush=True)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]],
              indent: str = "  ") -> None:
        """An aligned plain-text table on stdout (always shown)."""
        self.out(format_table(headers, rows, indent))


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        return f"{x:.4f}" if abs(x) < 10 else f"{x:.1f}"
    return printable(str(x), keep="")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> str:
    """Format rows as an aligned text table (numbers right-aligned).

    Cells are shown with :func:`printable` (no control character, not even a newline, gets
    through: a task name cannot move the cursor or break the table).

    Parameters
    ----------
    headers : sequence of str
    rows : sequence of sequence
    indent : str, default=""

    Returns
    -------
    str
    """
    headers = [printable(str(h), keep="") for h in headers]
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


class _Shown:
    """The warning texts shown in this run: each is shown once, log or ``warnings``."""

    texts: ClassVar[set[str]] = set()

    @classmethod
    def first(cls, text: str) -> bool:
        """True the first time ``text`` is offered in this run."""
        if text in cls.texts:
            return False
        cls.texts.add(text)
        return True


def start_run() -> None:
    """Forget the warnings shown (one :func:`~t2v_automl.cli.main` call is one run)."""
    _Shown.texts = set()


class _OnceFormatter(logging.Formatter):
    """``t2v-automl: LEVEL: message`` on one printable line."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(" ".join(super().format(record).split()), keep="")


class _OnceFilter(logging.Filter):
    """Drop a warning (or error) whose text was already shown in this run."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        return _Shown.first(" ".join(record.getMessage().split()))


def setup_logging(verbosity: int) -> logging.Handler:
    """Send the package logger to stderr at the level ``verbosity`` asks for.

    Each warning text is shown once per run, whether it comes as a log record or as a
    :mod:`warnings` warning (``probes.resolve_device`` issues both).
    """
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OnceFormatter(f"{PROG}: %(levelname)s: %(message)s"))
    handler.addFilter(_OnceFilter())
    log = logging.getLogger("t2v_automl")
    log.addHandler(handler)
    log.setLevel(level)
    return handler


def one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                     lineno: int, file: Any = None, line: str | None = None) -> None:
    """``warnings.showwarning`` of the command: ``t2v-automl: warning: ...`` on one line.

    A text already shown in this run (by this or by the log) is not shown again: a warning
    issued once per task or per extractor would otherwise fill the screen.
    """
    text = " ".join(str(message).split())
    if _Shown.first(text):
        print(f"{PROG}: warning: {printable(text, keep='')}", file=sys.stderr, flush=True)


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
                                    "'cuda:<index>' or 'mps'")
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
                                   "image_size": None, "max_images": None,
                                   "on_bad_image": "skip"}


def check_device(value: str) -> str:
    """``--device``, normalised (``" CUDA:0 "`` -> ``"cuda:0"``); exit 3 unless valid.

    The CLI checks it on its own, before any work, whatever the library would say later.
    """
    device = str(value).strip().lower()
    if not DEVICE_PATTERN.fullmatch(device):
        raise CLIInputError(
            f"--device must be 'auto', 'cpu', 'cuda', 'cuda:<index>' (e.g. cuda:1) or 'mps'; "
            f"got {printable(repr(value), keep='')}."
        )
    return device


def count(minimum: int) -> Any:
    """An argparse ``type``: an integer >= ``minimum`` (else a usage error, exit 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}; got {value}")
        return value

    parse.__name__ = "positive integer" if minimum == 1 else f"integer >= {minimum}"
    return parse


def check_output(path: str, option: str, *, directory: bool = False,
                 parents: bool = False) -> None:
    """Refuse an output path that cannot be written, before any work (exit 3).

    Parameters
    ----------
    path : str
        The path an option names (a symbolic link is followed).
    option : str
        The option, for the message (``"--json"``).
    directory : bool, default=False
        The output is a folder (``demo --out``): it must be one, or not exist.
    parents : bool, default=False
        The command creates missing parent folders: the nearest existing one must be a
        writable folder; otherwise the parent itself must exist.

    Raises
    ------
    CLIInputError
        The path is (or leads to) something else than a regular file (a folder, a device
        such as /dev/null, a named pipe, a socket), cannot be written, or its folder does
        not exist or cannot be written.
    """
    shown = printable(repr(path), keep="")
    if not path:
        raise CLIInputError(f"{option} needs a path; got an empty one.")
    real = os.path.realpath(path)
    try:
        mode: int | None = os.stat(real).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise CLIInputError(f"cannot write {option} {shown}: {exc.strerror}.") from None
    if mode is not None:
        if directory and not stat.S_ISDIR(mode):
            raise CLIInputError(f"{option} {shown} exists and is not a folder.")
        if not directory and not stat.S_ISREG(mode):
            what = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, " \
                "a named pipe or a socket)"
            raise CLIInputError(f"{option} {shown} is {what}; name a regular file or a new "
                                "path.")
        if not os.access(real, os.W_OK | (os.X_OK if directory else 0)):
            raise CLIInputError(f"{option} {shown} cannot be written (permission denied).")
        return
    parent = os.path.dirname(real) or "."
    while parents and not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise CLIInputError(f"cannot write {option} {shown}: folder "
                            f"{printable(repr(parent), keep='')} does not exist.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIInputError(f"cannot write {option} {shown}: folder "
                            f"{printable(repr(parent), keep='')} is not writable.")


def add_input_options(p: argparse.ArgumentParser) -> None:
    """``--on-bad-image`` (commands that read image folders)."""
    p.add_argument("--on-bad-image", choices=BAD_IMAGE_CHOICES, default="skip",
                   help="an image file of a folder that cannot be used (unreadable, "
                        "truncated, corrupt, too large): 'skip' it (default; one warning "
                        "gives the count and the first names) or 'fail' (exit 3 naming it)")


def add_embedder_options(p: argparse.ArgumentParser) -> None:
    """``--method``, ``--image-size``, ``--max-images`` (the embedder's settings)."""
    g = p.add_argument_group("embedding")
    g.add_argument("--method", choices=METHOD_CHOICES,
                   help=f"Fisher estimator (default: the embedder's, "
                        f"{EMBEDDER_DEFAULTS['method']!r})")
    g.add_argument("--image-size", type=count(1), metavar="PX",
                   help="images are resized to PX x PX for the probe (default "
                        f"{EMBEDDER_DEFAULTS['image_size']})")
    g.add_argument("--max-images", type=count(1), metavar="N",
                   help="at most N images per task, class-balanced (default "
                        f"{EMBEDDER_DEFAULTS['max_images']})")
