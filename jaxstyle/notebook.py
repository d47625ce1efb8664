"""Live preview in Jupyter and Colab: watch the image form while it is optimised.

    result = jaxstyle.stylize(CONTENT, STYLE, config, callback=jaxstyle.notebook.live(every=20))

:func:`live` returns a ``stylize`` callback. In a notebook it keeps one output area up to date in
place (IPython display handles): the current image beside the loss curve so far, and a line with
the step, the weighted loss terms and the time per step. Elsewhere (a script, a terminal) it is a
progress bar. The image and the loss terms are fetched from the device only at the preview
interval, so the optimisation itself is not slowed (``bench/preview.py`` measures it).
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from .io.sheet import loss_plot


def in_notebook() -> bool:
    """Whether code runs in a Jupyter kernel (Jupyter, Colab, VS Code), where rich output shows."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class Live:
    """A ``stylize`` callback that previews every ``every`` steps (see :func:`live`)."""

    def __init__(self, every: int = 10, width: int = 320, display=None):
        if not (isinstance(every, int) and every >= 1):
            from .errors import JaxstyleError

            raise JaxstyleError(f"`every` (={every!r}) must be a positive number of steps, e.g. 10")
        self.every = every
        self.width = width
        self.losses: list[tuple[int, float]] = []
        self._display = display  # IPython.display.display, or None: a progress bar
        self._image = self._text = self._bar = None
        self._last = None  # (step, time) of the previous preview
        self.previews = 0

    def __call__(self, p) -> None:
        self.losses.append((p.step, p.loss))
        if self._display is None:
            self._progress(p)
            return
        last = p.step >= p.steps
        if not last and (self._last is not None and p.step - self._last[0] < self.every):
            return
        now = time.perf_counter()
        per_step = (now - self._last[1]) / max(p.step - self._last[0], 1) if self._last else p.elapsed / max(p.step, 1)
        self._last = (p.step, now)
        terms = p.terms()  # fetched from the device here, at the preview interval only
        text = (f"step {p.step}/{p.steps}  loss {p.loss:.4g}  "
                + "  ".join(f"{k} {v:.3g}" for k, v in terms.items() if k != "total")
                + f"  {per_step * 1000:.0f} ms/step" + ("  (done)" if last else ""))
        frame = self.frame(p.image())
        if self._image is None:
            self._image = self._display(frame, display_id=True)
            self._text = self._display(_Text(text), display_id=True)
        else:
            self._image.update(frame)
            self._text.update(_Text(text))
        self.previews += 1

    def frame(self, image: np.ndarray) -> Image.Image:
        """The current image (``width`` px wide) beside the loss curve so far, as one picture."""
        im = Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))
        im = im.resize((self.width, max(1, round(im.height * self.width / im.width))), Image.Resampling.LANCZOS)
        steps = np.array([s for s, _ in self.losses])
        curve = loss_plot({"loss": np.array([v for _, v in self.losses])}, title="loss at preview steps",
                          width=max(320, self.width), height=max(im.height, 200)) if len(steps) > 1 else None
        canvas = Image.new("RGB", (im.width + (curve.width if curve else 0), max(im.height, curve.height if curve else 0)),
                           "white")
        canvas.paste(im, (0, 0))
        if curve is not None:
            canvas.paste(curve, (im.width, 0))
        return canvas

    def _progress(self, p) -> None:
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=p.steps, unit="step", desc="stylize", dynamic_ncols=True)
        self._bar.total = p.steps  # fewer once a scale stops early (tolerance)
        self._bar.update(p.step - self._bar.n)
        self._bar.set_postfix(loss=f"{p.loss:.4g}")
        if p.step >= p.steps:
            self._bar.close()


class _Text:
    """Plain text as a display object (one line, updated in place)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def live(every: int = 10, width: int = 320) -> Live:
    """A ``stylize`` callback that shows the image forming, updated in place every ``every`` steps.

    ``every`` is rounded up to the run's ``config.chunk`` (callbacks come every ``chunk`` steps).
    Outside a notebook: a progress bar.
    """
    display = None
    if in_notebook():
        from IPython.display import display
    return Live(every, width, display)
