"""VGG-19 (Simonyan & Zisserman 2014) as pure functions: named features of one image.

Gatys et al. (2015) use the 16 convolutional and 5 pooling layers of VGG-19 and no fully
connected layer. Layers carry the paper's names (``conv4_2``, ``relu4_2``, ``pool4``), never indices.
"""

from __future__ import annotations

import functools
from typing import Iterable, Literal, Mapping

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from ..errors import JaxstyleError

BLOCK_CONVS = (2, 2, 4, 4, 4)
CONV_LAYERS = tuple(f"conv{b + 1}_{i + 1}" for b, n in enumerate(BLOCK_CONVS) for i in range(n))


def _layer_order() -> tuple[str, ...]:
    names = []
    for b, n in enumerate(BLOCK_CONVS):
        for i in range(n):
            names += [f"conv{b + 1}_{i + 1}", f"relu{b + 1}_{i + 1}"]
        names.append(f"pool{b + 1}")
    return tuple(names)


LAYERS = _layer_order()
"""Every layer name in network order: conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, …, pool5."""

POOLINGS = ("max", "avg")
Pooling = Literal["max", "avg"]


def check_layers(layers: Iterable[str], what: str = "layer") -> tuple[str, ...]:
    """Return ``layers`` as a tuple, or raise naming the unknown one and the valid names."""
    layers = tuple(layers)
    for name in layers:
        if name not in LAYERS:
            raise JaxstyleError(
                f"unknown {what} {name!r}; valid names are conv1_1 … conv5_4, relu1_1 … relu5_4 "
                f"and pool1 … pool5 (e.g. relu4_2)"
            )
    if not layers:
        raise JaxstyleError(f"no {what}s given; name at least one, e.g. relu4_2")
    return layers


def pools_before(layer: str) -> int:
    """Number of 2x2 poolings applied before ``layer``'s output (pool layers count themselves)."""
    block = int(layer[4])  # conv4_2, relu4_2 and pool4 all belong to block 4
    return block if layer.startswith("pool") else block - 1


def min_image_size(layers: Iterable[str]) -> int:
    """Smallest image side (pixels) for which every layer in ``layers`` has at least a 1x1 map."""
    return 2 ** max(pools_before(name) for name in check_layers(layers))


def _convolve(x: jax.Array, kernel: jax.Array, pad_rows: int = 1) -> jax.Array:
    # x: (H, W, Cin), kernel: (3, 3, Cin, Cout) HWIO; zero padding of one column each side as in VGG,
    # and of ``pad_rows`` rows (1: VGG's own; 0: a band of rows whose neighbours are given, jaxstyle.evaluate.bands;
    # 2: the input gradient of the latter).
    return jax.lax.conv_general_dilated(
        x[None], kernel, window_strides=(1, 1), padding=((pad_rows, pad_rows), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )[0]


def _conv(x: jax.Array, kernel: jax.Array, bias: jax.Array, pad_rows: int = 1) -> jax.Array:
    return _convolve(x, kernel, pad_rows) + bias.reshape(1, 1, -1)


def backward_kernel(kernel: jax.Array) -> jax.Array:
    """The kernel whose 'SAME' convolution is the input gradient of ``kernel``'s: flipped in space,
    input and output features swapped ((3, 3, Cout, Cin) HWIO)."""
    return jnp.flip(kernel, (0, 1)).swapaxes(2, 3)


def with_backward_kernels(params: Mapping[str, Mapping[str, jax.Array]]) -> dict:
    """``params`` with each layer's :func:`backward_kernel` precomputed as ``"kernel_t"``.

    Why: the input gradient of a convolution is a convolution with the flipped, transposed kernel,
    and XLA:CPU otherwise rebuilds that copy of every kernel in every evaluation (13 copies, 52 MB;
    ``bench/eval_profile.py`` showed them as ``transpose_copy_fusion``). A run computes them once, here,
    after any rescaling of the weights (``jaxstyle.model.normalize``), so they match ``"kernel"``.
    """
    flipped = _backward_kernels({name: layer["kernel"] for name, layer in params.items() if "kernel" in layer})
    return {name: dict(layer, kernel_t=flipped[name]) if name in flipped else dict(layer)
            for name, layer in params.items()}


@jax.jit
def _backward_kernels(kernels: Mapping[str, jax.Array]) -> dict:
    # One program for every layer: op by op, each kernel's flip and transpose was a program of its own
    # (16 compilations, 1.6 s in every new process; too quick each for JAX's persistent cache).
    return {name: backward_kernel(kernel) for name, kernel in kernels.items()}


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _conv_given_backward(x, kernel, kernel_t, bias, pad_rows=1):
    return _conv(x, kernel, bias, pad_rows)


def _conv_fwd(x, kernel, kernel_t, bias, pad_rows):
    # symbolic_zeros: each argument arrives as CustomVJPPrimal(value, perturbed). The input is kept
    # for the backward pass only if the kernel's own gradient is asked for (never in a style run,
    # which differentiates the image only), so the saved activations are what plain autodiff keeps.
    y = _conv(x.value, kernel.value, bias.value, pad_rows)
    return y, (x.value if kernel.perturbed else None, kernel.value, kernel_t.value, bias.perturbed)


def _conv_bwd(pad_rows, residuals, dy):
    x, kernel, kernel_t, want_bias = residuals
    if isinstance(dy, jax.custom_derivatives.SymbolicZero):
        return None, None, None, None
    dx = _convolve(dy, kernel_t, 2 - pad_rows)
    dkernel = None if x is None else jax.vjp(lambda k: _convolve(x, k, pad_rows), kernel)[1](dy)[0]
    dbias = dy.sum(axis=(0, 1)) if want_bias else None
    return dx, dkernel, None, dbias  # kernel_t: the loss does not depend on it (only its gradient does)


_conv_given_backward.defvjp(_conv_fwd, _conv_bwd, symbolic_zeros=True)


def conv(layer: Mapping[str, jax.Array], x: jax.Array, pad_rows: int = 1) -> jax.Array:
    """One conv layer (``{"kernel", "bias"}``, optionally ``"kernel_t"``: :func:`with_backward_kernels`)
    applied to ``x`` (H, W, Cin), padded by ``pad_rows`` zero rows top and bottom (see ``_convolve``)."""
    if "kernel_t" in layer:  # the input gradient uses the precomputed copy
        return _conv_given_backward(x, layer["kernel"], layer["kernel_t"], layer["bias"], pad_rows)
    return _conv(x, layer["kernel"], layer["bias"], pad_rows)


def pool(x: jax.Array, pooling: Pooling) -> jax.Array:
    """2x2 pooling, stride 2, of an (H, W, C) map: (H // 2, W // 2, C), an odd trailing row or column
    dropped (floor mode, as Caffe and PyTorch). A reshape, cheaper than ``reduce_window`` and its
    gradient."""
    h, w, c = x.shape
    x = x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c)
    return x.max(axis=(1, 3)) if pooling == "max" else x.mean(axis=(1, 3))


def features(
    params: Mapping[str, Mapping[str, jax.Array]],
    image: jax.Array,
    layers: Iterable[str],
    *,
    pooling: Pooling = "max",
) -> dict[str, jax.Array]:
    """VGG-19 activations of one preprocessed image at the named layers.

    Args:
      params: ``{"conv1_1": {"kernel": (3, 3, Cin, Cout), "bias": (Cout,)}, …}`` for every conv
        layer up to the deepest one requested.
      image: (H, W, 3) float, already preprocessed for these weights (see ``weights.preprocess``).
      layers: names from :data:`LAYERS`; only the network up to the deepest one is computed.
      pooling: ``"max"`` (VGG's own) or ``"avg"`` (the paper's recommendation for synthesis).

    Returns:
      ``{name: (H_l, W_l, C_l)}`` for each requested name.
    """
    wanted = set(check_layers(layers))
    if pooling not in POOLINGS:
        raise JaxstyleError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    last = max(LAYERS.index(name) for name in wanted)
    out = {}
    x = image
    for name in LAYERS[: last + 1]:
        if name.startswith("conv"):
            x = conv(params[name], x)
        elif name.startswith("relu"):
            x = jax.nn.relu(x)
        else:  # named, so a jax.checkpoint policy can keep just the block outputs (bench/memory.py)
            x = checkpoint_name(pool(x, pooling), name)
        if name in wanted:
            out[name] = x
    return out
