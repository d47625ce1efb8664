"""The loss terms of Gatys et al. (2015): content, style (Gram matrices) and total variation.

Notation follows the paper: a layer has N_l filters and M_l positions; F is the (M_l, N_l) feature
matrix of the image being optimised, P of the photo, G and A the Gram matrices of image and painting.

Three normalisations, chosen by a static ``normalization`` argument:

* ``"paper"`` — exactly eqs. (1), (4): ``L_content = 1/2 sum (F - P)^2`` and
  ``E_l = 1 / (4 N_l^2 M_l^2) sum (G_raw - A_raw)^2``.
* ``"area"`` — eq. (4) as published, eq. (1) divided by the number of positions M_l:
  ``L_content = 1/(2 M_l) sum (F - P)^2``. Eq. (4) already carries ``1/M_l^2`` (a raw Gram matrix
  grows with M_l), so neither term changes with the image's area and one alpha/beta means the same
  at every size; with eq. (1) literal, the content term grows with the area and the ratio that
  balances the two shifts with the size (the paper's preset uses this; see ``StyleConfig.paper``).
* ``"relative"`` (default) — each term divided by the squared norm of its target, so every layer's
  term is a scale-free relative error near one at the start, whatever the image size, layer depth or
  weight scale. Departure from the paper: it keeps the total loss near order one, which L-BFGS needs
  to behave (an unnormalised loss made a PyTorch reference diverge), and makes equal layer weights
  mean equal influence.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

Normalization = Literal["relative", "paper", "area"]
NORMALIZATIONS = ("relative", "paper", "area")
TV_KINDS = ("l2", "l1")
EPS = 1e-8


def content_loss(features: jax.Array, target: jax.Array, normalization: Normalization = "relative") -> jax.Array:
    """Squared error of feature maps (eq. 1). ``features`` and ``target``: (H, W, C)."""
    return content_from_squared_error(jnp.sum(jnp.square(features - target)), target, normalization)


def content_from_squared_error(sq: jax.Array, target: jax.Array, normalization: Normalization = "relative") -> jax.Array:
    """Eq. (1) from ``sq``, the squared error summed over every position of ``target`` ((H, W, C)).

    The tiled evaluation (``jaxstyle.evaluate.tiling``) sums ``sq`` tile by tile and finishes here.
    """
    if normalization == "paper":
        return 0.5 * sq
    if normalization == "area":
        return 0.5 * sq / (target.shape[0] * target.shape[1])
    return sq / (jnp.sum(jnp.square(target)) + EPS)


def tv_loss(image: jax.Array, kind: str = "l2") -> jax.Array:
    """Total variation of an (H, W, C) image: mean squared (l2) or absolute (l1) neighbour difference.

    Not in Gatys et al. (2015); a common regulariser (Mahendran & Vedaldi 2015) against pixel noise.
    """
    dy = image[1:] - image[:-1]
    dx = image[:, 1:] - image[:, :-1]
    if kind == "l1":
        return jnp.mean(jnp.abs(dy)) + jnp.mean(jnp.abs(dx))
    return jnp.mean(jnp.square(dy)) + jnp.mean(jnp.square(dx))


def temporal_loss(image: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Ruder, Dosovitskiy & Brox (2016), eq. (7): ``1/D sum_p c_p |x_p - w_p|^2`` between an (H, W, 3)
    video frame and ``target``, the previous output warped into it, where the flow is trusted
    (``mask`` (H, W), c in [0, 1]); D is the number of values, H * W * 3."""
    return jnp.sum(mask[:, :, None] * jnp.square(image - target)) / image.size
