"""The console script: signal handlers first, then the (slow) imports of JAX and the CLI."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

STARTUP = "jaxstyle: interrupted during start-up; no output written"


def _stop_during_start_up(code: int) -> int:
    print(STARTUP, file=sys.stderr)
    return code


@contextlib.contextmanager
def _signals_deferred():
    """SIGINT and SIGTERM held back (not lost) while the block runs, delivered when it ends.

    The import of JAX loads C extensions; a Ctrl-C whose handler ran in the middle of that crashed
    the interpreter (SIGSEGV in ``jaxlib.cpu_feature_guard``) about one run in six at 0.1 s after
    start. Held back, it arrives a second later, at a safe point, and ends the run cleanly.
    """
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def main(argv=None) -> int:
    """The ``jaxstyle`` console script: run the command line, ending an interrupted process at once."""
    code = _main(argv)
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        _end_now(code)
    return code


def _end_now(code: int) -> None:
    """End an interrupted process here, without the interpreter's teardown.

    An interrupt stops the run between Python statements, but XLA may still be at work in its own
    threads (a compilation, a step in flight), and tearing the interpreter down under them crashed
    the process after its one-line message: SIGABRT ("pure virtual method called") or SIGSEGV in 2 of
    18 sweeps sent SIGTERM 3, 5 or 8 s after starting on an empty compilation cache. Everything the run
    keeps is complete on disk by now (outputs are written whole and renamed; ``finally`` blocks have
    run), so what is skipped is only the teardown.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _main(argv=None) -> int:
    try:
        from .. import interrupt

        with interrupt.installed():
            try:
                with _signals_deferred():
                    from .app import main as cli_main
                interrupt.check()  # a signal held back during the imports stops here
            except KeyboardInterrupt as e:
                return _stop_during_start_up(getattr(e, "exit_code", 130))
            return cli_main(argv, handle_signals=False)
    except KeyboardInterrupt:  # before the handlers were in place
        return _stop_during_start_up(130)


if __name__ == "__main__":
    sys.exit(main())
