"""The ``jaxstyle`` command: one parser of every command (``stylize`` is the default), and ``main``.

One argparse parser with a subparser per command (``stylize`` is the default, so the command's
first word may be left out); each command family's module adds its own subparsers. The option
table of ``docs/options.md`` is generated from this parser (:func:`options_table`, checked by a
test). Every ending is one line on stderr (:func:`main`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings

from .. import compile_cache, interrupt
from ..config import KINDS
from . import net, paper, stylize, sweep, video, weights
from .endings import one_line_endings, show_warning
from .options import COMMANDS, Parser


class _Command(Parser):
    """The top-level parser: a first word that is not a command means ``stylize``."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        if not args or args[0] not in COMMANDS:
            args = ["stylize", *args]
        return super().parse_known_args(args, namespace)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every command, as argparse subparsers."""
    top = _Command(prog="jaxstyle", description="Neural style transfer (Gatys, Ecker & Bethge 2015).")
    sub = top.add_subparsers(dest="command", required=True, parser_class=Parser)
    for family in (stylize, sweep, video, net, weights, paper):
        family.add_parsers(sub)
    return top


def subparser(command: str) -> argparse.ArgumentParser:
    """The parser of one command (``stylize``, ``sweep``, …)."""
    top = build_parser()
    return next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices[command]


def options_table() -> str:
    """The option table of docs/options.md (markdown), generated from the ``stylize`` parser."""
    rows = ["| option | default | meaning | changing it |", "|---|---|---|---|"]
    for action in subparser("stylize")._actions:
        if not action.option_strings or action.dest == "help":
            continue
        flags = ", ".join(f"`{o}`" for o in action.option_strings)
        meaning = action.help.rsplit(" (default: ", 1)[0].replace("%%", "%")
        if action.choices and not all(str(c) in meaning for c in action.choices):
            meaning += " (" + ", ".join(f"`{c}`" for c in action.choices) + ")"
        default = "required" if action.required else action.shown or "-"
        rows.append(f"| {flags} | {default} | {meaning} | {KINDS.get(action.kind, '-')} |")
    return "\n".join(rows) + "\n"


def main(argv=None, *, handle_signals: bool = True) -> int:
    """The ``jaxstyle`` command; returns its exit status (``--debug`` anywhere adds tracebacks)."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    status = {"code": 0}
    with interrupt.installed() if handle_signals else contextlib.nullcontext(), warnings.catch_warnings(), \
            one_line_endings("--debug" in argv, status):
        warnings.showwarning = show_warning
        argv = [a for a in argv if a != "--debug"]
        args = build_parser().parse_args(argv)
        compile_cache.enable()  # a second run at the same size reads its programs back instead of compiling
        status["code"] = args.run(args, argv)
    return status["code"]
