"""Exact tiled evaluation of the objective: loss and gradient at a memory that does not grow with the image.

The objective of Gatys et al. (2015) depends on the image only through sums over positions: the
content term through the summed squared error of feature maps (eq. 1), each style layer through
``S1 = sum_p f_p`` and ``S2 = sum_p f_p f_p^T`` (the Gram matrix is ``S2 / M``; mean and covariance
for the Wasserstein loss come from both; a region's guided Gram from ``sum_p m_p f_p f_p^T``), and
the MRF term (``jaxstyle.mrf``) through the summed error of its output patches, each owned by the
tile its anchor falls in. Call these sums the *parts*. One evaluation then runs in
two passes over tiles of the image:

1. forward only, each tile computes its share of the parts (``_forward``);
2. the loss is a small function of the parts, so its gradient with respect to them (the cotangent,
   a ``(C, C)`` matrix per style layer and a scalar per content layer) is computed once; each tile's
   VJP with that cotangent is its input gradient, added into the full gradient (``_backprop``).

Exactness: a tile computes features on a *crop* of the image that extends ``halo`` pixels beyond its
*core* (the positions it owns), with ``halo`` at least the receptive-field radius of the deepest
layer plus one pooling stride; crops start on the stride grid (so pooling windows line up with the
whole image's) and end flush with the image where they reach it (VGG zero-pads every conv layer at
the image's edge, not at a tile's: a crop never pads the image itself). Every owned feature is then
computed exactly as on the whole image, and the tiled loss and gradient equal the untiled ones up to
float rounding (``tests/test_tiling.py``). All crops of an image have one shape, so each pass
compiles once per image shape, whatever the number of tiles; tile positions are traced.

Memory: one crop's activations (and their VJP residuals) plus image-sized buffers (the image, its
gradient, the content target), measured by ``bench/memory.py``. Crops recompute their halos (512 px
cores: 2-2.8x the image's area), so :func:`choose_plan` prefers, for every loss but MRF, the streamed
bands of ``jaxstyle.bands``, which compute each feature once and reuse this module's parts
(:func:`owned_parts`) and loss (:func:`terms_from_parts`); it picks untiled, the band plan or the tile
plan that fits a budget. Style targets are always computed crop by crop (forward only).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from . import interrupt, lbfgs, losses, masks as masks_lib, mrf, objective, optimize, vgg
from .objective import stack
from .errors import JaxstyleError

# Memory model (bytes; XLA:CPU, float32, default layers to relu5_1). Untiled: an evaluation keeps
# every activation for the backward pass; bench/memory.py measured 3.3-3.8 KB per pixel above the
# baseline at 1024x768 and 2048x1536 (a whole run: 3.3 KB/px, ../shared/DESIGN.md).
UNTILED_BYTES_PER_PIXEL = 3400
# Tiled: per pixel of one crop (its forward and VJP, as untiled), and per pixel of the image: x and
# its gradient (24), the L-BFGS memory (2 x 10 x 12 = 240 in float32), the guard's copies (24), the
# relu4_2 target (32), transients. Conservative against bench/memory.py: 512 px cores (736x736 crops)
# peaked at 2.31 GB at 1024x768 and 2.51 GB at 2048x1536, estimated here at 2.8 and 3.7 GB.
CROP_BYTES_PER_PIXEL = 3400
# Per image pixel, by the L-BFGS memory's dtype (jaxstyle.lbfgs; planned runs hold bfloat16 unless
# told otherwise). Calibrated on 4096x3072 CLI runs with --max-memory 8: float32 memory, 128-row
# bands keeping block 4, peaked 103 B/px above 400 (then the figure); bfloat16 memory, 192-row
# bands, peaked 8.95e9 bytes, 49 B/px above the estimate with 368 (= 500 - 132: the optimizer
# update's arguments and temporaries at 1024x768 are 132 B/px smaller, bench/lbfgs_history.py).
# Hence bfloat16 420 and float32 420 + 132.
# Both figures are for optimize.LBFGS_MEMORY (10) pairs; other sizes add or remove their pairs' bytes
# (state_bytes_per_pixel), as untiled_bytes does for a whole run's memory.
STATE_BYTES_PER_PIXEL = {"float32": 552, "bfloat16": 420}
CALIBRATED = optimize.DEFAULT_MEMORY  # the L-BFGS memory UNTILED_BYTES_PER_PIXEL was measured with
WHOLE = optimize.lbfgs_memory(0, "auto", planned=False)  # what a run evaluated whole keeps by default
PLANNED = optimize.lbfgs_memory(0, "auto", planned=True)  # ... and one evaluated by a plan
BASE_BYTES = 600 << 20  # JAX, XLA, the weights
TILE_CHOICES = (2048, 1536, 1024, 768, 512, 384, 256)  # core sizes tried, largest first
# Streamed bands (jaxstyle.bands): per pixel of one band (its activations, forward and VJP), per
# image pixel as above, plus what keeping block 4's outputs costs (bands.KEEP: 4 x 512 + 512 channels
# at 1/64 and 1/256 of the pixels, float32: 136 bytes). Measured with bench/memory.py (see README).
# The carries, kept per band for the backward pass: two input rows per 3x3 conv and one per pooling
# with an odd delay, 1414 floats per image column up to relu5_1 (bands.schedule), 5.7 KB.
BAND_BYTES_PER_PIXEL = 3400
KEEP_BYTES_PER_PIXEL = 136
CARRY_BYTES_PER_COLUMN = 5700
BAND_CHOICES = (512, 384, 256, 192, 128, 96, 64, 48, 32, 16)  # rows per band tried, most first
KEEP_MIN_ROWS = 128


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
    :func:`mrf_margin`); a smaller one is allowed for testing only (wrong near core edges)."""
    layers = vgg.check_layers(layers)
    s = stride(layers)
    tile = max(s, int(tile) // s * s)
    halo = receptive_radius(layers) + s + margin if halo is None else int(halo)
    crop_h, rows = _axis(height, tile, halo, s)
    crop_w, cols = _axis(width, tile, halo, s)
    tiles = tuple((cy, cx, y0, y1, x0, x1) for cy, y0, y1 in rows for cx, x0, x1 in cols)
    return TilePlan(height, width, tile, halo, stride, (crop_h, crop_w), tiles)


def mrf_margin(layers, patch: int) -> int:
    """Input pixels beyond a core that the MRF patches anchored in it reach, at the deepest of ``layers``."""
    return mrf.anchor(patch) * max((layer_stride(name) for name in layers), default=1)


def _tile_arrays(plan: TilePlan):
    """Per tile: the crop origin (2,) and core bounds relative to the crop (4,), int32 host arrays
    (passed to the jitted calls as traced arguments; no device op is queued to make them)."""
    return [(np.asarray([cy, cx], np.int32), np.asarray([y0 - cy, y1 - cy, x0 - cx, x1 - cx], np.int32))
            for cy, cx, y0, y1, x0, x1 in plan.tiles]


# --- what one crop contributes ------------------------------------------------------------------

def _owned(shape, bounds, stride: int) -> jax.Array:
    """(h, w, 1) float mask of the positions of a layer map (``stride`` px each) that the core owns."""
    h, w = shape[0], shape[1]
    rows = jnp.arange(h, dtype=jnp.int32).reshape(h, 1, 1)
    cols = jnp.arange(w, dtype=jnp.int32).reshape(1, w, 1)
    inside = ((rows >= bounds[0] // stride) & (rows < bounds[1] // stride)
              & (cols >= bounds[2] // stride) & (cols < bounds[3] // stride))
    return inside.astype(jnp.float32)


def _at_layer(full: jax.Array, origin, shape, stride: int) -> jax.Array:
    """The window of an image-sized layer map ``full`` that lies under a crop at ``origin``."""
    return jax.lax.dynamic_slice(full, (origin[0] // stride, origin[1] // stride, 0), shape)


def _window(x, origin, crop):
    return jax.lax.dynamic_slice(x, (origin[0], origin[1], 0), (crop[0], crop[1], x.shape[-1]))


def crop_parts(crop, origin, bounds, weights, content_targets: dict, style_layers: tuple, kind: str,
               pooling: str, *, style_targets: dict | None = None, patch: int = 3, masks: dict | None = None) -> dict:
    """The parts one crop's core contributes.

    Args:
      crop: (h, w, 3) RGB in [0, 1], a window of the image at ``origin`` (y, x).
      bounds: (4,) int core rows/cols ``y0, y1, x0, x1`` relative to the crop.
      content_targets: ``{layer: (H_l, W_l, C)}`` image-sized content targets (may be empty).
      style_layers: the style layers; ``kind`` their loss (``"gram"``, ``"wasserstein"`` or ``"mrf"``).
      pooling: ``"max"`` or ``"avg"``.
      style_targets: ``{layer: mrf.PatchLibrary (S, N, P)}``, for the MRF loss (patches of side ``patch``).
      masks: ``{layer: (R, H_l, W_l)}`` image-sized region masks, for guided Gram matrices.

    Returns:
      ``{"content": {layer: () summed squared error}, "style": {layer: …}}`` where a style layer has
      ``{"s2": (C, C) sum of f f^T}`` for Gram losses (``(R, C, C)``, each weighted by its region's
      mask, with masks); ``{"sq": (S,)}`` the MRF error of the patches anchored in the core, per
      painting; and, for the Wasserstein loss, the core's own count, mean and centred second moment
      ``{"n": (), "mean": (C,), "m2": (C, C)}``, which :func:`combine_moments` merges stably instead
      of summing raw moments (whose difference ``S2/M - mean mean^T`` loses precision, and the W2
      gradient amplifies it).
    """
    layers = tuple(dict.fromkeys(tuple(content_targets) + tuple(style_layers)))
    feats = objective.image_features(weights, crop, layers, pooling)
    owned = {layer: _owned(f.shape, bounds, layer_stride(layer)) for layer, f in feats.items()}
    content = {layer: _at_layer(target, origin, feats[layer].shape, layer_stride(layer))
               for layer, target in content_targets.items()}
    windows = {}
    for layer, full in (masks or {}).items():
        h, w, _ = feats[layer].shape
        s = layer_stride(layer)
        windows[layer] = jax.lax.dynamic_slice(full, (0, origin[0] // s, origin[1] // s), (full.shape[0], h, w))
    return owned_parts(feats, owned, content, style_layers, kind, style_targets=style_targets, patch=patch,
                       masks=windows)


def owned_parts(feats: dict, owned: dict, content_targets: dict, style_layers: tuple, kind: str, *,
                style_targets: dict | None = None, patch: int = 3, masks: dict | None = None) -> dict:
    """The parts (see :func:`crop_parts`) of the positions that ``owned`` marks in a window of features.

    ``feats`` ``{layer: (h, w, C)}``, ``owned`` ``{layer: (h, w, 1)}`` 0/1, and ``content_targets``
    (``{layer: (h, w, C)}``) and region ``masks`` (``{layer: (R, h, w)}``) under the same window.
    """
    content = {layer: jnp.sum(owned[layer] * jnp.square(feats[layer] - target))
               for layer, target in content_targets.items()}
    style = {}
    for layer in style_layers:
        f = feats[layer]
        h, w, c = f.shape
        if kind == "mrf":
            rows = mrf.patches(f, patch)
            a = mrf.anchor(patch)
            weight = owned[layer][a:a + rows.shape[0], a:a + rows.shape[1]].reshape(-1)
            rows = rows.reshape(-1, rows.shape[-1])
            style[layer] = {"sq": jax.vmap(mrf.squared_error, in_axes=(None, 0, None))(rows, style_targets[layer], weight)}
        elif masks:
            style[layer] = {"s2": masks_lib.guided_sums(f, masks[layer] * owned[layer].reshape(1, h, w))}
        elif kind == "gram":
            mask = owned[layer].reshape(-1, 1)
            f = f.reshape(-1, c)
            style[layer] = {"s2": jnp.matmul((mask * f).T, f, precision=jax.lax.Precision.HIGHEST)}
        else:
            mask = owned[layer].reshape(-1, 1)
            f = f.reshape(-1, c)
            n = jnp.sum(mask)  # 0 for a core of a few pixels at the edge that floor pooling drops
            mean = jnp.sum(mask * f, axis=0) / jnp.maximum(n, 1.0)
            centred = f - mean.reshape(1, c)
            m2 = jnp.matmul((mask * centred).T, centred, precision=jax.lax.Precision.HIGHEST)
            style[layer] = {"n": n, "mean": mean, "m2": m2}
    return {"content": content, "style": style}


def combine_moments(parts: dict, kind: str, positions):
    """One style layer's statistic from its per-tile parts stacked on axis 0: the Gram matrix (each
    region's guided one, with ``positions`` the (R,) masses of the regions), or ``{"mean", "cov"}``
    (per-tile means and centred moments merged as in Chan, Golub & LeVeque 1979)."""
    if kind == "gram":
        total = jnp.sum(parts["s2"], axis=0)
        return total / (jnp.maximum(positions, 1e-12).reshape(-1, 1, 1) if total.ndim == 3 else positions)
    n = parts["n"].reshape(-1, 1)  # (T, 1)
    mean = jnp.sum(n * parts["mean"], axis=0) / positions
    d = parts["mean"] - mean.reshape(1, -1)  # (T, C)
    between = jnp.matmul((n * d).T, d, precision=jax.lax.Precision.HIGHEST)
    return {"mean": mean, "cov": (jnp.sum(parts["m2"], axis=0) + between) / positions}


def _positions(shape, layer: str) -> int:
    s = layer_stride(layer)
    return (shape[0] // s) * (shape[1] // s)


def _objective_parts(crop, origin, bounds, problem):
    spec = problem.spec
    return crop_parts(crop, origin, bounds, problem.weights, problem.targets.content, spec.style_layers,
                      spec.style_loss, spec.pooling, style_targets=problem.targets.style, patch=spec.mrf_patch,
                      masks=problem.masks)


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


# --- the objective from its parts -----------------------------------------------------------------

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
    if spec.style_loss == "mrf":
        layer_shape = (shape[0] // layer_stride(layer), shape[1] // layer_stride(layer))
        return mrf.loss_from_squared_errors(jnp.sum(parts["sq"], axis=0), mrf.count(layer_shape, spec.mrf_patch), target,
                                            coef.style_blend_weights, spec.normalization)
    if spec.regions:
        mass = jnp.sum(problem.masks[layer].reshape(spec.regions, -1), axis=1)
        return objective.guided_style_loss(combine_moments(parts, "gram", mass), target, coef.region_blend,
                                           spec.normalization)
    return losses.style_loss_of_statistic(combine_moments(parts, spec.style_loss, _positions(shape, layer)), target,
                                          coef.style_blend_weights, spec.normalization, spec.style_loss)


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


# Every call is waited on before the next is queued: dozens of tile calls in flight once hung this
# 2-core machine (jax 0.10.2, XLA:CPU; the W2 hang seen at the same time was a batched
# eigendecomposition, see losses.eigh). A tile takes far longer than the dispatch
# latency this costs (microseconds against 0.01-10 s), and a Ctrl-C stops a long tiled evaluation
# after the current tile (``jaxstyle.interrupt``).
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
    from .objective import image_features

    feats = image_features(weights, _window(image, origin, crop), layers, pooling)
    new = {}
    for layer in layers:
        f, s = feats[layer], layer_stride(layer)
        start = (origin[0] // s, origin[1] // s, 0)
        old = jax.lax.dynamic_slice(out[layer], start, f.shape)
        new[layer] = jax.lax.dynamic_update_slice(out[layer], jnp.where(_owned(f.shape, bounds, s) > 0, f, old), start)
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


@functools.partial(jax.jit, static_argnames=("crop", "layers", "kind", "pooling"))
def _style_parts(image, origin, bounds, weights, masks, crop, layers, kind, pooling):
    return crop_parts(_window(image, origin, crop), origin, bounds, weights, {}, layers, kind, pooling,
                      masks=masks)["style"]


@functools.partial(jax.jit, static_argnames=("shape", "kind"))
def _style_targets(parts, masks, shape, kind):
    if masks:  # guided Grams: each region's sum over its mass
        return {layer: combine_moments(p, "gram", jnp.sum(masks[layer].reshape(masks[layer].shape[0], -1), axis=1))
                for layer, p in stack(parts).items()}
    return {layer: losses.style_target(combine_moments(p, kind, _positions(shape, layer)), kind)
            for layer, p in stack(parts).items()}


def style_statistics(weights, image: jax.Array, layers, pooling: str, kind: str, tile: int,
                     masks: dict | None = None) -> dict:
    """``{layer: losses.style_statistic(...)}`` of a large painting, crop by crop (forward only),
    exactly; with ``masks`` (``{layer: (R, H_l, W_l)}``), each region's guided Gram matrix (R, C, C)."""
    layers = tuple(layers)
    if not layers:
        return {}
    plan = make_plan(image.shape[0], image.shape[1], tile, layers)
    masks = {} if masks is None else {layer: jnp.asarray(m) for layer, m in masks.items()}
    parts = [_sync(_style_parts(image, origin, bounds, weights, masks, plan.crop, layers, kind, pooling))
             for origin, bounds in _tile_arrays(plan)]
    return _style_targets(parts, masks, tuple(image.shape[:2]), kind)


# --- when to tile -------------------------------------------------------------------------------

def _accelerator_stats() -> dict | None:
    """The default device's memory statistics when it reports a limit (GPU, TPU), else ``None``."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return stats if stats and "bytes_limit" in stats else None


def free_memory_bytes() -> int:
    """Memory free on the default device: the accelerator's own, else the host's available memory."""
    stats = _accelerator_stats()
    if stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def more_pairs_bytes(memory: lbfgs.Memory, calibrated: lbfgs.Memory = CALIBRATED) -> int:
    """Bytes per pixel ``memory`` holds beyond (or, negative, short of) what a model was measured with."""
    return 3 * (memory.bytes_per_value() - calibrated.bytes_per_value())


def state_bytes_per_pixel(memory: lbfgs.Memory = PLANNED) -> int:
    """Image-sized state of a planned run per pixel, with this L-BFGS memory."""
    return STATE_BYTES_PER_PIXEL[memory.dtype] + more_pairs_bytes(memory, lbfgs.Memory(optimize.LBFGS_MEMORY, memory.dtype))


def untiled_bytes(height: int, width: int, memory: lbfgs.Memory = WHOLE) -> int:
    """Estimated peak bytes of an untiled run at this size, with this L-BFGS memory."""
    return BASE_BYTES + (UNTILED_BYTES_PER_PIXEL + more_pairs_bytes(memory)) * height * width


def tiled_bytes(plan: TilePlan, memory: lbfgs.Memory = PLANNED) -> int:
    """Estimated peak bytes of a tiled run with this plan and L-BFGS memory."""
    return (BASE_BYTES + CROP_BYTES_PER_PIXEL * plan.crop[0] * plan.crop[1]
            + state_bytes_per_pixel(memory) * plan.height * plan.width)


def banded_bytes(plan, memory: lbfgs.Memory = PLANNED) -> int:
    """Estimated peak bytes of a streamed run (``jaxstyle.bands``) with this plan and L-BFGS memory."""
    return (BASE_BYTES + BAND_BYTES_PER_PIXEL * plan.band * plan.width + CARRY_BYTES_PER_COLUMN * plan.bands * plan.width
            + (state_bytes_per_pixel(memory) + (KEEP_BYTES_PER_PIXEL if plan.keep else 0)) * plan.height * plan.width)


def choose_plan(height: int, width: int, layers, *, max_memory: float | None = None,
                tile: int | None = None, what: str = "the image", margin: int = 0, streamable: bool = False,
                whole: lbfgs.Memory = WHOLE, planned: lbfgs.Memory = PLANNED):
    """``None`` (evaluate whole), a band plan (``jaxstyle.bands``) or a tile plan for an image of this size.

    Args:
      layers: every layer the objective reads.
      max_memory: budget in bytes; default 70% of :func:`free_memory_bytes`.
      tile: force tiling with cores of this many pixels, or bands of this many rows when
        ``streamable`` (``0``: never tile).
      what: names the image in the error message.
      margin: extra halo in pixels (:func:`make_plan`).
      streamable: the objective can be evaluated in streamed bands (every loss but MRF).
      whole, planned: the L-BFGS memory of the run evaluated whole, and by a plan
        (``StyleConfig.lbfgs_memory_for``).

    Returns:
      ``None`` when the image fits untiled (or ``tile == 0``); else, when ``streamable``, the band
      plan with the most rows in :data:`BAND_CHOICES` whose estimate fits keeping block 4's
      outputs (:data:`bands.KEEP`, a third of the recomputation saved) with at least
      :data:`KEEP_MIN_ROWS` rows, else the most rows that fit without keeping;
      otherwise the tile plan with the largest core in :data:`TILE_CHOICES` whose estimate fits.
      The band plan's ``tile`` is the core size for the targets (forward only, tile by tile).
      Raises :class:`JaxstyleError` when nothing fits.
    """
    budget = 0.7 * free_memory_bytes() if max_memory is None else float(max_memory)
    tiles = _choose_tiles(height, width, layers, budget, tile, what, margin, whole, planned)
    if tiles is None or not streamable:
        return tiles
    from . import bands

    # Keeping block 4 saved 11% of an evaluation at 1024x768, twice as many rows per band 7% (README);
    # bands of fewer than KEEP_MIN_ROWS rows are not worth keeping for: more rows are tried first.
    choices = [(tile, keep) for keep in (bands.KEEP, ())] if tile else (
        [(rows, bands.KEEP) for rows in BAND_CHOICES if rows >= KEEP_MIN_ROWS] + [(rows, ()) for rows in BAND_CHOICES])
    plans = [bands.make_plan(height, width, rows, layers, keep, tiles.tile) for rows, keep in choices]
    limit = max(budget, total_memory_bytes()) if tile else budget
    return next((plan for plan in plans if banded_bytes(plan, planned) <= limit), tiles)


def _choose_tiles(height, width, layers, budget, tile, what, margin, whole, planned):
    if tile is not None:
        if tile == 0:
            if untiled_bytes(height, width, whole) > max(budget, total_memory_bytes()):
                raise JaxstyleError(
                    f"{what} ({width}x{height}) needs about {untiled_bytes(height, width, whole) / 2**30:.1f} GB untiled, more "
                    f"than this machine has: drop --tile 0 (it then runs tile by tile) or lower --size")
            return None
        limit = max(budget, total_memory_bytes())
        if BASE_BYTES + state_bytes_per_pixel(planned) * height * width > limit:  # before enumerating the tiles
            raise JaxstyleError(
                f"{what} ({width}x{height}) needs more than {limit / 2**30:.1f} GB even tiled, more than this machine has: "
                f"make it at most {largest_fitting_size(height, width, layers, limit, margin, planned)} px on its long side (lower --size)")
        plan = make_plan(height, width, tile, layers, margin=margin)
        if tiled_bytes(plan, planned) > limit:
            raise JaxstyleError(
                f"{what} ({width}x{height}) needs about {tiled_bytes(plan, planned) / 2**30:.1f} GB tiled at {tile} px, more than "
                "this machine has: use a smaller --tile, or lower --size")
        return plan
    if untiled_bytes(height, width, whole) <= budget:
        return None
    for core in TILE_CHOICES:
        plan = make_plan(height, width, core, layers, margin=margin)
        if tiled_bytes(plan, planned) <= budget:
            return plan
    smallest = make_plan(height, width, TILE_CHOICES[-1], layers, margin=margin)
    raise JaxstyleError(
        f"{what} ({width}x{height}) needs about {tiled_bytes(smallest, planned) / 2**30:.1f} GB even tiled at "
        f"{TILE_CHOICES[-1]} px, over the {budget / 2**30:.1f} GB budget: make it at most "
        f"{largest_fitting_size(height, width, layers, budget, margin, planned)} px on its long side (lower --size or --style-scale) "
        "or raise --max-memory"
    )


def largest_fitting_size(height: int, width: int, layers, budget: float, margin: int = 0,
                         memory: lbfgs.Memory = PLANNED) -> int:
    """The largest long side at this aspect ratio whose smallest-tile plan fits ``budget`` bytes."""
    def fits(long_side: int) -> bool:
        scale = long_side / max(height, width)
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        return tiled_bytes(make_plan(h, w, TILE_CHOICES[-1], layers, margin=margin), memory) <= budget

    low, high = 16, max(height, width)
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def total_memory_bytes() -> int:
    """All of the default device's memory (the accelerator's, else the host's RAM)."""
    stats = _accelerator_stats()
    if stats:
        return int(stats["bytes_limit"])
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30
