"""The *parts* of the objective: sums over positions from which the loss is exact, whatever the cut.

The objective of Gatys et al. (2015) depends on the image only through sums over positions: the
content term through the summed squared error of feature maps (eq. 1), each style layer through
``S1 = sum_p f_p`` and ``S2 = sum_p f_p f_p^T`` (the Gram matrix is ``S2 / M``; mean and covariance
for the Wasserstein loss come from both; a region's guided Gram from ``sum_p m_p f_p f_p^T``), and
the MRF term through the summed error of its output patches, each owned by the window its anchor
falls in: each style loss says what its parts are (:meth:`~jaxstyle.losses.StyleLoss.parts`). A tile (:mod:`jaxstyle.evaluate.tiling`) or a band (:mod:`jaxstyle.evaluate.bands`)
computes its share of these sums with :func:`crop_parts` or :func:`owned_parts`; :func:`terms_from_parts`
turns the shares, stacked on a leading axis, into the weighted loss terms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import losses
from ..losses import masks as masks_lib
from ..model import vgg
from . import objective


def layer_stride(layer: str) -> int:
    """Pixels of the input per position of ``layer``'s map (2 per pooling before it)."""
    return 2 ** vgg.pools_before(layer)


def stride(layers) -> int:
    """Pixels per position of the coarsest of ``layers``: tile offsets and band heights are multiples of it."""
    return max(layer_stride(name) for name in layers)


def receptive_radius(layers) -> int:
    """Input pixels on either side of a position that the deepest of ``layers`` depends on."""
    last = max(vgg.LAYERS.index(name) for name in vgg.check_layers(layers))
    radius, stride = 0, 1
    for name in vgg.LAYERS[: last + 1]:
        if name.startswith("conv"):  # 3x3, padding 1
            radius += stride
        elif name.startswith("pool"):  # 2x2, stride 2
            radius += stride
            stride *= 2
    return radius


def owned_mask(shape, bounds, stride: int) -> jax.Array:
    """(h, w, 1) float mask of the positions of a layer map (``stride`` px each) that the core owns."""
    h, w = shape[0], shape[1]
    rows = jnp.arange(h, dtype=jnp.int32).reshape(h, 1, 1)
    cols = jnp.arange(w, dtype=jnp.int32).reshape(1, w, 1)
    inside = ((rows >= bounds[0] // stride) & (rows < bounds[1] // stride)
              & (cols >= bounds[2] // stride) & (cols < bounds[3] // stride))
    return inside.astype(jnp.float32)


def at_layer(full: jax.Array, origin, shape, stride: int) -> jax.Array:
    """The window of an image-sized layer map ``full`` that lies under a crop at ``origin``."""
    return jax.lax.dynamic_slice(full, (origin[0] // stride, origin[1] // stride, 0), shape)


def crop_parts(crop, origin, bounds, weights, content_targets: dict, style_layers: tuple, loss: losses.StyleLoss,
               pooling: str, *, style_targets: dict | None = None, masks: dict | None = None) -> dict:
    """The parts one crop's core contributes.

    Args:
      crop: (h, w, 3) RGB in [0, 1], a window of the image at ``origin`` (y, x).
      bounds: (4,) int core rows/cols ``y0, y1, x0, x1`` relative to the crop.
      content_targets: ``{layer: (H_l, W_l, C)}`` image-sized content targets (may be empty).
      style_layers: the style layers; ``loss`` their :class:`~jaxstyle.losses.StyleLoss`.
      pooling: ``"max"`` or ``"avg"``.
      style_targets: ``{layer: stacked targets}``, for losses whose parts read them (MRF).
      masks: ``{layer: (R, H_l, W_l)}`` image-sized region masks, for guided Gram matrices.

    Returns:
      ``{"content": {layer: () summed squared error}, "style": {layer: the loss's parts}}``; with
      region masks a style layer's parts are ``{"s2": (R, C, C)}``, each region's ``sum m f f^T``.
    """
    layers = tuple(dict.fromkeys(tuple(content_targets) + tuple(style_layers)))
    feats = objective.image_features(weights, crop, layers, pooling)
    owned = {layer: owned_mask(f.shape, bounds, layer_stride(layer)) for layer, f in feats.items()}
    content = {layer: at_layer(target, origin, feats[layer].shape, layer_stride(layer))
               for layer, target in content_targets.items()}
    windows = {}
    for layer, full in (masks or {}).items():
        h, w, _ = feats[layer].shape
        s = layer_stride(layer)
        windows[layer] = jax.lax.dynamic_slice(full, (0, origin[0] // s, origin[1] // s), (full.shape[0], h, w))
    return owned_parts(feats, owned, content, style_layers, loss, style_targets=style_targets, masks=windows)


def owned_parts(feats: dict, owned: dict, content_targets: dict, style_layers: tuple, loss: losses.StyleLoss, *,
                style_targets: dict | None = None, masks: dict | None = None) -> dict:
    """The parts (see :func:`crop_parts`) of the positions that ``owned`` marks in a window of features.

    ``feats`` ``{layer: (h, w, C)}``, ``owned`` ``{layer: (h, w, 1)}`` 0/1, and ``content_targets``
    (``{layer: (h, w, C)}``) and region ``masks`` (``{layer: (R, h, w)}``) under the same window.
    """
    content = {layer: jnp.sum(owned[layer] * jnp.square(feats[layer] - target))
               for layer, target in content_targets.items()}
    style = {}
    for layer in style_layers:
        f = feats[layer]
        if masks:
            h, w, _ = f.shape
            style[layer] = {"s2": masks_lib.guided_sums(f, masks[layer] * owned[layer].reshape(1, h, w))}
        else:
            style[layer] = loss.parts(f, owned[layer], (style_targets or {}).get(layer))
    return {"content": content, "style": style}


def guided_grams(parts: dict, mass) -> jax.Array:
    """Each region's guided Gram matrix (R, C, C) from per-tile parts ``{"s2": (T, R, C, C)}`` and the
    regions' masses ``mass`` (R,)."""
    return jnp.sum(parts["s2"], axis=0) / jnp.maximum(mass, 1e-12).reshape(-1, 1, 1)


def positions(shape, layer: str) -> int:
    """Positions of ``layer``'s map for an image of ``shape`` (floor pooling at each stride)."""
    s = layer_stride(layer)
    return (shape[0] // s) * (shape[1] // s)


def terms_from_parts(parts, x, problem) -> dict:
    """The weighted terms (content, style, tv, total) of the image ``x`` whose per-tile parts,
    stacked on a leading tile axis, these are."""
    spec, targets, coef = problem.spec, problem.targets, problem.coef
    content = [losses.content_from_squared_error(jnp.sum(parts["content"][layer]), targets.content[layer],
                                                 spec.normalization)
               for layer in spec.content_layers]
    style = [_style_term(parts["style"][layer], layer, x.shape, problem) for layer in spec.style_layers]
    return objective.weighted_terms(content, style, x, coef, spec, problem.temporal)


def _style_term(parts, layer: str, shape, problem):
    """One style layer's term from its per-tile parts (stacked on axis 0)."""
    spec, target, coef = problem.spec, problem.targets.style[layer], problem.coef
    if spec.regions:
        mass = jnp.sum(problem.masks[layer].reshape(spec.regions, -1), axis=1)
        return objective.guided_style_loss(guided_grams(parts, mass), target, coef.region_blend, spec.normalization)
    layer_shape = (shape[0] // layer_stride(layer), shape[1] // layer_stride(layer))
    return spec.style_loss.loss_from_parts(parts, target, coef.style_blend_weights, spec.normalization, layer_shape)
