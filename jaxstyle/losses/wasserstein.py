"""A style loss of means and covariances: the squared Wasserstein-2 distance between Gaussians fitted to
the output's and the painting's features at each layer (Dowson & Landau 1982; Kolkin et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .base import StyleLoss, register
from .terms import EPS, Normalization


def feature_stats(features: jax.Array) -> dict:
    """Mean (C,) and covariance (C, C) of one layer's features over positions."""
    h, w, c = features.shape
    f = features.reshape(h * w, c)
    mean = jnp.mean(f, axis=0)
    centred = f - mean.reshape(1, c)
    cov = jnp.matmul(centred.T, centred, precision=jax.lax.Precision.HIGHEST) / (h * w)
    return {"mean": mean, "cov": cov}


@jax.custom_batching.sequential_vmap
def eigh(m: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``jnp.linalg.eigh`` of one symmetric matrix that, vmapped, becomes a loop, never a batch.

    Why: XLA:CPU runs a batch of eigendecompositions as tasks on the thread pool that also runs
    the program, and two such batches in flight at once can deadlock each other. A loop of single
    eigendecompositions runs each on its caller's thread; the matrices are at most 512 x 512 and
    few. No reverse mode (``custom_vmap`` has none): differentiate through :func:`eigvalsh`.
    """
    return jnp.linalg.eigh(m)


@jax.custom_vjp
def eigvalsh(m: jax.Array) -> jax.Array:
    """Eigenvalues of a symmetric matrix (ascending), from :func:`eigh`: never batched when vmapped."""
    return eigh(m)[0]


def _eigvalsh_fwd(m):
    return eigh(m)  # the eigenvalues, and the eigenvectors as the backward pass's residual


def _eigvalsh_bwd(vecs, g):
    # d l_i = v_i^T dm v_i for a symmetric perturbation dm: the cotangent is V diag(g) V^T.
    return (jnp.matmul(vecs * g.reshape(1, -1), vecs.T, precision=jax.lax.Precision.HIGHEST),)


eigvalsh.defvjp(_eigvalsh_fwd, _eigvalsh_bwd)


def _sqrtm_psd(m: jax.Array) -> jax.Array:
    vals, vecs = eigh(m)
    return jnp.matmul(vecs * jnp.sqrt(jnp.maximum(vals, 0.0)).reshape(1, -1), vecs.T)


SQRT_KNEE = 1e-3
"""Eigenvalues under this fraction of the largest enter ``tr(A^1/2)`` through a straight line, not the
square root (see :func:`trace_sqrt_psd`)."""


def trace_sqrt_psd(m: jax.Array) -> jax.Array:
    """``tr(m^1/2)`` of a symmetric PSD matrix, with a gradient that stays bounded and reproducible.

    The square root's slope ``1/(2 sqrt(l))`` is unbounded as an eigenvalue ``l`` goes to zero, and the
    small eigenvalues of a float32 covariance (rank-deficient at deep layers, or of a flat painting)
    are rounding noise: the W2 gradient was that noise magnified (1.5e-3 relative error against
    float64, on the tests' images). Below the knee ``t = SQRT_KNEE x l_max`` the square root is
    replaced by its chord ``l / sqrt(t)``: continuous, concave, zero at zero (so W2 stays >= its exact
    value >= 0), slope at most ``1/sqrt(t)``. The trace then changes by at most ``sqrt(t)/4`` per
    eigenvalue under the knee; the float32 W2 gradient then matches float64 to 1.2e-5 (knee 1e-3).
    """
    vals = eigvalsh(m)
    knee = SQRT_KNEE * jnp.maximum(jax.lax.stop_gradient(jnp.max(vals)), EPS)
    return jnp.sum(jnp.where(vals >= knee, jnp.sqrt(jnp.maximum(vals, knee)), jnp.maximum(vals, 0.0) / jnp.sqrt(knee)))


def wasserstein_layer_loss(x_stats: dict, target: dict, normalization: Normalization = "relative") -> jax.Array:
    """Squared Wasserstein-2 distance between Gaussians fitted to the two feature distributions.

    ``W2^2 = |mu - mu_t|^2 + tr(S) + tr(S_t) - 2 tr((S_t^1/2 S S_t^1/2)^1/2)`` (Dowson & Landau 1982);
    not in Gatys et al. (2015): an alternative style loss that matches means and covariances
    (Kolkin et al. 2019 use it as a style term). The last trace is the sum of the square roots of
    the eigenvalues of a symmetric PSD matrix, whose gradient stays finite.
    """
    root = target["cov_sqrt"]
    inner = jnp.matmul(jnp.matmul(root, x_stats["cov"], precision=jax.lax.Precision.HIGHEST), root,
                       precision=jax.lax.Precision.HIGHEST)
    inner = 0.5 * (inner + inner.T)
    cross = trace_sqrt_psd(inner)
    w2 = (jnp.sum(jnp.square(x_stats["mean"] - target["mean"]))
          + jnp.trace(x_stats["cov"]) + jnp.trace(target["cov"]) - 2.0 * cross)
    if normalization in ("paper", "area"):
        return w2
    return w2 / (jnp.sum(jnp.square(target["mean"])) + jnp.trace(target["cov"]) + EPS)


@register
@dataclass(frozen=True)
class Wasserstein(StyleLoss):
    """Mean and covariance per layer, compared by the W2 distance of the fitted Gaussians."""

    name = "wasserstein"
    streaming = "sums"

    def statistic(self, features):
        return feature_stats(features)

    def target(self, statistic):
        # the square root of the painting's covariance, computed once per painting, not per step
        return {"mean": statistic["mean"], "cov": statistic["cov"], "cov_sqrt": _sqrtm_psd(statistic["cov"])}

    def distance(self, statistic, target, normalization):
        return wasserstein_layer_loss(statistic, target, normalization)

    def parts(self, features, owned, targets):
        """The window's own count, mean and centred second moment, which :meth:`combine` merges stably
        (raw sums lose precision in ``S2/M - mean mean^T``, and the W2 gradient amplifies it)."""
        c = features.shape[-1]
        mask = owned.reshape(-1, 1)
        f = features.reshape(-1, c)
        n = jnp.sum(mask)  # 0 for a window of a few pixels at the edge that floor pooling drops
        mean = jnp.sum(mask * f, axis=0) / jnp.maximum(n, 1.0)
        centred = f - mean.reshape(1, c)
        return {"n": n, "mean": mean, "m2": jnp.matmul((mask * centred).T, centred, precision=jax.lax.Precision.HIGHEST)}

    def combine(self, parts, positions):
        """Per-window means and centred moments merged as in Chan, Golub & LeVeque (1979)."""
        n = parts["n"].reshape(-1, 1)  # (T, 1)
        mean = jnp.sum(n * parts["mean"], axis=0) / positions
        d = parts["mean"] - mean.reshape(1, -1)  # (T, C)
        between = jnp.matmul((n * d).T, d, precision=jax.lax.Precision.HIGHEST)
        return {"mean": mean, "cov": (jnp.sum(parts["m2"], axis=0) + between) / positions}
