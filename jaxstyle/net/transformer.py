"""The image transformation network of Johnson, Alahi & Fei-Fei (2016), with instance normalisation
(Ulyanov, Vedaldi & Lempitsky 2016), as a Flax module; and the pure :func:`forward` over its parameters.

Layers, as in Johnson et al.'s supplementary material and PyTorch's ``examples/fast_neural_style``:
a 9x9 convolution, two stride-2 3x3 convolutions, five residual blocks, two upsampling stages and a
9x9 output convolution; every convolution but the last is followed by instance normalisation and a
ReLU. Every convolution pads by reflection.

Departures, each deliberate: upsampling is nearest-neighbour resizing followed by a convolution
(Odena et al. 2016), not a transposed convolution, which leaves checkerboard patterns; the output
is ``sigmoid(y)``, so an image in [0, 1] comes out without clipping and the training-time forward is
exactly what :func:`forward` returns; ``width`` scales every layer's channels (32: the paper's).

Linen, not nnx: the parameters are a plain nested dict, the same kind of pytree as VGG-19's, that
maps one to one onto a safetensors file, and ``forward(params, image)`` is a pure function.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ARCHITECTURE = "johnson2016"
WIDTH = 32  # channels of the first layer in Johnson et al.; then 2x and 4x after each downsampling
EPS = 1e-5  # instance normalisation's epsilon (PyTorch's)
MULTIPLE = 4  # an image's sides are padded (by reflection) to a multiple of the two stride-2 stages
# Instance normalisations, in the order they are applied: conv1-3, two per residual block, up1-2.
NORMS = ("conv1", "conv2", "conv3", *(f"res{b}_{i}" for b in range(1, 6) for i in (1, 2)), "up1", "up2")
# Rows of the input that one output row depends on, each side, at most: 4 (conv1, 9x9) + 1 (conv2) +
# 2 (conv3, at half resolution) + 40 (10 3x3 convs at quarter resolution) + 4 (up1: its conv plus
# the nearest-neighbour rounding, at half resolution) + 2 (up2) + 4 (out, 9x9) = 57, rounded up to
# a multiple of 4 (bands start on multiples of 4). Checked by tests/test_net.py.
RECEPTIVE_RADIUS = 64


def _pad(x: jax.Array, radius: int, mode: str = "reflect") -> jax.Array:
    return jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode=mode)


CHUNK = 12288  # output positions per convolution call: XNNPACK keeps ~140 GFLOP/s up to about this, ~90 above


def _conv(x: jax.Array, kernel: jax.Array, stride: int = 1, chunk: int = 0) -> jax.Array:
    """A VALID convolution; with ``chunk``, computed in chunks of output rows (a sequential
    ``lax.map``) of about ``chunk`` positions each: on a large image XLA:CPU's forward convolution
    runs at two thirds of its rate on a small one, and the chunks give the same numbers. Not for
    training: the gradient of the loop runs several times slower than the plain convolution's."""
    k = kernel.shape[0]
    n, hp, wp, _ = x.shape
    h, w = (hp - k) // stride + 1, (wp - k) // stride + 1
    rows = max(1, chunk // (n * w)) if chunk else h

    def conv(x):
        return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "VALID",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    if rows >= h:
        return conv(x)
    chunks = -(-h // rows)
    span = (rows - 1) * stride + k  # input rows of one chunk
    x = jnp.pad(x, ((0, 0), (0, max(0, (chunks * rows - 1) * stride + k - hp)), (0, 0), (0, 0)))
    starts = jnp.arange(chunks) * (rows * stride)
    ys = jax.lax.map(lambda s: conv(jax.lax.dynamic_slice_in_dim(x, s, span, axis=1)), starts)
    return ys.transpose(1, 0, 2, 3, 4).reshape(n, chunks * rows, w, -1)[:, :h]


def _space_to_depth(x: jax.Array, b: int) -> jax.Array:
    """(N, H, W, C) -> (N, H/b, W/b, b*b*C), each b x b block's pixels (row, column, channel) as channels."""
    n, h, w, c = x.shape
    return x.reshape(n, h // b, b, w // b, b, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h // b, w // b, b * b * c)


def _depth_to_space(y: jax.Array, b: int) -> jax.Array:
    """The inverse of :func:`_space_to_depth`."""
    n, h, w, bbc = y.shape
    c = bbc // (b * b)
    return y.reshape(n, h, w, b, b, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * b, w * b, c)


def _block_kernel(kernel: jax.Array, b: int, out: int, stride: int = 1) -> jax.Array:
    """The kernel of the same convolution on :func:`_space_to_depth` blocks of ``b`` input pixels that
    computes ``out`` x ``out`` output pixels per block position (``out = b // stride``).

    Output pixel ``out * i + o`` of a stride-``stride`` VALID convolution reads input pixels
    ``stride * (out * i + o) + d``, d < K, which lie in blocks ``i + a``: tap ``a`` of the block
    kernel holds ``kernel[b * a + r - stride * o]`` at input offset ``r`` (zero outside the kernel).
    """
    k, _, cin, cout = kernel.shape
    taps = (stride * (out - 1) + k - 1) // b + 1
    a, r, o = np.meshgrid(np.arange(taps), np.arange(b), np.arange(out), indexing="ij")
    d = b * a + r - stride * o
    valid = (d >= 0) & (d < k)
    d = np.clip(d, 0, k - 1)
    dy, dx = d[:, None, :, None, :, None], d[None, :, None, :, None, :]
    inside = valid[:, None, :, None, :, None] & valid[None, :, None, :, None, :]
    blocks = kernel[dy, dx] * jnp.asarray(inside, kernel.dtype)[..., None, None]  # (a, a', r, r', o, o', cin, cout)
    blocks = blocks.transpose(0, 1, 2, 3, 6, 4, 5, 7)
    return blocks.reshape(taps, taps, b * b * cin, out * out * cout)


def _upsample_kernel(kernel: jax.Array) -> jax.Array:
    """A 3x3 kernel applied after nearest-neighbour upsampling by 2, as a 3x3 kernel on the image
    before it that gives each pixel's 2 x 2 outputs as channels (the upsampled copies summed)."""
    # output row 2i reads upsampled rows 2i-1, 2i, 2i+1 = source rows i-1, i, i (taps 0 | 1+2);
    # output row 2i+1 reads 2i, 2i+1, 2i+2 = source rows i, i, i+1 (taps 0+1 | 2)
    m = jnp.asarray([[[1, 0, 0], [0, 1, 1], [0, 0, 0]],
                     [[0, 0, 0], [1, 1, 0], [0, 0, 1]]], kernel.dtype)  # (o, source tap, kernel tap)
    blocks = jnp.einsum("oad,pbe,decf->abcopf", m, m, kernel)  # (a, b, cin, o, p, cout)
    k, _, cin, cout = kernel.shape
    return blocks.reshape(3, 3, cin, 4 * cout)


def _taps(xp: jax.Array, kernel: jax.Array) -> jax.Array:
    """A VALID convolution as one matrix product to every tap's output (C -> K*K*C_out channels) and a
    sum of the K*K shifted taps: for few output channels, where XNNPACK's convolutions are slow."""
    k, _, cin, cout = kernel.shape
    n, hp, wp, _ = xp.shape
    h, w = hp - k + 1, wp - k + 1
    taps = jnp.einsum("nhwc,cd->nhwd", xp, kernel.transpose(2, 0, 1, 3).reshape(cin, k * k * cout))
    taps = taps.reshape(n, hp, wp, k, k, cout)
    return sum(taps[:, dy:dy + h, dx:dx + w, dy, dx] for dy in range(k) for dx in range(k))


class _Conv(nn.Module):
    """A convolution with reflection padding (``k // 2``), computed in the form XLA:CPU runs fastest
    for its shape; every form is the same function (``"plain"`` spells it out):

    * ``"plain"``: pad, then a VALID convolution (stride ``stride``).
    * ``"blocks"``: on 4 x 4 space-to-depth blocks (few input channels: 3 -> 48), or for stride 2
      on 2 x 2 blocks, so that XNNPACK sees wide channels.
    * ``"upsample"``: nearest-neighbour upsampling by 2 then the convolution, computed at the low
      resolution with each pixel's four outputs as channels (no upsampled tensor is made).
    * ``"taps"``: few output channels: on 4 x 4 blocks, one matrix product to every tap's output, then
      the shifted taps summed (:func:`_taps`).
    """

    features: int
    kernel_size: int
    stride: int = 1
    form: str = "plain"
    chunk: int = 0  # output positions per convolution call (0: one call); see _conv

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, cin = self.kernel_size, x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, cin, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if self.form == "upsample":  # reflection padding after upsampling = edge padding before it
            y = _depth_to_space(_conv(_pad(x, 1, "edge"), _upsample_kernel(kernel), chunk=self.chunk), 2)
        else:
            xp = _pad(x, k // 2)
            if self.form == "blocks" and self.stride == 1:
                y = _depth_to_space(_conv(_space_to_depth(xp, 4), _block_kernel(kernel, 4, 4), chunk=self.chunk), 4)
            elif self.form == "blocks":
                y = _conv(_space_to_depth(xp, 2), _block_kernel(kernel, 2, 1, self.stride), chunk=self.chunk)
            elif self.form == "taps":
                y = _depth_to_space(_taps(_space_to_depth(xp, 4), _block_kernel(kernel, 4, 4)), 4)
            else:
                y = _conv(xp, kernel, self.stride, self.chunk)
        return y + bias.reshape(1, 1, 1, self.features)


class _Norm(nn.Module):
    """Instance normalisation with a learned scale and shift; its statistics are the image's own
    (per image and channel, over positions) unless given (banded evaluation, ``jaxstyle.net.bands``)."""

    @nn.compact
    def __call__(self, x: jax.Array, stats: jax.Array | None = None) -> jax.Array:
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,))
        bias = self.param("bias", nn.initializers.zeros, (channels,))
        if stats is None:
            mean = jnp.mean(x, axis=(1, 2), keepdims=True)
            var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
        else:  # (2, C): the mean and variance over the whole image
            mean, var = stats[0].reshape(1, 1, 1, channels), stats[1].reshape(1, 1, 1, channels)
        return (x - mean) * jax.lax.rsqrt(var + EPS) * scale.reshape(1, 1, 1, channels) + bias.reshape(1, 1, 1, channels)


def _upsample(y: jax.Array) -> jax.Array:
    """Nearest-neighbour upsampling by 2."""
    n, h, w, c = y.shape
    return jnp.broadcast_to(y[:, :, None, :, None, :], (n, h, 2, w, 2, c)).reshape(n, 2 * h, 2 * w, c)


class Stop(Exception):
    """Raised inside :class:`TransformerNet` to return a normalisation's input early (``upto``)."""

    def __init__(self, value):
        self.value = value


class TransformerNet(nn.Module):
    """Johnson et al.'s network; ``width`` channels after the first convolution (32 in the paper).

    Call: ``(x, stats=(), upto=None)`` with ``x`` (N, H, W, 3) in [0, 1], H and W multiples of 4.
    ``stats`` gives the first ``len(stats)`` normalisations' (2, C) mean and variance (the rest use the
    image's own); ``upto=k`` returns the input of normalisation ``k`` (``NORMS[k]``) instead of the
    image. Returns (N, H, W, 3) in (0, 1).
    """

    width: int = WIDTH
    fast: bool = True  # each convolution in its fastest form (see _Conv); False: spelled out, for tests
    chunk: int = 0  # convolutions in chunks of this many output positions (inference; see _conv)

    @nn.compact
    def __call__(self, x: jax.Array, stats: Sequence[jax.Array] = (), upto: int | None = None) -> jax.Array:
        w = self.width
        count = iter(range(len(NORMS)))

        def norm(y, name):
            k = next(count)
            if k == upto:
                raise Stop(y)
            return _Norm(name=f"{name}_norm")(y, stats[k] if k < len(stats) else None)

        def conv(y, features, kernel, name, stride=1, form="plain"):
            return _Conv(features, kernel, stride, form if self.fast else "plain", self.chunk, name=name)(y)

        y = nn.relu(norm(conv(x, w, 9, "conv1", form="blocks"), "conv1"))
        y = nn.relu(norm(conv(y, 2 * w, 3, "conv2", stride=2, form="blocks"), "conv2"))
        y = nn.relu(norm(conv(y, 4 * w, 3, "conv3", stride=2), "conv3"))
        for b in range(1, 6):
            r = nn.relu(norm(conv(y, 4 * w, 3, f"res{b}_1"), f"res{b}_1"))
            y = y + norm(conv(r, 4 * w, 3, f"res{b}_2"), f"res{b}_2")
        if self.fast:
            y = nn.relu(norm(conv(y, 2 * w, 3, "up1", form="upsample"), "up1"))
            y = nn.relu(norm(conv(y, w, 3, "up2", form="upsample"), "up2"))
        else:
            y = nn.relu(norm(conv(_upsample(y), 2 * w, 3, "up1"), "up1"))
            y = nn.relu(norm(conv(_upsample(y), w, 3, "up2"), "up2"))
        return nn.sigmoid(conv(y, 3, 9, "out", form="taps"))


def init(key: jax.Array, width: int = WIDTH) -> dict:
    """Fresh parameters of a network of ``width`` (Flax's default initialisers, from ``key``)."""
    return TransformerNet(width).init(key, jnp.zeros((1, 16, 16, 3), jnp.float32))["params"]


def width_of(params: dict) -> int:
    """The ``width`` a parameter tree was made with (the first convolution's output channels)."""
    return int(params["conv1"]["kernel"].shape[-1])


def forward(params: dict, images: jax.Array, stats: Sequence[jax.Array] = (), upto: int | None = None,
            fast: bool = True, chunk: int = 0) -> jax.Array:
    """The network on a batch: ``images`` (N, H, W, 3) in [0, 1], H and W multiples of 4.

    Pure and jit-able (``upto``, ``fast`` and ``chunk`` static). See :class:`TransformerNet` for
    ``stats`` and ``upto``; ``fast=False`` computes every convolution plainly (pad, convolve), and
    ``chunk`` (e.g. :data:`CHUNK`, for inference) in chunks of rows: the same function either way.

    Returns:
      (N, H, W, 3) in (0, 1); with ``upto=k``, normalisation ``k``'s input.
    """
    try:
        return TransformerNet(width_of(params), fast, chunk).apply({"params": params}, images, tuple(stats), upto)
    except Stop as stop:
        return stop.value
