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


def _pad(x: jax.Array, radius: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect")


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

    @nn.compact
    def __call__(self, x: jax.Array, stats: Sequence[jax.Array] = (), upto: int | None = None) -> jax.Array:
        w = self.width
        count = iter(range(len(NORMS)))

        def norm(y, name):
            k = next(count)
            if k == upto:
                raise Stop(y)
            return _Norm(name=f"{name}_norm")(y, stats[k] if k < len(stats) else None)

        def conv(y, features, kernel, name, stride=1):
            return nn.Conv(features, (kernel, kernel), strides=stride, padding="VALID", name=name)(_pad(y, kernel // 2))

        def upsample(y):
            n, h, wd, c = y.shape
            return jnp.broadcast_to(y[:, :, None, :, None, :], (n, h, 2, wd, 2, c)).reshape(n, 2 * h, 2 * wd, c)

        y = nn.relu(norm(conv(x, w, 9, "conv1"), "conv1"))
        y = nn.relu(norm(conv(y, 2 * w, 3, "conv2", stride=2), "conv2"))
        y = nn.relu(norm(conv(y, 4 * w, 3, "conv3", stride=2), "conv3"))
        for b in range(1, 6):
            r = nn.relu(norm(conv(y, 4 * w, 3, f"res{b}_1"), f"res{b}_1"))
            y = y + norm(conv(r, 4 * w, 3, f"res{b}_2"), f"res{b}_2")
        y = nn.relu(norm(conv(upsample(y), 2 * w, 3, "up1"), "up1"))
        y = nn.relu(norm(conv(upsample(y), w, 3, "up2"), "up2"))
        return nn.sigmoid(conv(y, 3, 9, "out"))


def init(key: jax.Array, width: int = WIDTH) -> dict:
    """Fresh parameters of a network of ``width`` (Flax's default initialisers, from ``key``)."""
    return TransformerNet(width).init(key, jnp.zeros((1, 16, 16, 3), jnp.float32))["params"]


def width_of(params: dict) -> int:
    """The ``width`` a parameter tree was made with (the first convolution's output channels)."""
    return int(params["conv1"]["kernel"].shape[-1])


def forward(params: dict, images: jax.Array, stats: Sequence[jax.Array] = (), upto: int | None = None) -> jax.Array:
    """The network on a batch: ``images`` (N, H, W, 3) in [0, 1], H and W multiples of 4.

    Pure and jit-able (``upto`` static). See :class:`TransformerNet` for ``stats`` and ``upto``.

    Returns:
      (N, H, W, 3) in (0, 1); with ``upto=k``, normalisation ``k``'s input.
    """
    try:
        return TransformerNet(width_of(params)).apply({"params": params}, images, tuple(stats), upto)
    except Stop as stop:
        return stop.value


def norm_factor(k: int) -> int:
    """How many input rows one row of normalisation ``k``'s input spans (1, 2 or 4)."""
    return {"conv1": 1, "conv2": 2, "up1": 2, "up2": 1}.get(NORMS[k], 4)
