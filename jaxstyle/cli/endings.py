"""How a command reports: progress bars, lines that do not tear them, and every ending as one line."""

from __future__ import annotations

import contextlib
import sys
import traceback

from .. import interrupt
from ..config import StyleConfig
from ..errors import JaxstyleError, is_out_of_memory

ISSUES = "https://github.com/jaxstyle/jaxstyle/issues"


class Bar:
    """A progress bar over jobs or frames, made at the first report (when the total is known and the
    inputs have been checked), closed on leaving its ``with``; nothing when ``quiet``."""

    def __init__(self, quiet: bool, unit: str, desc: str):
        self.quiet, self.unit, self.desc, self.bar = quiet, unit, desc, None

    def show(self, done: int, total: int, **postfix) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=max(0, done - 1), unit=self.unit, desc=self.desc, dynamic_ncols=True)
        self.bar.total = total
        self.bar.update(done - self.bar.n)
        if postfix:
            self.bar.set_postfix(**postfix)

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def resumable(count, what: str, where):
    """On Ctrl-C or SIGTERM, say how many finished items (``count()``) stay in ``where`` for a rerun."""
    try:
        yield
    except KeyboardInterrupt:
        done = count()
        if done:
            interrupt.keep(f"{done} finished {what}(s) in {where} (run the same command again to resume)")
        raise


def say(line: str) -> None:
    """A line on stderr that does not tear the progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(f"jaxstyle: {line}", file=sys.stderr)


@contextlib.contextmanager
def step_progress(config: StyleConfig, quiet: bool):
    """A progress bar over a run's steps, as a callback for ``Progress`` reports (``None`` when ``quiet``)."""
    if quiet:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=sum(steps for _, steps in config.schedule()), unit="step", desc="stylize", dynamic_ncols=True)

    def callback(p):
        bar.total = p.steps  # fewer once a scale stops early (--tolerance)
        bar.update(p.step - bar.n)
        bar.set_postfix(loss=f"{p.loss:.4g}")

    try:
        yield callback
    finally:
        bar.close()


def show_warning(message, category, filename, lineno, file=None, line=None):
    """``warnings.showwarning`` for the CLI: one line, ``jaxstyle: warning: …``, on stderr."""
    print(f"jaxstyle: warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def one_line_endings(debug: bool, status: dict):
    """Every ending as one line on stderr and an exit status in ``status["code"]``: 2 bad input
    (the line names the problem and the fix), 130/143 interrupted (the line says what was kept),
    1 internal error (with ``debug``, the traceback too)."""
    try:
        yield
    except JaxstyleError as e:
        print(f"jaxstyle: error: {e}", file=sys.stderr)
        status["code"] = 2
    except KeyboardInterrupt as e:
        print(f"jaxstyle: interrupted; {interrupt.kept_summary()}", file=sys.stderr)
        status["code"] = getattr(e, "exit_code", 130)
    except Exception as e:  # noqa: BLE001: the one place that turns every other failure into one line
        if debug:
            traceback.print_exc()
        if is_out_of_memory(e):
            print("jaxstyle: error: out of memory; lower --size (or --style-scale), or set --max-memory below "
                  f"what this machine has free so the image is tiled{'' if debug else ' (--debug for details)'}",
                  file=sys.stderr)
            status["code"] = 2
        else:
            first = (str(e).strip().splitlines() or [""])[0][:200]
            print(f"jaxstyle: internal error: {type(e).__name__}: {first}; please report it with the command line "
                  f"at {ISSUES}{'' if debug else ' (rerun with --debug for the traceback)'}", file=sys.stderr)
            status["code"] = 1
