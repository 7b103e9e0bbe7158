"""The ``t2v-automl`` command: embed tasks, pick an extractor, warm-start a study.

Sub-commands (``t2v-automl COMMAND --help`` for each)::

    demo                 the whole job on a bundled real task, end to end
    embed PATH...        Task2Vec embeddings of image folders / .npz tasks -> .npz + .json
    select PATH          rank the zoo's extractors for a dataset (default knowledge base)
    similarity PATH...   task-distance matrix (table) and a clustered heatmap (PNG)
    knowledge build|info|add    manage knowledge bases
    bench                print (and with --run, re-run) the benchmark tables

Global options (before or after the sub-command): ``--device``, ``--jobs``, ``--probe``,
``--quiet`` / ``--verbose``.

Exit codes: 0 success (also when stdout is closed early, as by ``| head``); 2 usage error
(bad options, from argparse); 3 input or data error (every
:class:`~t2v_automl.exceptions.T2VError`: missing folder, folder without images, unknown
extractor or probe, incompatible knowledge base...); 1 anything unexpected; 130
interrupted. Errors are one line on stderr, ``t2v-automl: error: ...``; the traceback is
shown with ``--verbose`` only.

One command is one class (:class:`~t2v_automl.cli._base.Command`) in one module, listed
in :data:`_COMMANDS`. This package is the one place in t2v-automl that writes to the
terminal. Building the parser imports neither numpy, torch, scikit-learn nor optuna: the
commands import them in their ``run``, so that ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Sequence

from t2v_automl.cli._base import (
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
    common_options,
    format_table,
    one_line_warning,
    setup_logging,
)
from t2v_automl.cli.bench import BenchCommand
from t2v_automl.cli.demo import DemoCommand
from t2v_automl.cli.embed import EmbedCommand
from t2v_automl.cli.knowledge import (
    GROUP_HELP,
    KnowledgeAddCommand,
    KnowledgeBuildCommand,
    KnowledgeInfoCommand,
)
from t2v_automl.cli.select import SelectCommand
from t2v_automl.cli.similarity import SimilarityCommand
from t2v_automl.exceptions import InvalidInputTypeError, T2VError

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
        epilog="exit codes: 0 ok, 2 usage error, 3 input/data error, 1 unexpected error. "
               "Run `t2v-automl COMMAND --help` for each command.")
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
    try:
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
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (T2VError, InvalidInputTypeError) as exc:
        if verbose:
            traceback.print_exc()
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"{PROG}: error: {' '.join(str(msg).split())}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if verbose:
            traceback.print_exc()
        msg = " ".join(str(exc).split()) or "(no message)"
        hint = "" if verbose else " (run with --verbose for the traceback)"
        print(f"{PROG}: error: unexpected {type(exc).__name__}: {msg}{hint}", file=sys.stderr)
        return EXIT_UNEXPECTED
    finally:
        warnings.showwarning = old_showwarning
        if handler is not None:
            logging.getLogger("t2v_automl").removeHandler(handler)
