"""The histogram style loss of Risser, Wilmot & Barnes, "Stable and Controllable Neural Texture Synthesis and
Style Transfer Using Histogram Losses" (2017): Gram matrices plus per-channel histogram matching."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .base import StyleLoss, register
from .gatys import gram, style_layer_loss
from .sliced import quantiles, sorted_target, stack_sorted
from .terms import EPS


def matched(features: jax.Array, target: dict) -> jax.Array:
    """``features`` (M, C) remapped channel by channel onto the painting's distribution: each value
    replaced by the painting's quantile of its rank (exact histogram matching, as with infinitely
    many bins; ties keep their order). No gradient flows through it."""
    features = jax.lax.stop_gradient(features)
    order = jnp.argsort(features, axis=0)  # (M, C): the rows of each channel, smallest first
    values = quantiles(target, features.shape[0])  # (M, C): the painting's value at each rank
    columns = jnp.arange(features.shape[1]).reshape(1, -1)
    return jnp.zeros_like(features).at[order, columns].set(values)


def histogram_distance(features: jax.Array, target: dict, normalization: str) -> jax.Array:
    """Risser et al.'s histogram loss: squared distance from ``features`` (M, C) to their remapping."""
    remapped = matched(features, target)
    sq = jnp.mean(jnp.square(features - remapped))
    if normalization in ("paper", "area"):
        return sq
    return sq / (jnp.mean(jnp.square(remapped)) + EPS)


@register
@dataclass(frozen=True)
class Histogram(StyleLoss):
    """The Gram term plus ``weight`` times the histogram term: each channel's values pulled to the
    painting's values of the same rank (the remapping is a constant target, as in the paper)."""

    weight: float = 1.0

    name = "histogram"
    streaming = "whole"  # ranks need every position of the layer at once

    @classmethod
    def from_config(cls, config) -> "Histogram":
        return cls(weight=float(config.histogram_weight))

    def statistic(self, features):
        f = features.reshape(-1, features.shape[-1])
        return {"gram": gram(features), "features": f}

    def target(self, statistic):
        return {"gram": statistic["gram"], "hist": sorted_target(statistic["features"])}

    def stack(self, targets):
        return {"gram": jnp.stack([t["gram"] for t in targets]), "hist": stack_sorted([t["hist"] for t in targets])}

    def distance(self, statistic, target, normalization):
        return (style_layer_loss(statistic["gram"], target["gram"], normalization)
                + self.weight * histogram_distance(statistic["features"], target["hist"], normalization))
