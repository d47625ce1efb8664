"""Region masks for spatially guided style transfer (Gatys, Ecker, Bethge, Hertzmann & Shechtman,
"Controlling Perceptual Factors in Neural Style Transfer", CVPR 2017, section 4 "Spatial control").

A label image (each distinct colour a region) becomes one mask per region; a mask is carried down
to a VGG layer's resolution in one of the paper's two ways:

* ``"downsample"``: the mask is averaged over each pooling window, so border positions get
  fractional weights (the paper's simple propagation);
* ``"eroded"``: a position belongs to a region only if its whole receptive field does (every 3x3
  convolution shrinks the region by one position, every pooling keeps a window only if all four of
  its positions are in), so no feature at a layer mixes two regions. The image's own border does
  not erode (outside the image is no other region).

The guided Gram matrix of a region (:func:`guided_gram`) is ``F^T diag(m) F / sum(m)``: with an
all-ones mask it is the plain Gram matrix, and the Grams of masks that partition the image, weighted
by their masses, sum to it.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from ..io import image as image_io
from ..errors import JaxstyleError
from ..model.vgg import LAYERS

Propagation = Literal["downsample", "eroded"]
PROPAGATIONS = ("downsample", "eroded")
MAX_REGIONS = 32  # more distinct colours than this is a photo passed by mistake, not a label image


def regions(labels: np.ndarray, what: str = "mask") -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """A label image → ``(index map (H, W) int32, the colour of each region)``, colours in first-seen
    (row-major) order.

    Args:
      labels: (H, W, 3) uint8 label image (or float in [0, 1], scaled to 0-255 and rounded).
      what: how to name the image in errors.
    """
    labels = np.asarray(labels)
    if labels.dtype != np.uint8:
        labels = np.clip(np.rint(np.asarray(labels, np.float64) * 255), 0, 255).astype(np.uint8)
    if labels.ndim != 3 or labels.shape[-1] != 3:
        raise JaxstyleError(f"{what} has shape {labels.shape}; a label image is (height, width, 3) RGB")
    flat = labels.reshape(-1, 3)
    colours, first, index = np.unique(flat, axis=0, return_index=True, return_inverse=True)
    if len(colours) > MAX_REGIONS:
        raise JaxstyleError(f"{what} has {len(colours)} colours; a label image paints each region in one flat colour "
                            f"(at most {MAX_REGIONS}): was a photo passed by mistake? (save masks as PNG, not JPEG)")
    order = np.argsort(first)  # regions in the order their colour first appears
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[index.ravel()].reshape(labels.shape[:2]).astype(np.int32), [tuple(int(v) for v in colours[k]) for k in order]


def one_hot(index: np.ndarray, n: int, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(n, H, W) float32 masks from an index map, resized with nearest neighbour (never blended)
    to ``shape`` = (height, width) if given."""
    if shape is not None and tuple(index.shape) != tuple(shape):
        index = image_io.resize_nearest(index, shape)
    return (index[None] == np.arange(n).reshape(n, 1, 1)).astype(np.float32)


def _conv_step(m: jax.Array, propagation: Propagation) -> jax.Array:
    if propagation == "downsample":
        return m
    # 3x3 erosion with the image border neutral: a min filter over a window padded with ones.
    padded = jnp.pad(m, ((0, 0), (1, 1), (1, 1)), constant_values=1.0)
    h, w = m.shape[1:]
    return jnp.min(jnp.stack([padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)]), axis=0)


def _pool_step(m: jax.Array, propagation: Propagation) -> jax.Array:
    n, h, w = m.shape
    blocks = m[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2)
    return blocks.mean(axis=(2, 4)) if propagation == "downsample" else blocks.min(axis=(2, 4))


def at_layers(masks: jax.Array, layers, propagation: Propagation = "eroded") -> dict:
    """Masks (R, H, W) carried to each layer's resolution: ``{layer: (R, H_l, W_l)}``.

    Follows VGG-19's structure up to the deepest layer asked for: each convolution erodes (or, for
    ``"downsample"``, leaves the mask as is), each 2x2 pooling (floor, as ``vgg.pool``) averages (or
    keeps only whole windows).
    """
    if propagation not in PROPAGATIONS:
        raise JaxstyleError(f"unknown mask propagation {propagation!r}; choose one of {', '.join(PROPAGATIONS)}")
    wanted = set(layers)
    last = max(LAYERS.index(name) for name in wanted)
    out, m = {}, jnp.asarray(masks, jnp.float32)
    for name in LAYERS[: last + 1]:
        if name.startswith("conv"):
            m = _conv_step(m, propagation)
        elif name.startswith("pool"):
            m = _pool_step(m, propagation)
        if name in wanted:
            out[name] = m
    return out


def layer_masks(masks: jax.Array, layers, propagation: Propagation = "eroded") -> tuple[dict, list]:
    """:func:`at_layers`, except that a region eroded away at a layer (narrower than that layer's
    receptive field: 2 x 85 px at relu5_1) takes its downsampled mask there instead of vanishing.

    Returns:
      ``({layer: (R, H_l, W_l)}, [(region index, layer), …] where the downsampled mask stands in)``.
    """
    out = at_layers(masks, layers, propagation)
    if propagation != "eroded":
        return out, []
    soft = at_layers(masks, layers, "downsample")
    replaced = []
    for layer, m in out.items():
        gone = (np.asarray(jnp.sum(m, axis=(1, 2))) <= 0) & (np.asarray(jnp.sum(soft[layer], axis=(1, 2))) > 0)
        if gone.any():
            out[layer] = jnp.where(jnp.asarray(gone).reshape(-1, 1, 1), soft[layer], m)
            replaced += [(int(r), layer) for r in np.flatnonzero(gone)]
    return out, replaced


def check_regions(masks_at: dict, colours, what: str = "mask") -> None:
    """Refuse a region that has no position left at some layer (too small, or eroded away)."""
    for layer, m in masks_at.items():
        mass = np.asarray(jnp.sum(m, axis=(1, 2)))
        for r, value in enumerate(mass):
            if value <= 0:
                raise JaxstyleError(f"region {r + 1} (colour {colours[r]}) of the {what} is empty at {layer} "
                                    f"({m.shape[2]}x{m.shape[1]}): make the region larger, use the downsampled "
                                    "masks, or use shallower style layers")


def guided_gram(features: jax.Array, mask: jax.Array) -> jax.Array:
    """``F^T diag(m) F / sum(m)``: the Gram matrix of one region.

    Args:
      features: (H, W, C) activations.
      mask: (H, W) region weights in [0, 1] at this layer's resolution.

    Returns:
      (C, C). With ``mask`` all ones it is ``losses.gram(features)``.
    """
    return guided_grams(features, mask[None])[0]


def guided_grams(features: jax.Array, masks: jax.Array) -> jax.Array:
    """:func:`guided_gram` of each region (masks (R, H, W)): (R, C, C)."""
    m = masks.reshape(masks.shape[0], -1)
    return guided_sums(features, masks) / jnp.maximum(jnp.sum(m, axis=1), 1e-12).reshape(-1, 1, 1)


def guided_sums(features: jax.Array, masks: jax.Array) -> jax.Array:
    """``F^T diag(m_r) F`` of each region (masks (R, H, W)), unnormalised: (R, C, C), as one matrix
    product (the tiled evaluation sums these over tiles).

    ``[m_1 F | … | m_R F]^T F`` is a single (R*C, M) x (M, C) product (``jax.vmap`` over the masks
    made XLA:CPU broadcast F per region into a batched product, several times slower).
    """
    h, w, c = features.shape
    r = masks.shape[0]
    f = features.reshape(h * w, c)
    m = masks.reshape(r, h * w).T  # (M, R)
    weighted = (m[:, :, None] * f[:, None, :]).reshape(h * w, r * c)  # (M, R*C)
    return jnp.matmul(weighted.T, f, precision=jax.lax.Precision.HIGHEST).reshape(r, c, c)
