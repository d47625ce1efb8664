"""Ctrl-C and SIGTERM as one clean ending: the command line stops at the next safe point and says
what it kept.

``install()`` (the CLI only; a library must not take over signals) makes SIGINT and SIGTERM raise
:class:`Interrupted` and remembers that they came, so an interrupt that lands inside code which
swallows exceptions (a callback run by JAX, a progress bar) still stops the run at the next
:func:`check` (every optimizer step, every tile, every sweep job).
"""

from __future__ import annotations

import contextlib
import signal
import sys

_received: int | None = None
_kept: list[str] = []
_deferring = 0


class Interrupted(KeyboardInterrupt):
    """Raised for SIGINT (Ctrl-C) or SIGTERM; ``exit_code`` is 130 or 143 as shells expect."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)


def _handler(signum, frame):
    global _received
    _received = signum
    if not _deferring:
        raise Interrupted(signum)


@contextlib.contextmanager
def deferred():
    """Inside the block a signal is only recorded; it is raised by the first :func:`check` after it.
    For updates that must not be cut in half (a training step and the state that records it)."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1


@contextlib.contextmanager
def installed():
    """SIGINT and SIGTERM raise :class:`Interrupted` inside the block; the old handlers come back after."""
    global _received
    _received = None
    _kept.clear()
    try:
        previous = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        previous = {}
    hook = sys.unraisablehook

    def quiet_interrupts(unraisable):
        # An interrupt that lands in a callback Python cannot propagate from (JAX's garbage-collection
        # callback) is "ignored" with a printed traceback; it is not lost (check() raises it again).
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            hook(unraisable)

    sys.unraisablehook = quiet_interrupts
    try:
        yield
    finally:
        sys.unraisablehook = hook
        for s, h in previous.items():
            signal.signal(s, h)


def check() -> None:
    """Raise :class:`Interrupted` if a signal arrived (even if its first exception was swallowed)."""
    if _received is not None:
        raise Interrupted(_received)


def keep(what: str) -> None:
    """Record an output that is complete on disk, for the message after an interrupt."""
    _kept.append(what)


def kept_summary() -> str:
    """``"kept a, b"`` (or the first, the count and the last) or ``"no output written"``."""
    if not _kept:
        return "no output written"
    if len(_kept) <= 3:
        return "kept " + ", ".join(_kept)
    return f"kept {len(_kept)} files: {_kept[0]} … {_kept[-1]}"
