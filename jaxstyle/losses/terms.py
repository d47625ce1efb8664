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
STYLE_LOSSES = ("gram", "wasserstein", "mrf")  # mrf: jaxstyle.losses.mrf (Li & Wand 2016)
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
    return content_from_squared_error(jnp.sum(jnp.square(features - target)), target, normalization)


def content_from_squared_error(sq: jax.Array, target: jax.Array, normalization: Normalization = "relative") -> jax.Array:
    """Eq. (1) from ``sq``, the squared error summed over every position of ``target`` ((H, W, C)).

    The tiled evaluation (``jaxstyle.evaluate.tiling``) sums ``sq`` tile by tile and finishes here.
    """
    if normalization == "paper":
        return 0.5 * sq
    if normalization == "area":
        return 0.5 * sq / (target.shape[0] * target.shape[1])
    return sq / (jnp.sum(jnp.square(target)) + _EPS)


def style_layer_loss(g: jax.Array, a: jax.Array, normalization: Normalization = "relative") -> jax.Array:
    """E_l of eq. (4) between Gram matrices ``g`` and ``a`` (both (C, C), from :func:`gram`)."""
    sq = jnp.sum(jnp.square(g - a))
    if normalization in ("paper", "area"):
        return sq / (4.0 * g.shape[0] ** 2)
    return sq / (jnp.sum(jnp.square(a)) + _EPS)


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
    knee = SQRT_KNEE * jnp.maximum(jax.lax.stop_gradient(jnp.max(vals)), _EPS)
    return jnp.sum(jnp.where(vals >= knee, jnp.sqrt(jnp.maximum(vals, knee)), jnp.maximum(vals, 0.0) / jnp.sqrt(knee)))


def style_statistic(features: jax.Array, kind: str = "gram"):
    """What a style loss compares: the Gram matrix, or mean and covariance (plus its square root,
    used only on targets) for the Wasserstein-2 loss."""
    return style_target(gram(features) if kind == "gram" else feature_stats(features), kind)


def style_target(statistic, kind: str = "gram"):
    """A painting's statistic as a style target: for ``"wasserstein"`` it also carries the square root
    of the covariance (computed once per painting, not per step)."""
    if kind == "gram":
        return statistic
    return {"mean": statistic["mean"], "cov": statistic["cov"], "cov_sqrt": _sqrtm_psd(statistic["cov"])}


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
    return w2 / (jnp.sum(jnp.square(target["mean"])) + jnp.trace(target["cov"]) + _EPS)


def style_loss(features: jax.Array, targets, blend: jax.Array, normalization: Normalization = "relative",
               kind: str = "gram") -> jax.Array:
    """One layer's style term against several paintings, vmapped over the painting axis.

    Args:
      features: (H, W, C) activations of the image being optimised.
      targets: :func:`style_statistic` of S style images, stacked on a leading axis: (S, C, C) for
        ``"gram"``; ``{"mean": (S, C), "cov": (S, C, C), "cov_sqrt": (S, C, C)}`` for ``"wasserstein"``.
      blend: (S,) weights of the style images (they sum to one).
      kind: ``"gram"`` (the paper) or ``"wasserstein"``.
    """
    statistic = gram(features) if kind == "gram" else feature_stats(features)
    return style_loss_of_statistic(statistic, targets, blend, normalization, kind)


def style_loss_of_statistic(statistic, targets, blend: jax.Array, normalization: Normalization = "relative",
                            kind: str = "gram") -> jax.Array:
    """:func:`style_loss` from the image's statistic: its (C, C) Gram matrix (``"gram"``) or
    ``{"mean": (C,), "cov": (C, C)}`` (``"wasserstein"``), however it was summed (whole or tiled)."""
    layer_loss = style_layer_loss if kind == "gram" else wasserstein_layer_loss
    per_style = jax.vmap(layer_loss, in_axes=(None, 0, None))(statistic, targets, normalization)
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


def temporal_loss(image: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Ruder, Dosovitskiy & Brox (2016), eq. (7): ``1/D sum_p c_p |x_p - w_p|^2`` between an (H, W, 3)
    video frame and ``target``, the previous output warped into it, where the flow is trusted
    (``mask`` (H, W), c in [0, 1]); D is the number of values, H * W * 3."""
    return jnp.sum(mask[:, :, None] * jnp.square(image - target)) / image.size
