"""Exact evaluation of the objective in bands of rows, streamed down the image: no pixel twice.

The tiled evaluation (:mod:`jaxstyle.evaluate.tiling`) gives each crop a halo as wide as the deepest layer's
receptive field (~100 px), recomputed by its neighbours: 512 px cores compute 2-2.8x the image's
area. Here the image is cut into horizontal bands of ``band`` rows, full width, and VGG runs on them
in order, top to bottom, like a line-buffered video pipeline: each 3x3 convolution keeps the last two
rows of its input from the band above (its *carry*) and convolves them with the band's new rows
without vertical padding, so its output lags its input by one row; a 2x2 pooling whose input lags by
an odd number of rows keeps one row. Rows outside the image are zeroed after every ReLU and pooling,
which is exactly VGG's zero padding at the image's top and bottom edges (columns are whole, padded as
usual). Every feature is computed once, exactly as on the whole image; a layer's rows arrive
``delay`` rows late, so a few extra bands at the bottom flush the last ones.

One evaluation is one jitted program: ``jax.vjp`` of a ``lax.scan`` over the bands whose body is
``jax.checkpoint``-ed. The forward scan yields each band's share of the objective's *parts* (the
sums of :mod:`jaxstyle.evaluate.parts`: content squared error, ``sum f f^T`` per style layer, W2 moments, guided
Grams) and keeps only the carries (a few rows per layer); the loss and its cotangents are computed
from the parts; the backward scan recomputes one band's activations at a time, bottom to top, and
runs its VJP. Cost: two forward passes and one backward, against one and one untiled; memory: one
band's activations (``band x width`` pixels) plus the carries (~5 KB per image column per band) plus
image-sized buffers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from .parts import owned_parts, stride, terms_from_parts
from ..model import vgg
from .. import losses
from ..errors import JaxstyleError

KEEP = ("conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1")
"""What a plan keeps when memory allows: block 4 and conv5_1 hold 36% of VGG's multiply-adds up to
relu5_1 but 1/64 and 1/256 of the pixels, so keeping their outputs (136 bytes per image pixel)
spares the backward pass a third of its recomputation."""


@dataclass(frozen=True)
class BandPlan:
    """An ``height`` x ``width`` image evaluated in ``bands`` bands of ``band`` rows (the last ones
    reach past the image's bottom, to flush the rows that deeper layers deliver late)."""

    height: int
    width: int
    band: int
    bands: int
    keep: tuple[str, ...] = ()  # conv layers whose outputs the forward pass keeps for the backward one
    tile: int = 512  # core size of the crops that compute the targets (forward only, jaxstyle.evaluate.tiling)

    def value_and_grad(self, x, problem):
        return value_and_grad(x, problem, self)

    def loss_terms(self, x, problem) -> dict:
        return loss_terms(x, problem, self)

    def describe(self) -> str:
        kept = ", block 4 kept" if self.keep else ""
        return f"streamed: {self.width}x{self.height} in {self.bands} bands of {self.band} rows (exact{kept})"


@dataclass(frozen=True)
class _Step:
    name: str
    level: int  # poolings before this layer's output (its map is 2**level px per position)
    delay: int  # rows of its own map by which a band's output lags the band's first image row
    carry: int  # rows of its input kept from the band above (conv: 2; pooling: 0 or 1)


def schedule(layers) -> tuple[_Step, ...]:
    """The network up to the deepest of ``layers``, with each layer's delay and carry."""
    last = max(vgg.LAYERS.index(name) for name in vgg.check_layers(layers))
    steps, level, delay = [], 0, 0
    for name in vgg.LAYERS[: last + 1]:
        carry = 0
        if name.startswith("conv"):
            carry, delay = 2, delay + 1
        elif name.startswith("pool"):
            carry = delay % 2  # an odd lag: the band's first row pairs with the last row of the band above
            delay, level = (delay + carry) // 2, level + 1
        steps.append(_Step(name, level, delay, carry))
    return tuple(steps)


def _bands_needed(height: int, band: int, steps: dict, layers) -> int:
    return max(-(-((height >> steps[name].level) + steps[name].delay) // (band >> steps[name].level))
               for name in layers)


def make_plan(height: int, width: int, band: int, layers, keep: tuple[str, ...] = (), tile: int = 512) -> BandPlan:
    """Bands of at most ``band`` rows (a multiple of the layers' ``tiling.stride``: each pooling
    halves a band's rows; at least one stride), as many as
    every layer of ``layers`` needs to deliver all its rows, each as short as that count allows (the
    rows past the image are work too). ``keep``: conv layers whose outputs the forward pass keeps
    (image-sized memory) so that the backward pass does not recompute them."""
    layers = vgg.check_layers(layers)
    s = stride(layers)
    band = max(s, int(band) // s * s)
    steps = {step.name: step for step in schedule(layers)}
    bands = _bands_needed(height, band, steps, layers)
    while band > s and _bands_needed(height, band - s, steps, layers) == bands:
        band -= s
    keep = tuple(name for name in keep if name in steps)
    return BandPlan(height, width, band, bands, keep, tile)


def _valid(plan: BandPlan, index, step: _Step):
    """(rows, 1, 1) bool: which rows of ``step``'s output in band ``index`` lie inside the image."""
    rows = plan.band >> step.level
    row = index * rows - step.delay + jnp.arange(rows, dtype=jnp.int32)
    return ((row >= 0) & (row < plan.height >> step.level)).reshape(rows, 1, 1)


def _band_features(params, x, carry: dict, index, plan: BandPlan, layers: tuple, pooling: str):
    """One band's features at ``layers`` (each with ``band >> level`` rows, delayed) and the new carry."""
    wanted, out, new = set(layers), {}, {}
    for step in schedule(layers):
        name = step.name
        if name.startswith("conv"):
            x = jnp.concatenate([carry[name], x], axis=0)
            new[name] = x[-2:]
            x = checkpoint_name(vgg.conv(params[name], x, pad_rows=0), name)
        elif name.startswith("relu"):
            x = jnp.where(_valid(plan, index, step), jax.nn.relu(x), 0.0)
        else:
            if step.carry:
                x, new[name] = jnp.concatenate([carry[name], x[:-1]], axis=0), x[-1:]
            x = jnp.where(_valid(plan, index, step), vgg.pool(x, pooling), 0.0)
        if name in wanted:
            out[name] = x
    return out, new


def _initial_carry(params, plan: BandPlan, layers: tuple) -> dict:
    carry, channels = {}, 3
    for step in schedule(layers):
        width = plan.width >> step.level
        if step.name.startswith("conv"):
            carry[step.name] = jnp.zeros((2, width, channels), jnp.float32)
            channels = params[step.name]["bias"].shape[0]
        elif step.carry:
            carry[step.name] = jnp.zeros((1, plan.width >> (step.level - 1), channels), jnp.float32)
    return carry


def _rows_padded(full: jax.Array, plan: BandPlan, step: _Step, axis: int) -> jax.Array:
    """An image-sized map of ``step``'s layer padded so that band ``i``'s rows start at ``i * rows``."""
    rows = plan.band >> step.level
    pad = [(0, 0)] * full.ndim
    pad[axis] = (step.delay, plan.bands * rows - step.delay - full.shape[axis])
    return jnp.pad(full, pad)


def _parts(x: jax.Array, problem, plan: BandPlan):
    """Each band's parts of the objective at ``x`` (H, W, 3), stacked on a leading band axis."""
    spec, weights = problem.spec, problem.weights
    if spec.style_loss.streaming != "sums":
        raise JaxstyleError(f"the style loss {losses.label(spec.style_loss)!r} is not a sum over positions, so it cannot "
                            "be streamed in bands: evaluate it whole or in tiles (jaxstyle.evaluate.tiling.make_plan)")
    layers = spec.layers
    steps = {step.name: step for step in schedule(layers)}
    content = {layer: _rows_padded(t, plan, steps[layer], 0) for layer, t in problem.targets.content.items()}
    masks = {layer: _rows_padded(m, plan, steps[layer], 1) for layer, m in problem.masks.items()}
    image = weights.preprocessing(x)
    image = jnp.pad(image, ((0, plan.bands * plan.band - plan.height), (0, 0), (0, 0)))
    image = image.reshape(plan.bands, plan.band, plan.width, 3)

    def body(carry, inputs):
        index, rows = inputs
        feats, carry = _band_features(weights.params, rows, carry, index, plan, layers, spec.pooling)
        owned = {layer: jnp.broadcast_to(_valid(plan, index, steps[layer]), f.shape[:2] + (1,)).astype(jnp.float32)
                 for layer, f in feats.items()}

        def window(full, layer, axis):
            rows = plan.band >> steps[layer].level
            return jax.lax.dynamic_slice_in_dim(full, index * rows, rows, axis)

        parts = owned_parts(
            feats, owned, {layer: window(t, layer, 0) for layer, t in content.items()}, spec.style_layers,
            spec.style_loss, masks={layer: window(m, layer, 1) for layer, m in masks.items()})
        return carry, parts

    indices = jnp.arange(plan.bands, dtype=jnp.int32)
    policy = jax.checkpoint_policies.save_only_these_names(*plan.keep)
    _, parts = jax.lax.scan(jax.checkpoint(body, prevent_cse=False, policy=policy),
                            _initial_carry(weights.params, plan, layers), (indices, image))
    return parts


@functools.partial(jax.jit, static_argnames=("plan",))
def value_and_grad(x: jax.Array, problem, plan: BandPlan):
    """Loss and gradient of ``objective.total_loss(x, problem)`` ((H, W, 3)), band by band, exactly."""
    parts, vjp = jax.vjp(lambda image: _parts(image, problem, plan), x)

    def total(parts, x):
        return terms_from_parts(parts, x, problem)["total"]

    value, (cotangents, grad) = jax.value_and_grad(total, argnums=(0, 1))(parts, x)
    (from_parts,) = vjp(cotangents)
    return value, grad + from_parts


@functools.partial(jax.jit, static_argnames=("plan",))
def loss_terms(x: jax.Array, problem, plan: BandPlan) -> dict:
    """The weighted loss terms at ``x``, forward only, band by band."""
    return terms_from_parts(_parts(x, problem, plan), x, problem)
