"""Exact tiled evaluation of the objective: loss and gradient at a memory that does not grow with the image.

One evaluation runs in two passes over tiles of the image:

1. forward only, each tile computes its share of the objective's parts
   (:mod:`jaxstyle.evaluate.parts`);
2. the loss is a small function of the parts, so its gradient with respect to them (the cotangent,
   a ``(C, C)`` matrix per style layer and a scalar per content layer) is computed once; each tile's
   VJP with that cotangent is its input gradient, added into the full gradient.

Exactness: a tile computes features on a *crop* of the image that extends ``halo`` pixels beyond its
*core* (the positions it owns), with ``halo`` at least the receptive-field radius of the deepest
layer plus one pooling stride; crops start on the stride grid (so pooling windows line up with the
whole image's) and end flush with the image where they reach it (VGG zero-pads at the image's edge,
not at a tile's). Every owned feature is then computed exactly as on the whole image, and the tiled
loss and gradient equal the untiled ones up to float rounding. All crops of an image have one shape,
so each pass compiles once per image shape, whatever the number of tiles; tile positions are traced.

Crops recompute their halos, so the streamed bands of :mod:`jaxstyle.evaluate.bands` are preferred
for every loss that allows them (:mod:`jaxstyle.evaluate.planner`); tiles remain for the MRF loss and
for computing the targets of large images, forward only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .. import interrupt, losses
from ..model import vgg
from .objective import image_features, stack
from .parts import crop_parts, guided_grams, layer_stride, owned_mask, positions, receptive_radius, stride, terms_from_parts


@dataclass(frozen=True)
class TilePlan:
    """How an ``height`` x ``width`` image is cut: cores of ``tile`` px on a grid, crops with ``halo``.

    ``crop`` is the one (h, w) shape of every crop; ``tiles`` holds, per tile,
    ``(crop_y, crop_x, core_y0, core_y1, core_x0, core_x1)`` in image pixels.
    """

    height: int
    width: int
    tile: int
    halo: int
    stride: int
    crop: tuple[int, int]
    tiles: tuple[tuple[int, int, int, int, int, int], ...]

    @property
    def grid(self) -> tuple[int, int]:
        return len({t[2] for t in self.tiles}), len({t[4] for t in self.tiles})

    def value_and_grad(self, x, problem):
        return value_and_grad(x, problem, self)

    def loss_terms(self, x, problem) -> dict:
        return loss_terms(x, problem, self)

    def describe(self) -> str:
        rows, cols = self.grid
        return (f"tiled: {self.width}x{self.height} as {cols}x{rows} tiles of {self.tile} px "
                f"(+{self.halo} px halo, crops {self.crop[1]}x{self.crop[0]})")


def _axis(size: int, tile: int, halo: int, stride: int) -> tuple[int, list[tuple[int, int, int]]]:
    """One axis: the crop length and, per core, (crop start, core start, core end)."""
    # Crop length: core + halo on both sides + one stride of slack for rounding the start down, and
    # congruent to the image's length modulo the stride, so a crop flush with the far edge also
    # starts on the stride grid.
    length = tile + 2 * halo + stride - 1
    length += (size - length) % stride
    if length >= size:
        return size, [(0, 0, size)]
    out = []
    for start in range(0, size, tile):
        end = min(start + tile, size)
        crop = min(max(0, (start - halo) // stride * stride), size - length)
        out.append((crop, start, end))
    return length, out


def make_plan(height: int, width: int, tile: int, layers, halo: int | None = None, margin: int = 0) -> TilePlan:
    """Cut an image into cores of ``tile`` px (rounded down to the stride of ``layers``, at least one
    stride) with crops exact for ``layers``. ``halo`` defaults to the receptive radius of the deepest
    layer plus one stride (a crop's interior edge may drop up to a stride of rows at a pooling)
    plus ``margin`` (pixels beyond the core whose features must be exact too: an MRF patch's,
    :meth:`~jaxstyle.losses.StyleLoss.margin`); a smaller one is allowed for testing only (wrong near core edges)."""
    layers = vgg.check_layers(layers)
    s = stride(layers)
    tile = max(s, int(tile) // s * s)
    halo = receptive_radius(layers) + s + margin if halo is None else int(halo)
    crop_h, rows = _axis(height, tile, halo, s)
    crop_w, cols = _axis(width, tile, halo, s)
    tiles = tuple((cy, cx, y0, y1, x0, x1) for cy, y0, y1 in rows for cx, x0, x1 in cols)
    return TilePlan(height, width, tile, halo, stride, (crop_h, crop_w), tiles)


def _tile_arrays(plan: TilePlan):
    """Per tile: the crop origin (2,) and core bounds relative to the crop (4,), int32 host arrays
    (passed to the jitted calls as traced arguments; no device op is queued to make them)."""
    return [(np.asarray([cy, cx], np.int32), np.asarray([y0 - cy, y1 - cy, x0 - cx, x1 - cx], np.int32))
            for cy, cx, y0, y1, x0, x1 in plan.tiles]


def _window(x, origin, crop):
    return jax.lax.dynamic_slice(x, (origin[0], origin[1], 0), (crop[0], crop[1], x.shape[-1]))


def _objective_parts(crop, origin, bounds, problem):
    spec = problem.spec
    return crop_parts(crop, origin, bounds, problem.weights, problem.targets.content, spec.style_layers,
                      spec.style_loss, spec.pooling, style_targets=problem.targets.style, masks=problem.masks)


@functools.partial(jax.jit, static_argnames=("crop",))
def _forward(x, origin, bounds, problem, crop):
    return _objective_parts(_window(x, origin, crop), origin, bounds, problem)


@functools.partial(jax.jit, static_argnames=("crop",), donate_argnames=("grad",))
def _backprop(grad, x, origin, bounds, cotangents, index, problem, crop):
    start = (origin[0], origin[1], 0)
    f = lambda c: _objective_parts(c, origin, bounds, problem)
    _, vjp = jax.vjp(f, _window(x, origin, crop))
    (g,) = vjp(jax.tree.map(lambda a: a[index], cotangents))
    return jax.lax.dynamic_update_slice(grad, jax.lax.dynamic_slice(grad, start, g.shape) + g, start)


@jax.jit
def _finish(parts, x, problem):
    """Loss, every tile's cotangent, and the (local, whole-image) TV term's gradient, from pass 1."""
    def total(parts, x):
        return terms_from_parts(parts, x, problem)["total"]

    value, (cotangents, grad_tv) = jax.value_and_grad(total, argnums=(0, 1))(stack(parts), x)
    return value, cotangents, grad_tv


@jax.jit
def _terms(parts, x, problem):
    return terms_from_parts(stack(parts), x, problem)


# Every call is waited on before the next is queued: dozens of tile calls in flight once hung
# XLA:CPU (see also losses.eigh). A tile takes far longer than the dispatch latency this costs, and
# a Ctrl-C stops a long tiled evaluation after the current tile (``jaxstyle.interrupt``).
def _sync(value):
    value = jax.block_until_ready(value)
    interrupt.check()
    return value


def _parts(x, problem, plan: TilePlan) -> list:
    return [_sync(_forward(x, origin, bounds, problem, plan.crop)) for origin, bounds in _tile_arrays(plan)]


def value_and_grad(x: jax.Array, problem, plan: TilePlan):
    """Loss and gradient of ``objective.total_loss(x, problem)`` ((H, W, 3)), tile by tile, exactly.

    Runs ``2 x len(plan.tiles) + 1`` jitted calls, one at a time.
    """
    value, cotangents, grad = _sync(_finish(_parts(x, problem, plan), x, problem))
    for index, (origin, bounds) in enumerate(_tile_arrays(plan)):
        grad = _sync(_backprop(grad, x, origin, bounds, cotangents, np.int32(index), problem, plan.crop))
    return value, grad


def loss_terms(x: jax.Array, problem, plan: TilePlan) -> dict:
    """The weighted loss terms at ``x``, forward only, tile by tile."""
    return _sync(_terms(_parts(x, problem, plan), x, problem))


# --- targets of images too large to evaluate whole ---------------------------------------------------

def _channels(weights, layer: str) -> int:
    if layer.startswith("pool"):
        block = int(layer[4])
        return weights.params[f"conv{block}_{vgg.BLOCK_CONVS[block - 1]}"]["bias"].shape[0]
    return weights.params["conv" + layer[4:]]["bias"].shape[0]


@functools.partial(jax.jit, static_argnames=("crop", "layers", "pooling"), donate_argnames=("out",))
def _place_features(out, image, origin, bounds, weights, crop, layers, pooling):
    feats = image_features(weights, _window(image, origin, crop), layers, pooling)
    new = {}
    for layer in layers:
        f, s = feats[layer], layer_stride(layer)
        start = (origin[0] // s, origin[1] // s, 0)
        old = jax.lax.dynamic_slice(out[layer], start, f.shape)
        new[layer] = jax.lax.dynamic_update_slice(out[layer], jnp.where(owned_mask(f.shape, bounds, s) > 0, f, old), start)
    return new


def features(weights, image: jax.Array, layers, pooling: str, tile: int) -> dict:
    """``jaxstyle.features`` of a large image, computed crop by crop (forward only), exactly."""
    layers = tuple(layers)
    if not layers:
        return {}
    plan = make_plan(image.shape[0], image.shape[1], tile, layers)
    out = {layer: jnp.zeros((image.shape[0] // layer_stride(layer), image.shape[1] // layer_stride(layer),
                             _channels(weights, layer)), jnp.float32) for layer in layers}
    for origin, bounds in _tile_arrays(plan):
        out = _sync(_place_features(out, image, origin, bounds, weights, plan.crop, layers, pooling))
    return out


@functools.partial(jax.jit, static_argnames=("crop", "layers", "loss", "pooling"))
def _style_parts(image, origin, bounds, weights, masks, crop, layers, loss, pooling):
    return crop_parts(_window(image, origin, crop), origin, bounds, weights, {}, layers, loss, pooling,
                      masks=masks)["style"]


@functools.partial(jax.jit, static_argnames=("shape", "loss"))
def _style_targets(parts, masks, shape, loss):
    if masks:  # guided Grams: each region's sum over its mass
        return {layer: guided_grams(p, jnp.sum(masks[layer].reshape(masks[layer].shape[0], -1), axis=1))
                for layer, p in stack(parts).items()}
    return {layer: loss.target(loss.combine(p, positions(shape, layer))) for layer, p in stack(parts).items()}


def style_statistics(weights, image: jax.Array, layers, pooling: str, loss: losses.StyleLoss, tile: int,
                     masks: dict | None = None) -> dict:
    """``{layer: loss's target}`` of a large painting, crop by crop (forward only), exactly, for a
    loss whose statistic is a sum over positions; with ``masks`` (``{layer: (R, H_l, W_l)}``), each
    region's guided Gram matrix (R, C, C)."""
    layers = tuple(layers)
    if not layers:
        return {}
    plan = make_plan(image.shape[0], image.shape[1], tile, layers)
    masks = {} if masks is None else {layer: jnp.asarray(m) for layer, m in masks.items()}
    parts = [_sync(_style_parts(image, origin, bounds, weights, masks, plan.crop, layers, loss, pooling))
             for origin, bounds in _tile_arrays(plan)]
    return _style_targets(parts, masks, tuple(image.shape[:2]), loss)
