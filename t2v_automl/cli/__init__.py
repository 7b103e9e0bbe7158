"""The ``t2v-automl`` command: embed tasks, pick an extractor, warm-start a study.

Sub-commands (``t2v-automl COMMAND --help`` for each)::

    demo                 the whole job on a bundled real task, end to end
    embed PATH...        Task2Vec embeddings of image folders / .npz tasks -> .npz + .json
    select PATH          rank the zoo's extractors for a dataset (default knowledge base;
                         --zoo FILE / --extractor NAME: your candidates)
    similarity PATH...   task-distance matrix (table) and a clustered heatmap (PNG)
    knowledge build|info|add    manage knowledge bases (build --tasks DIR...: from your
                         own image folders, resumable from OUT.cache/)
    bench                print (and with --run, re-run) the benchmark tables

Global options (before or after the sub-command): ``--device``, ``--jobs``, ``--probe``,
``--quiet`` / ``--verbose``.

Exit codes: 0 success (also when stdout is closed early, as by ``| head``); 2 usage error
(from argparse, at once: unknown option, a value outside its choices, a count below its
minimum such as ``--top -1`` or ``demo --trials 0``); 3 input or data error (every
:class:`~t2v_automl.exceptions.T2VError`: missing folder, folder without images, unknown
extractor or probe, incompatible knowledge base, an invalid ``--device``, an output path
that cannot be written, checked before any work...); 1 anything unexpected; 130
interrupted (Ctrl-C: one line, from the moment this package is imported). Errors are one
line on stderr, ``t2v-automl: error: ...``; the traceback is shown with ``--verbose``
only. Whatever reaches the terminal has its control characters escaped
(:func:`~t2v_automl.cli._base.printable`), and characters the terminal's encoding lacks
are written as backslash escapes instead of failing.

One command is one class (:class:`~t2v_automl.cli._base.Command`) in one module, listed
in :data:`_COMMANDS`. This package is the one place in t2v-automl that writes to the
terminal. Building the parser imports neither numpy, torch, scikit-learn nor optuna: the
commands import them in their ``run``, so that ``--help`` stays quick.
"""

from __future__ import annotations

# Ctrl-C must give one line and exit 130 from the start: the handler goes in before any
# other import (argparse alone takes a while on a loaded machine).
import os
import signal
import sys


def _interrupted_now(signum: int, frame: object) -> None:
    """SIGINT outside :func:`main`'s reach (importing, exiting): one line, exit 130."""
    try:
        os.write(2, b"t2v-automl: interrupted\n")
    finally:
        os._exit(130)


def _run_as_the_program() -> bool:
    """Whether this process is ``t2v-automl`` (the script, or ``python -m t2v_automl``)."""
    if os.path.basename(sys.argv[0] if sys.argv else "").lower().removesuffix(".exe") \
            in ("t2v-automl", "t2v-automl-script.py"):
        return True
    argv = list(getattr(sys, "orig_argv", []))
    return any(a == "-m" and b in ("t2v_automl", "t2v_automl.cli")
               for a, b in zip(argv, argv[1:], strict=False))


def _take_sigint() -> bool:
    """Install :func:`_interrupted_now` where SIGINT has Python's default handler.

    Only in the program itself (importing the package elsewhere changes nothing), only in
    the main thread, and never where SIGINT is ignored (a background job of a shell).
    """
    try:
        if _run_as_the_program() and signal.getsignal(signal.SIGINT) is \
                signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupted_now)
            return True
    except (ValueError, OSError):  # not the main thread
        pass
    return False


#: Whether this process is the program, with its SIGINT handling (see :func:`main`).
_OWN_SIGINT = _take_sigint()
#: Set by :func:`_keyboard_interrupt`: a Ctrl-C came during :func:`main`.
_SIGINT_SEEN = [False]


def _keyboard_interrupt(signum: int, frame: object) -> None:
    """Ctrl-C inside :func:`main`: remember it, then raise ``KeyboardInterrupt`` as Python's
    default handler does. A C extension being imported at that moment (numpy's) may turn
    the ``KeyboardInterrupt`` into an ``ImportError``; :func:`main` still reports an
    interruption."""
    _SIGINT_SEEN[0] = True
    raise KeyboardInterrupt

import argparse  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from t2v_automl.cli._base import (  # noqa: E402
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    OPTION_DEFAULTS,
    PROG,
    CLIInputError,
    Command,
    Console,
    check_device,
    common_options,
    format_table,
    one_line_warning,
    printable,
    setup_logging,
    start_run,
)
from t2v_automl.cli.bench import BenchCommand  # noqa: E402
from t2v_automl.cli.demo import DemoCommand  # noqa: E402
from t2v_automl.cli.embed import EmbedCommand  # noqa: E402
from t2v_automl.cli.knowledge import (  # noqa: E402
    GROUP_HELP,
    KnowledgeAddCommand,
    KnowledgeBuildCommand,
    KnowledgeInfoCommand,
)
from t2v_automl.cli.select import SelectCommand  # noqa: E402
from t2v_automl.cli.similarity import SimilarityCommand  # noqa: E402
from t2v_automl.exceptions import InvalidInputTypeError, T2VError  # noqa: E402

__all__ = ["EXIT_INPUT", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_UNEXPECTED", "EXIT_USAGE",
           "Command", "Console", "build_parser", "format_table", "main"]

#: Every command, in the order of ``t2v-automl --help``; a name with a space is a
#: sub-command of a group (``knowledge info``).
_COMMANDS: dict[str, type[Command]] = {
    "demo": DemoCommand,
    "embed": EmbedCommand,
    "select": SelectCommand,
    "similarity": SimilarityCommand,
    "knowledge info": KnowledgeInfoCommand,
    "knowledge add": KnowledgeAddCommand,
    "knowledge build": KnowledgeBuildCommand,
    "bench": BenchCommand,
}
#: Help of each group of sub-commands.
_GROUPS = {"knowledge": GROUP_HELP}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``t2v-automl`` (no heavy import).

    Returns
    -------
    argparse.ArgumentParser
    """
    from t2v_automl import __version__

    common = common_options()
    parser = argparse.ArgumentParser(
        prog=PROG, parents=[common],
        description="Task2Vec task embeddings: pick a pre-trained feature extractor for an "
                    "image-classification dataset, and warm-start Optuna with the choice.",
        epilog="exit codes: 0 ok, 2 usage error, 3 input/data error, 1 unexpected error, "
               "130 interrupted. Run `t2v-automl COMMAND --help` for each command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for name, command_type in _COMMANDS.items():
        *group, leaf = name.split(" ")
        subparsers = sub
        if group:
            (g,) = group
            if g not in groups:
                p = sub.add_parser(g, parents=[common], help=_GROUPS[g],
                                   description=_GROUPS[g])
                groups[g] = p.add_subparsers(dest=f"{g}_command", metavar="ACTION",
                                             required=True)
            subparsers = groups[g]
        command = command_type()
        summary = command.summary()
        p = subparsers.add_parser(leaf, parents=[common], help=summary,
                                  description=command.description or summary)
        command.add_arguments(p)
        p.set_defaults(handler=command.run)
    return parser


def _finish_namespace(args: argparse.Namespace) -> Console:
    for k, v in OPTION_DEFAULTS.items():
        if not hasattr(args, k):
            setattr(args, k, v)
    if args.jobs is not None and args.jobs == 0:
        raise CLIInputError("--jobs must not be 0 (use 1, N > 1, or -1 for every core).")
    args.device = check_device(args.device)
    args.console = Console(-1 if args.quiet else min(int(args.verbose or 0), 2))
    return args.console


def _stdout_gone() -> None:
    """Point stdout at /dev/null after a broken pipe, so that the exit's flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real stdout (e.g. captured): nothing to flush
        pass


def _tolerant_streams() -> list[tuple[object, str]]:
    """Make stdout and stderr write what their encoding lacks as backslash escapes.

    A file name that is not UTF-8 reaches Python as lone surrogates, which a strict UTF-8
    stdout (``PYTHONIOENCODING=utf-8:strict``) refuses: the command would fail after its
    work is done. Returns what to restore.
    """
    changed = []
    for stream in (sys.stdout, sys.stderr):
        errors = getattr(stream, "errors", None)
        if errors in (None, "backslashreplace") or not hasattr(stream, "reconfigure"):
            continue
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # a stream that cannot change
            continue
        changed.append((stream, errors))
    return changed


def _interrupted() -> int:
    """One line, exit 130; a further Ctrl-C ends the process with one line too."""
    if _OWN_SIGINT:
        signal.signal(signal.SIGINT, _interrupted_now)
    print(f"{PROG}: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``t2v-automl``; return the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 ok (also when the reader of stdout went away: ``t2v-automl bench | head``),
        1 unexpected error, 2 usage error (argparse exits with it directly), 3 input/data
        error, 130 interrupted.
    """
    handler: logging.Handler | None = None
    old_showwarning = warnings.showwarning
    verbose = False
    restore = _tolerant_streams()
    start_run()
    try:
        _SIGINT_SEEN[0] = False
        if _OWN_SIGINT:  # from here on Ctrl-C raises KeyboardInterrupt: cleanups run
            signal.signal(signal.SIGINT, _keyboard_interrupt)
        args = build_parser().parse_args(argv)
        verbose = bool(getattr(args, "verbose", 0))
        con = _finish_namespace(args)
        handler = setup_logging(con.verbosity)
        warnings.showwarning = one_line_warning
        with warnings.catch_warnings():
            if con.verbosity < 0:
                warnings.simplefilter("ignore")
            code = int(args.handler(args, con))
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _stdout_gone()
        return EXIT_OK
    except KeyboardInterrupt:
        return _interrupted()
    except (T2VError, InvalidInputTypeError) as exc:
        if _SIGINT_SEEN[0]:  # the Ctrl-C surfaced as another error
            return _interrupted()
        if verbose:
            traceback.print_exc()
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"{PROG}: error: {printable(' '.join(str(msg).split()), keep='')}",
              file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if _SIGINT_SEEN[0]:  # e.g. numpy's import turning the Ctrl-C into an ImportError
            return _interrupted()
        if verbose:
            traceback.print_exc()
        msg = printable(" ".join(str(exc).split()), keep="") or "(no message)"
        hint = "" if verbose else " (run with --verbose for the traceback)"
        print(f"{PROG}: error: unexpected {type(exc).__name__}: {msg}{hint}", file=sys.stderr)
        return EXIT_UNEXPECTED
    finally:
        warnings.showwarning = old_showwarning
        if handler is not None:
            logging.getLogger("t2v_automl").removeHandler(handler)
        if not _OWN_SIGINT:  # a caller's streams are left as they were
            for stream, errors in restore:
                with contextlib.suppress(AttributeError, ValueError, OSError):
                    stream.reconfigure(errors=errors)  # type: ignore[attr-defined]
        else:  # exiting: Ctrl-C now ends the process with one line
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGINT, _interrupted_now)
