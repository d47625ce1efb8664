"""Reproduce Gatys, Ecker & Bethge (2015): content and style representations on their own (Fig. 1),
one photo in several styles (Fig. 2) and the alpha/beta-by-layers grid (Fig. 3), as contact sheets;
the spatial control of Gatys et al. (2017): two regions of a photo from two paintings, with and
without guidance (:func:`figure_spatial`); and every registered style loss side by side
(:func:`figure_losses`).

Layer names: the paper's ``conv4_2`` is our ``relu4_2`` (Caffe's ReLU runs in place, so the blob
the paper reads under the conv name holds the rectified activation).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..io import image as image_io
from ..losses import masks
from .batch import stylize_batch
from ..config import StyleConfig
from ..errors import JaxstyleError
from ..io.sheet import contact_sheet
from .problem import ImageLike, Job
from .transfer import Result, stylize

FIG1_CONTENT_LAYERS = ("relu1_2", "relu2_2", "relu3_2", "relu4_2", "relu5_2")
FIG1_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
FIG3_RATIOS = (1e-5, 1e-4, 1e-3, 1e-2)
STYLE_SUBSETS = tuple(FIG1_STYLE_LAYERS[: k + 1] for k in range(5))


def paper_name(layer: str) -> str:
    """Our ``relu4_2`` is the paper's ``conv4_2``."""
    return layer.replace("relu", "conv")


def reconstruct(content: ImageLike, layer: str, config: StyleConfig | None = None, **kw) -> Result:
    """Content reconstruction (Fig. 1, bottom): from white noise, match only ``layer``'s features."""
    config = (config or StyleConfig.paper()).replace(
        content_layers=(layer,), content_layer_weights=None, style_layers=(), style_layer_weights=None,
        style_blend_weights=None, content_weight=1.0, style_weight=0.0, init="noise")
    return stylize(content, (), config, **kw)


# Texture synthesis starts from uniform [0, 1] noise (the default of :func:`texture_config`), not the
# paper preset's 0.5: with no content term, a start with less contrast than the painting sits near
# a saddle of the Gram loss, where L-BFGS without a line search stalls (docs/benchmarks.md).
TEXTURE_NOISE = 1.0


def texture_config(layers: Sequence[str], config: StyleConfig | None = None) -> StyleConfig:
    """The config of a texture from ``layers``: ``config`` (default: the paper preset with a
    ``TEXTURE_NOISE`` start) with only a style term; its own ``noise_scale`` is kept."""
    config = config or StyleConfig.paper(noise_scale=TEXTURE_NOISE)
    return config.replace(content_layers=(), content_layer_weights=None, style_layers=tuple(layers),
                          style_layer_weights=None, content_weight=0.0, style_weight=1.0, init="noise")


def texture(style: ImageLike, layers: Sequence[str], config: StyleConfig | None = None, **kw) -> Result:
    """Style reconstruction / texture synthesis (Fig. 1, top): match only the Gram matrices of ``layers``.

    The output has the style image's aspect ratio at ``config.size``; the start is white noise of
    amplitude ``config.noise_scale`` (see :func:`texture_config`).
    """
    return stylize(None, style, texture_config(layers, config), **kw)


def figure1(content: ImageLike, style: ImageLike, config: StyleConfig | None = None) -> tuple[Image.Image, dict]:
    """Fig. 1: top row textures from growing style-layer subsets (from a ``TEXTURE_NOISE`` start),
    bottom row content reconstructions."""
    config = config or StyleConfig.paper()
    textures = {layers[-1]: texture(style, layers, config.replace(noise_scale=TEXTURE_NOISE)) for layers in STYLE_SUBSETS}
    contents = {layer: reconstruct(content, layer, config) for layer in FIG1_CONTENT_LAYERS}
    cells = [[r.image for r in textures.values()], [r.image for r in contents.values()]]
    # Column k: texture from conv1_1 up to conv{k}_1 (top), reconstruction from conv{k}_2 (bottom).
    labels = [f"to {paper_name(l[-1])} / {paper_name(c)}" for l, c in zip(STYLE_SUBSETS, FIG1_CONTENT_LAYERS)]
    sheet = contact_sheet(cells, ["style", "content"], labels,
                          title="Fig. 1: textures from conv1_1 up to the named layer (top); content from one layer (bottom)")
    return sheet, {"textures": textures, "contents": contents}


def figure2(content: ImageLike, styles: Sequence[ImageLike], config: StyleConfig | None = None,
            batch_size: int | None = None) -> tuple[Image.Image, list[Result]]:
    """Fig. 2: one photo rendered in several styles, as one vmapped batch (same shape, same program)."""
    config = config or StyleConfig.paper()
    results = stylize_batch([Job(content, (s,), config) for s in styles], batch_size=batch_size)
    from ..io.image import load_image

    thumbs = [load_image(s, config.size) if not isinstance(s, np.ndarray) else s for s in styles]
    names = [getattr(s, "stem", None) or (str(s).rsplit("/", 1)[-1].rsplit(".", 1)[0] if isinstance(s, str) else f"style {i + 1}")
             for i, s in enumerate(styles)]
    sheet = contact_sheet([thumbs, [r.image for r in results]], ["painting", "result"], names,
                          title=f"Fig. 2: one photo, {len(styles)} styles (alpha/beta = {config.content_weight / config.style_weight:g})")
    return sheet, results


def figure3(content: ImageLike, style: ImageLike, config: StyleConfig | None = None,
            ratios: Sequence[float] = FIG3_RATIOS, subsets: Sequence[Sequence[str]] = STYLE_SUBSETS,
            batch_size: int | None = None) -> tuple[Image.Image, list[list[Result]]]:
    """Fig. 3: rows are style-layer subsets, columns alpha/beta ratios. Each row is one vmapped batch:
    the ratios are traced, so a row compiles once."""
    config = config or StyleConfig.paper()
    rows = []
    for layers in subsets:
        jobs = [Job(content, (style,), config.replace(style_layers=tuple(layers), style_layer_weights=None,
                                                       content_weight=ratio, style_weight=1.0)) for ratio in ratios]
        rows.append(stylize_batch(jobs, batch_size=batch_size))
    row_labels = [paper_name(l[0]) if len(l) == 1 else f"{paper_name(l[0])}…{paper_name(l[-1])}" for l in subsets]
    sheet = contact_sheet([[r.image for r in row] for row in rows], row_labels, [f"alpha/beta = {r:g}" for r in ratios],
                          title="Fig. 3: style layers (rows) by content:style ratio alpha/beta (columns)")
    return sheet, rows


REGION_TINTS = ((1.0, 0.6, 0.0), (0.0, 0.45, 1.0))  # how the sheet shows region 1 (orange) and 2 (blue)


def horizon_labels(shape: tuple[int, ...], horizon: float) -> np.ndarray:
    """A two-region label image of ``shape``: white above ``horizon`` (a fraction of the height from
    the top: the sky), black below (the ground)."""
    if not 0 < horizon < 1:
        raise JaxstyleError(f"--horizon (={horizon!r}) must be a fraction of the height in (0, 1), e.g. 0.4")
    labels = np.zeros((shape[0], shape[1], 3), np.uint8)
    labels[: max(1, round(horizon * shape[0]))] = 255
    return labels


def figure_spatial(content: ImageLike, styles: Sequence[ImageLike], config: StyleConfig | None = None,
                   content_mask: str | None = None, horizon: float = 0.5) -> tuple[Image.Image, dict]:
    """Spatial control (Gatys et al. 2017, Fig. 6's idea): the photo's first region (the sky) from
    the first painting and its second (the ground) from the second, with guided Gram matrices;
    beside it, the same two paintings blended over the whole image without guidance.

    Args:
      content_mask: a label image of the photo with exactly two colours, the first seen (row by
        row from the top) styled by the first painting; default :func:`horizon_labels`.
      horizon: where the default mask splits the photo, as a fraction of its height.

    Returns:
      The contact sheet (photo, mask, paintings, unguided, guided) and ``{"unguided", "guided"}``
      results.
    """
    if len(styles) != 2:
        raise JaxstyleError(f"the spatial figure takes two paintings (sky, ground), not {len(styles)}")
    config = config or StyleConfig.paper()
    photo = image_io.load_image(content, config.size) if not isinstance(content, np.ndarray) else content
    paintings = [image_io.load_image(s) if not isinstance(s, np.ndarray) else s for s in styles]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if content_mask is None:
            content_mask = folder / "content_mask.png"
            image_io.save_image(horizon_labels(photo.shape, horizon), content_mask)
        index, colours = masks.regions(image_io.load_image(content_mask), f"content mask {content_mask}")
        if len(colours) != 2:
            raise JaxstyleError(f"the content mask {content_mask} has {len(colours)} colours; the spatial figure needs "
                                "exactly two (sky, ground)")
        style_masks = []
        for k, (painting, colour) in enumerate(zip(paintings, colours)):  # each painting wholly one region
            path = folder / f"style_mask_{k + 1}.png"
            image_io.save_image(np.full(painting.shape[:2] + (3,), colour, np.uint8), path)
            style_masks.append(str(path))
        guided = stylize(content, list(styles), config.replace(content_mask=str(content_mask), style_masks=tuple(style_masks)))
        unguided = stylize(content, list(styles), config)
    tint = np.asarray(REGION_TINTS, np.float32)[image_io.resize_nearest(index, photo.shape[:2])]
    sheet = contact_sheet([[photo, 0.5 * photo + 0.5 * tint, paintings[0], paintings[1], unguided.image, guided.image]], [],
                          ["photo", "regions: 1 orange, 2 blue", "painting 1 (region 1)", "painting 2 (region 2)", "without guidance",
                           "guided Grams"],
                          title="Spatial control (Gatys et al. 2017): each region of the photo from its own painting")
    return sheet, {"unguided": unguided, "guided": guided}


def figure_losses(content: ImageLike, style: ImageLike, config: StyleConfig | None = None,
                  names: Sequence[str] | None = None) -> tuple[Image.Image, dict[str, Result]]:
    """One photo and painting rendered with every registered style loss (or ``names``) at the same
    settings and steps, side by side: photo, painting, then one labelled column per loss."""
    from .. import losses

    config = config or StyleConfig()
    names = tuple(names or losses.names())
    results = {name: stylize(content, (style,), config.replace(style_loss=name)) for name in names}
    photo = results[names[0]].image if isinstance(content, np.ndarray) else image_io.load_image(content, config.size)
    painting = style if isinstance(style, np.ndarray) else image_io.load_image(style, config.size)
    labels = [f"{name} ({results[name].timings['total']:.0f} s)" for name in names]
    sheet = contact_sheet([[photo, painting, *(results[n].image for n in names)]], [], ["photo", "painting", *labels],
                          title=f"Style losses at {config.size} px, {config.steps} steps, the same settings otherwise")
    return sheet, results
