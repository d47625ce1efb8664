"""The MRF (patch) style loss of Li and Wand, "Combining Markov Random Fields and Convolutional Neural
Networks for Image Synthesis" (CVPR 2016), eq. (2).

Every ``k x k`` neural patch of the output at a layer (all of them, stride 1) is matched to its
nearest patch of the painting by normalised cross-correlation and pulled towards it::

    E_s = sum_i || Psi_i(Phi(x)) - Psi_NN(i)(Phi(x_s)) ||^2,
    NN(i) = argmax_j  <Psi_i(Phi(x)), Psi_j(Phi(x_s))> / (|Psi_i(Phi(x))| |Psi_j(Phi(x_s))|).

The painting's patches, sampled every ``stride`` positions, form a :class:`PatchLibrary` (the style
target, computed once). The match is one matrix product of the output's patches with the library's
normalised patches (the paper's convolution with normalised style patches as filters; dividing by
the output patch's own norm does not change the argmax, so it is skipped), done in row blocks so
that memory stays bounded; the index is constant where it is defined, so the gradient flows only
through the output's patches (as in the paper).

Normalisation (``jaxstyle.losses``): ``"paper"`` is E_s as written; ``"area"`` divides it by the
number of output patches; ``"relative"`` (default) also divides by the library's mean squared patch
norm, so the term starts near one, like the Gram term, whatever the layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.struct
import jax
import jax.numpy as jnp

from .base import StyleLoss, register

_EPS = 1e-8
SCORE_BLOCK_BYTES = 64 << 20  # memory for one block of the (output patches x library) score matrix


@flax.struct.dataclass
class PatchLibrary:
    """A painting's patches at one layer: the MRF style target.

    Libraries of different paintings (or jobs) are stacked by padding to the longest
    (:func:`stack`); padding rows have ``valid == 0`` and are never matched.
    """

    patches: jax.Array  # (..., N, k*k*C) raw patches, rows in (dy, dx, channel) order
    valid: jax.Array  # (..., N) 1.0 for a patch of the painting, 0.0 for padding


def patches(features: jax.Array, size: int, stride: int = 1) -> jax.Array:
    """Every ``size x size`` patch of an (H, W, C) map whose window lies inside it, every ``stride``
    positions: ``(ceil((H - size + 1) / stride), ceil((W - size + 1) / stride), size*size*C)``."""
    h, w, _ = features.shape
    rows, cols = h - size + 1, w - size + 1
    shifted = [features[dy:dy + rows:stride, dx:dx + cols:stride] for dy in range(size) for dx in range(size)]
    return jnp.concatenate(shifted, axis=-1)


def library(features: jax.Array, size: int, stride: int) -> PatchLibrary:
    """The style target of one painting's layer: its patches every ``stride`` positions."""
    p = patches(features, size, stride)
    p = p.reshape(-1, p.shape[-1])
    return PatchLibrary(patches=p, valid=jnp.ones(p.shape[:1], jnp.float32))


def stack(libraries) -> PatchLibrary:
    """Libraries stacked on a new leading axis, each padded with invalid rows to the longest."""
    n = max(lib.patches.shape[-2] for lib in libraries)

    def pad(a, axis):
        widths = [(0, 0)] * a.ndim
        widths[axis] = (0, n - a.shape[axis])
        return jnp.pad(a, widths)

    return PatchLibrary(patches=jnp.stack([pad(lib.patches, -2) for lib in libraries]),
                        valid=jnp.stack([pad(lib.valid, -1) for lib in libraries]))


def nearest(rows: jax.Array, lib: PatchLibrary) -> jax.Array:
    """Index of the library patch with the highest normalised cross-correlation with each of
    ``rows`` ((M, P)): (M,) int32. Computed in row blocks of bounded memory; no gradient."""
    rows = jax.lax.stop_gradient(rows)
    norms = jnp.sqrt(jnp.sum(jnp.square(lib.patches), axis=-1, keepdims=True))
    normed = jax.lax.stop_gradient(lib.patches / (norms + _EPS))
    invalid = jnp.where(lib.valid > 0, 0.0, -jnp.inf)

    def best(row):
        return jnp.argmax(jnp.matmul(normed, row, precision=jax.lax.Precision.HIGHEST) + invalid).astype(jnp.int32)

    n = lib.patches.shape[-2]
    block = max(1, SCORE_BLOCK_BYTES // (4 * n))
    if rows.shape[0] <= block:
        return jax.vmap(best)(rows)
    return jax.lax.map(best, rows, batch_size=block)


def squared_error(rows: jax.Array, lib: PatchLibrary, weights: jax.Array | None = None) -> jax.Array:
    """``sum_i w_i |row_i - lib[NN(i)]|^2``: the paper's E_s of these output patches ((M, P))
    against one painting's library (``weights`` (M,): 1 by default; a tile's owned patches)."""
    target = jax.lax.stop_gradient(lib.patches[nearest(rows, lib)])
    sq = jnp.sum(jnp.square(rows - target), axis=-1)
    return jnp.sum(sq) if weights is None else jnp.sum(weights * sq)


def normalize(sq: jax.Array, count: int, lib: PatchLibrary, normalization: str = "relative") -> jax.Array:
    """The layer's term from E_s (``sq``) over ``count`` output patches; see the module docstring."""
    if normalization == "paper":
        return sq
    if normalization == "area":
        return sq / count
    energy = jnp.sum(lib.valid * jnp.sum(jnp.square(lib.patches), axis=-1)) / jnp.maximum(jnp.sum(lib.valid), 1.0)
    return sq / (count * energy + _EPS)


def count(shape, size: int) -> int:
    """Number of output patches of a layer map of ``shape`` (H, W, ...)."""
    return max(0, shape[0] - size + 1) * max(0, shape[1] - size + 1)


def anchor(size: int) -> int:
    """Offset of a patch's owning position from its top-left corner (its centre for odd sizes): a
    tile owns the patches anchored in its core, so its crop needs ``anchor`` more positions of halo."""
    return size // 2


def loss_from_squared_errors(sq: jax.Array, count: int, libraries: PatchLibrary, blend: jax.Array,
                             normalization: str = "relative") -> jax.Array:
    """One layer's term from E_s against each of S paintings (``sq`` (S,), summed whole or tile by
    tile) over ``count`` output patches, weighted by ``blend`` (S,)."""
    per_style = jax.vmap(normalize, in_axes=(0, None, 0, None))(sq, count, libraries, normalization)
    return jnp.dot(blend, per_style)


def layer_loss(features: jax.Array, libraries: PatchLibrary, blend: jax.Array, size: int,
               normalization: str = "relative") -> jax.Array:
    """One layer's MRF term against S paintings (``libraries`` stacked: patches (S, N, P)),
    weighted by ``blend`` (S,)."""
    rows = patches(features, size)
    rows = rows.reshape(-1, rows.shape[-1])
    sq = jax.vmap(squared_error, in_axes=(None, 0))(rows, libraries)
    return loss_from_squared_errors(sq, rows.shape[0], libraries, blend, normalization)


@register
@dataclass(frozen=True)
class MRF(StyleLoss):
    """Li & Wand's patch loss: every ``patch`` x ``patch`` output patch against its nearest painting
    patch, the painting's taken every ``stride`` positions, at ``StyleConfig.mrf_layers``."""

    patch: int = 3
    stride: int = 2

    name = "mrf"
    streaming = "patches"

    @classmethod
    def from_config(cls, config) -> "MRF":
        return cls(patch=config.mrf_patch_size, stride=config.mrf_stride)

    def layers(self, config) -> tuple[str, ...]:
        return tuple(config.mrf_layers)

    def min_size(self, layers) -> int:
        from ..model.vgg import min_image_size

        return self.patch * min_image_size(layers) if layers else 1  # a whole patch at the deepest layer

    def margin(self, layers) -> int:
        from ..model.vgg import pools_before

        return anchor(self.patch) * max((2 ** pools_before(layer) for layer in layers), default=1)

    def painting_target(self, features):
        return library(features, self.patch, self.stride)

    def stack(self, targets):
        return stack(targets)

    def layer_loss(self, features, targets, blend, normalization):
        return layer_loss(features, targets, blend, self.patch, normalization)

    def parts(self, features, owned, targets):
        """E_s against each painting of the patches anchored in the window's owned positions."""
        rows = patches(features, self.patch)
        a = anchor(self.patch)
        weight = owned[a:a + rows.shape[0], a:a + rows.shape[1]].reshape(-1)
        rows = rows.reshape(-1, rows.shape[-1])
        return {"sq": jax.vmap(squared_error, in_axes=(None, 0, None))(rows, targets, weight)}

    def loss_from_parts(self, parts, targets, blend, normalization, layer_shape):
        return loss_from_squared_errors(jnp.sum(parts["sq"], axis=0), count(layer_shape, self.patch), targets, blend,
                                        normalization)
