"""The loss terms of Gatys et al. (2015): content, style (Gram matrices) and total variation.

Notation follows the paper: a layer has N_l filters and M_l positions; F is the (M_l, N_l) feature
matrix of the image being optimised, P of the photo, G and A the Gram matrices of image and painting.

Two normalisations, chosen by a static ``normalization`` argument:

* ``"paper"`` — exactly eqs. (1), (4): ``L_content = 1/2 sum (F - P)^2`` and
  ``E_l = 1 / (4 N_l^2 M_l^2) sum (G_raw - A_raw)^2``.
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

Normalization = Literal["relative", "paper"]
NORMALIZATIONS = ("relative", "paper")
TV_KINDS = ("l2", "l1")
_EPS = 1e-8


def gram(features: jax.Array) -> jax.Array:
    """Gram matrix of one layer's features, divided by the number of positions.

    Args:
      features: (H, W, C) activations.

    Returns:
      (C, C) ``F^T F / M`` with F the (M = H*W, C) feature matrix. Departure from the paper: dividing
      by M makes the matrix independent of image size (the paper's ``1/M^2`` in eq. (4) still holds:
      ``sum (G_raw - A_raw)^2 / M^2 == sum (G - A)^2``).
    """
    h, w, c = features.shape
    f = features.reshape(h * w, c)
    return jnp.matmul(f.T, f, precision=jax.lax.Precision.HIGHEST) / (h * w)


def content_loss(features: jax.Array, target: jax.Array, normalization: Normalization = "relative") -> jax.Array:
    """Squared error of feature maps (eq. 1). ``features`` and ``target``: (H, W, C)."""
    sq = jnp.sum(jnp.square(features - target))
    if normalization == "paper":
        return 0.5 * sq
    return sq / (jnp.sum(jnp.square(target)) + _EPS)


def style_layer_loss(g: jax.Array, a: jax.Array, normalization: Normalization = "relative") -> jax.Array:
    """E_l of eq. (4) between Gram matrices ``g`` and ``a`` (both (C, C), from :func:`gram`)."""
    sq = jnp.sum(jnp.square(g - a))
    if normalization == "paper":
        return sq / (4.0 * g.shape[0] ** 2)
    return sq / (jnp.sum(jnp.square(a)) + _EPS)


def style_loss(g: jax.Array, targets: jax.Array, blend: jax.Array, normalization: Normalization = "relative") -> jax.Array:
    """One layer's style term against several paintings, vmapped over the painting axis.

    Args:
      g: (C, C) Gram matrix of the image being optimised.
      targets: (S, C, C) Gram matrices of S style images.
      blend: (S,) weights of the style images (they sum to one).
    """
    per_style = jax.vmap(style_layer_loss, in_axes=(None, 0, None))(g, targets, normalization)
    return jnp.dot(blend, per_style)


def tv_loss(image: jax.Array, kind: str = "l2") -> jax.Array:
    """Total variation of an (H, W, C) image: mean squared (l2) or absolute (l1) neighbour difference.

    Not in Gatys et al. (2015); a common regulariser (Mahendran & Vedaldi 2015) against pixel noise.
    """
    dy = image[1:] - image[:-1]
    dx = image[:, 1:] - image[:, :-1]
    if kind == "l1":
        return jnp.mean(jnp.abs(dy)) + jnp.mean(jnp.abs(dx))
    return jnp.mean(jnp.square(dy)) + jnp.mean(jnp.square(dx))
