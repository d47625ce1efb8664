"""The style loss of Gatys et al. (2015): squared error of Gram matrices, eq. (4)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .base import StyleLoss, register
from .terms import EPS, Normalization


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


def style_layer_loss(g: jax.Array, a: jax.Array, normalization: Normalization = "relative") -> jax.Array:
    """E_l of eq. (4) between Gram matrices ``g`` and ``a`` (both (C, C), from :func:`gram`)."""
    sq = jnp.sum(jnp.square(g - a))
    if normalization in ("paper", "area"):
        return sq / (4.0 * g.shape[0] ** 2)
    return sq / (jnp.sum(jnp.square(a)) + EPS)


@register
@dataclass(frozen=True)
class Gram(StyleLoss):
    """Gram matrices ``F^T F / M`` compared by squared error (eq. 4); region masks give guided Grams."""

    name = "gram"
    guided = True
    streaming = "sums"

    def statistic(self, features):
        return gram(features)

    def distance(self, statistic, target, normalization):
        return style_layer_loss(statistic, target, normalization)

    def parts(self, features, owned, targets):
        f = features.reshape(-1, features.shape[-1])
        return {"s2": jnp.matmul((owned.reshape(-1, 1) * f).T, f, precision=jax.lax.Precision.HIGHEST)}

    def combine(self, parts, positions):
        return jnp.sum(parts["s2"], axis=0) / positions
