"""The sliced Wasserstein style loss of Heitz, Vanhoey, Chambon & Belcour, "A Sliced Wasserstein Loss for
Neural Texture Synthesis" (CVPR 2021), and the sorted-quantile matching it shares with the histogram loss."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .base import StyleLoss, register
from .terms import EPS


def sorted_target(values: jax.Array) -> dict:
    """A painting's sorted values per column ((N, K) → ``{"sorted": (N, K), "count": ()}``)."""
    return {"sorted": jnp.sort(values, axis=0), "count": jnp.asarray(values.shape[0], jnp.float32)}


def stack_sorted(targets) -> dict:
    """Sorted targets of different lengths stacked on a new leading axis, padded (with their last
    row) to the longest; each keeps its own ``count``, so the padding is never read."""
    n = max(t["sorted"].shape[-2] for t in targets)

    def pad(a):
        widths = [(0, 0)] * a.ndim
        widths[-2] = (0, n - a.shape[-2])
        return jnp.pad(a, widths, mode="edge")

    return {"sorted": jnp.stack([pad(t["sorted"]) for t in targets]), "count": jnp.stack([t["count"] for t in targets])}


def quantiles(target: dict, m: int) -> jax.Array:
    """The target's sorted values resampled to ``m`` rows (linear between its own ``count`` rows):
    row ``i`` is the ``(i + 1/2) / m`` quantile. Exactly the sorted values when ``m == count``."""
    n = target["count"]
    u = jnp.clip((jnp.arange(m, dtype=jnp.float32) + 0.5) * n / m - 0.5, 0.0, n - 1.0)
    lo = jnp.floor(u).astype(jnp.int32)
    hi = jnp.minimum(lo + 1, n.astype(jnp.int32) - 1)
    w = (u - lo.astype(jnp.float32)).reshape(-1, 1)
    return target["sorted"][lo] * (1.0 - w) + target["sorted"][hi] * w


def sorted_distance(values: jax.Array, target: dict, normalization: str) -> jax.Array:
    """Mean squared difference between the sorted columns of ``values`` (M, K) and the target's
    quantiles at the same M ranks: the squared 1-D Wasserstein-2 distance per column, averaged."""
    ours = jnp.sort(values, axis=0)
    theirs = jax.lax.stop_gradient(quantiles(target, values.shape[0]))
    sq = jnp.mean(jnp.square(ours - theirs))
    if normalization in ("paper", "area"):
        return sq
    return sq / (jnp.mean(jnp.square(theirs)) + EPS)


def directions(channels: int, count: int, seed: int) -> jax.Array:
    """``count`` random unit directions in feature space, (channels, count), from ``seed``."""
    d = jax.random.normal(jax.random.PRNGKey(seed), (channels, count), jnp.float32)
    return d / jnp.linalg.norm(d, axis=0, keepdims=True)


@register
@dataclass(frozen=True)
class SlicedWasserstein(StyleLoss):
    """Each layer's features at every position projected on random unit directions, each projection
    sorted and matched to the painting's sorted projections (resampled when the counts differ).

    Args:
      projections: directions per layer; 0 (default) as many as the layer has channels (Heitz et al.).
      seed: the directions' seed. They are drawn once and fixed for the run, not redrawn every step
        (as Heitz et al. do with Adam): L-BFGS builds its curvature model from the changes of one
        function, which a loss that changes every step would break, and a fixed seed gives the same
        image again.
    """

    projections: int = 0
    seed: int = 0

    name = "sliced"
    streaming = "whole"  # sorting needs every position of the layer at once

    def _directions(self, channels: int) -> jax.Array:
        return directions(channels, self.projections or channels, self.seed)

    def statistic(self, features):
        f = features.reshape(-1, features.shape[-1])
        return f @ self._directions(f.shape[-1])

    def target(self, statistic):
        return sorted_target(statistic)

    def stack(self, targets):
        return stack_sorted(targets)

    def distance(self, statistic, target, normalization):
        return sorted_distance(statistic, target, normalization)
