"""A trained network on photos of any size: whole when it fits in memory, else in exact row bands."""

from __future__ import annotations

import os

import numpy as np

from ..errors import JaxstyleError
from ..evaluate import memory
from ..io import color
from ..io import image as image_io
from . import bands, store
from .transformer import MULTIPLE, RECEPTIVE_RADIUS

COLORS = ("none", "luminance", "histogram")
MIN_SIDE = 16  # px: a quarter-resolution layer of at least 4 rows for the reflection padding


def band_rows(shape: tuple[int, ...], width: int, budget: float | None) -> int | None:
    """Rows each band owns so that one window fits in ``budget`` bytes; ``None``: the whole image fits."""
    if budget is None or bands.whole_bytes(shape, width) <= budget:
        return None
    per_row = bands.whole_bytes((1, shape[1]), width)
    rows = int(budget // per_row) - 2 * RECEPTIVE_RADIUS
    rows -= rows % MULTIPLE
    if rows < MULTIPLE:
        need = (2 * RECEPTIVE_RADIUS + MULTIPLE) * per_row / 2 ** 30
        raise JaxstyleError(f"a {shape[1]} px wide photo needs {need:.1f} GiB for one band of rows; "
                            "allow more (--max-memory) or lower --size")
    return rows


def apply(network: store.Network | str | os.PathLike, photo, *, size: int | None = None, color_mode: str | None = None,
          max_memory: float | None = None, rows: int | None = None, progress=None) -> np.ndarray:
    """Stylise ``photo`` with ``network``.

    Args:
      network: a :class:`~jaxstyle.net.store.Network` or the path of a network file.
      photo: an image path or (H, W, 3) array in [0, 1].
      size: long side of the output, px (default: the photo's own).
      color_mode: ``"none"``, ``"luminance"`` (the output's luminance, the photo's colours) or
        ``"histogram"`` (the output recoloured to the photo's colour mean and covariance); default:
        ``"luminance"`` for a network trained on luminance, else ``"none"``.
      max_memory: GiB for the network's activations (default: what this machine allows,
        ``jaxstyle.evaluate.memory``); a photo that needs more runs in exact row bands.
      rows: force bands of this many rows (a multiple of 4; for tests and benchmarks).
      progress: ``progress(done, total)`` after each band of each pass (banded runs only).

    Returns:
      The stylised image, (H, W, 3) float32 in [0, 1].
    """
    if not isinstance(network, store.Network):
        network = store.load(network)
    trained = network.training.get("style", {}).get("color", "none")
    color_mode = color_mode or ("luminance" if trained == "luminance" else "none")
    if color_mode not in COLORS:
        raise JaxstyleError(f"--color (={color_mode!r}) must be one of {', '.join(COLORS)}")
    photo = image_io.as_image(photo, "photo")
    if size is not None:
        photo = image_io.resize_long_side(photo, size)
    if min(photo.shape[:2]) < MIN_SIDE:
        raise JaxstyleError(f"the photo is {photo.shape[1]}x{photo.shape[0]} px: each side must be at least {MIN_SIDE} px "
                            "for the network's downsampling; give a larger photo or --size")
    source = color.luminance_image(photo) if trained == "luminance" else photo
    if rows is None:
        if max_memory is not None and not (isinstance(max_memory, (int, float)) and 0 < max_memory < float("inf")):
            raise JaxstyleError(f"--max-memory (={max_memory!r}) must be a positive number of GB, e.g. 4")
        budget, _ = memory.budget(None if max_memory is None else max_memory * 2**30)
        rows = band_rows(photo.shape, network.width, budget)
    out = bands.whole(network.params, source) if rows is None else \
        bands.apply_banded(network.params, source, rows, progress)
    out = np.clip(out, 0.0, 1.0)
    if color_mode == "luminance":
        out = color.recombine_luminance(out, photo)
    elif color_mode == "histogram":
        out = color.match_histogram(out, photo)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
