"""The network on an image of any size at bounded memory: row bands, exact, in passes over the image.

Instance normalisation divides by statistics over the whole image, so a band cannot be finished on
its own. :func:`apply_banded` first finds each normalisation's statistics, in order: pass ``k`` runs
every band up to normalisation ``k`` (the earlier ones normalised with the statistics already found)
and adds up the mean and spread of the rows the band owns (merged in float64, Chan et al.'s pairwise
update); a last pass runs every band to the end with all of them. Each band is read with a halo of
``RECEPTIVE_RADIUS`` rows each side, more than any output row depends on, so the rows it owns are
exactly the whole image's: the same result as :func:`whole`, like the tiled optimisation.

Every band window has one shape, so each pass compiles once whatever the image's height.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from . import transformer
from .transformer import MULTIPLE, NORMS, RECEPTIVE_RADIUS

# Bytes per pixel of a whole forward pass: per channel of width, what XLA:CPU's compiled program holds
# (temporaries, arguments and output: 17.1-18.0 at widths 16 and 32, 512x512 and 1024x768, from
# ``whole_on_device.lower(params, x).compile().memory_analysis()``), and the host's copies of the photo and output.
BYTES_PER_PIXEL_PER_WIDTH = 18.0
HOST_BYTES_PER_PIXEL = 48.0


def padded(image: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) padded by reflection at the bottom and right to sides that are multiples of 4."""
    h, w = image.shape[:2]
    ph, pw = -h % MULTIPLE, -w % MULTIPLE
    if not (ph or pw):
        return image
    return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="symmetric")


@jax.jit
def whole_on_device(params: dict, image: jax.Array) -> jax.Array:
    """The network on one (H, W, 3) device array, H and W multiples of 4 (jitted; no host copies)."""
    return transformer.forward(params, image[None], chunk=transformer.CHUNK)[0]


def whole(params: dict, image: np.ndarray) -> np.ndarray:
    """The network on a whole (H, W, 3) image in [0, 1], any size (padded to multiples of 4, then cropped)."""
    h, w = image.shape[:2]
    return np.asarray(whole_on_device(params, jnp.asarray(padded(image), jnp.float32)))[:h, :w]


def whole_bytes(shape: tuple[int, ...], width: int) -> float:
    """Estimated peak bytes of :func:`whole` on an image of ``shape``."""
    return shape[0] * shape[1] * (width * BYTES_PER_PIXEL_PER_WIDTH + HOST_BYTES_PER_PIXEL)


@dataclass(frozen=True)
class Band:
    """One band: the window of rows read, and the rows of it that the band owns (window coordinates)."""

    start: int  # first row of the window in the (padded) image
    keep: tuple[int, int]  # owned rows [lo, hi) of the window


def plan(height: int, rows: int) -> list[Band]:
    """Bands owning ``rows`` rows each (a multiple of 4; the last fewer), read through windows of
    ``rows + 2 * RECEPTIVE_RADIUS`` rows (or the whole ``height``, a multiple of 4, if that is less)."""
    assert rows % MULTIPLE == 0 and height % MULTIPLE == 0 and rows > 0
    window = min(height, rows + 2 * RECEPTIVE_RADIUS)
    bands = []
    for core in range(0, height, rows):
        start = min(max(core - RECEPTIVE_RADIUS, 0), height - window)
        bands.append(Band(start, (core - start, min(core + rows, height) - start)))
    return bands


@partial(jax.jit, static_argnames=("upto",))
def _moments(params, window, stats, keep, upto: int):
    """Owned rows' count, mean and sum of squared deviations (per channel) at normalisation ``upto``."""
    y = transformer.forward(params, window[None], stats, upto, chunk=transformer.CHUNK)[0]
    factor = window.shape[0] // y.shape[0]
    rows = jnp.arange(y.shape[0]) * factor
    mask = ((rows >= keep[0]) & (rows < keep[1])).astype(y.dtype)[:, None, None]
    n = jnp.sum(mask) * y.shape[1]
    mean = jnp.sum(y * mask, axis=(0, 1)) / n
    m2 = jnp.sum(jnp.square((y - mean[None, None, :]) * mask), axis=(0, 1))
    return n, mean, m2


@jax.jit
def _output(params, window, stats):
    return transformer.forward(params, window[None], stats, chunk=transformer.CHUNK)[0]


def _merge(a, b):
    """Chan et al.'s pairwise merge of (n, mean, M2) in float64."""
    n = a[0] + b[0]
    delta = b[1] - a[1]
    return n, a[1] + delta * (b[0] / n), a[2] + b[2] + delta ** 2 * (a[0] * b[0] / n)


def apply_banded(params: dict, image: np.ndarray, rows: int, progress=None) -> np.ndarray:
    """The network on ``image`` (H, W, 3) in [0, 1], band by band (``rows`` owned rows each, a multiple
    of 4): equal to :func:`whole` up to float rounding, at the memory of one window.

    ``progress(done, total)`` is called after each band of each pass.
    """
    h, w = image.shape[:2]
    full = padded(image.astype(np.float32))
    bands = plan(full.shape[0], rows)
    height = min(full.shape[0], rows + 2 * RECEPTIVE_RADIUS)
    total, done = (len(NORMS) + 1) * len(bands), 0
    stats: list[jax.Array] = []
    for k in range(len(NORMS)):
        merged = None
        for band in bands:
            window = jnp.asarray(full[band.start:band.start + height])
            n, mean, m2 = (np.asarray(v, np.float64) for v in _moments(params, window, tuple(stats),
                                                                      jnp.asarray(band.keep), upto=k))
            merged = (n, mean, m2) if merged is None else _merge(merged, (n, mean, m2))
            done += 1
            if progress is not None:
                progress(done, total)
        n, mean, m2 = merged
        stats.append(jnp.asarray(np.stack([mean, m2 / n]), jnp.float32))
    out = np.empty(full.shape, np.float32)
    for band in bands:
        window = jnp.asarray(full[band.start:band.start + height])
        lo, hi = band.keep
        out[band.start + lo:band.start + hi] = np.asarray(_output(params, window, tuple(stats)))[lo:hi]
        done += 1
        if progress is not None:
            progress(done, total)
    return out[:h, :w]
