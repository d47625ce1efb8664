"""Loss terms against NumPy formulas written from the paper, under jit, and their gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxstyle import losses

RNG = np.random.default_rng(0)
F = RNG.normal(size=(6, 5, 4)).astype(np.float32)
P = RNG.normal(size=(6, 5, 4)).astype(np.float32)
A = RNG.normal(size=(3, 4, 4)).astype(np.float32)


def np_gram(f):
    m = f.reshape(-1, f.shape[-1]).astype(np.float64)
    return m.T @ m / m.shape[0]


def test_gram_is_feature_correlation_over_positions():
    np.testing.assert_allclose(jax.jit(losses.gram)(F), np_gram(F), rtol=1e-5, atol=1e-6)
    assert np.allclose(np_gram(F), np_gram(F).T)


def test_content_loss_paper_is_half_the_squared_error():
    # Gatys et al. eq. (1): 1/2 sum_ij (F_ij - P_ij)^2
    expected = 0.5 * np.sum((F.astype(np.float64) - P) ** 2)
    got = jax.jit(losses.content_loss, static_argnums=2)(F, P, "paper")
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_area_normalization_is_eq1_per_position_and_eq4_as_published():
    # "area": eq. (1) divided by M (positions), eq. (4) unchanged; so a 2x2 tiling of the same
    # features (4x the positions, the same statistics) leaves both terms unchanged.
    M = F.shape[0] * F.shape[1]
    expected = 0.5 * np.sum((F.astype(np.float64) - P) ** 2) / M
    got = jax.jit(losses.content_loss, static_argnums=2)(F, P, "area")
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    tile = lambda f: np.tile(f, (2, 2, 1))
    np.testing.assert_allclose(losses.content_loss(tile(F), tile(P), "area"), expected, rtol=1e-5)
    np.testing.assert_allclose(losses.content_loss(tile(F), tile(P), "paper"), 4 * M * expected, rtol=1e-5)
    g, a = losses.gram(F), losses.gram(P)
    np.testing.assert_allclose(losses.style_layer_loss(g, a, "area"), losses.style_layer_loss(g, a, "paper"), rtol=1e-6)
    np.testing.assert_allclose(losses.style_layer_loss(losses.gram(tile(F)), losses.gram(tile(P)), "area"),
                               losses.style_layer_loss(g, a, "area"), rtol=1e-5)


def test_content_loss_relative_is_scale_free():
    expected = np.sum((F.astype(np.float64) - P) ** 2) / np.sum(P.astype(np.float64) ** 2)
    np.testing.assert_allclose(losses.content_loss(F, P), expected, rtol=1e-5)
    np.testing.assert_allclose(losses.content_loss(10 * F, 10 * P), expected, rtol=1e-5)


def test_style_layer_loss_paper_matches_eq4_with_raw_grams():
    # eq. (4): E_l = 1 / (4 N^2 M^2) sum (G_raw - A_raw)^2, with G_raw = F^T F (unnormalised).
    m = F.reshape(-1, 4).astype(np.float64)
    m2 = P.reshape(-1, 4).astype(np.float64)
    n, M = 4, m.shape[0]
    expected = np.sum((m.T @ m - m2.T @ m2) ** 2) / (4 * n**2 * M**2)
    got = losses.style_layer_loss(losses.gram(F), losses.gram(P), "paper")
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_style_loss_is_blend_weighted_sum_over_styles():
    g = np_gram(F)
    blend = np.array([0.5, 0.3, 0.2], np.float32)
    expected = sum(b * np.sum((g - a) ** 2) / np.sum(a.astype(np.float64) ** 2) for b, a in zip(blend, A))
    got = jax.jit(losses.style_loss)(F, A, blend)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("kind", ["l2", "l1"])
def test_tv_loss(kind):
    x = F[..., :3]
    dy, dx = np.diff(x, axis=0), np.diff(x, axis=1)
    f = np.square if kind == "l2" else np.abs
    np.testing.assert_allclose(losses.tv_loss(x, kind), f(dy).mean() + f(dx).mean(), rtol=1e-5)
    assert float(losses.tv_loss(np.ones((4, 4, 3), np.float32), kind)) == 0.0


def test_gradients_match_finite_differences():
    f64 = lambda a: jnp.asarray(a, jnp.float64)
    with jax.enable_x64(True):
        check_grads(lambda f: losses.content_loss(f, f64(P)), (f64(F),), order=1, modes=["rev"])
        check_grads(lambda f: losses.style_loss(f, f64(A), f64(np.ones(3) / 3)), (f64(F),), order=1, modes=["rev"])
        target = jax.tree.map(lambda a: a[None], losses.style_statistic(f64(P), "wasserstein"))
        check_grads(lambda f: losses.style_loss(f, target, f64(np.ones(1)), kind="wasserstein"), (f64(F),),
                    order=1, modes=["rev"], atol=1e-4, rtol=1e-4)
        check_grads(lambda f: losses.tv_loss(f, "l2"), (f64(F),), order=1, modes=["rev"])


def _np_sqrtm(m):
    vals, vecs = np.linalg.eigh(m)
    return (vecs * np.sqrt(np.maximum(vals, 0))) @ vecs.T


def test_wasserstein_matches_the_gaussian_w2_formula():
    # W2^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2), computed here in float64 NumPy.
    def stats(f):
        m = f.reshape(-1, f.shape[-1]).astype(np.float64)
        mu = m.mean(0)
        return mu, (m - mu).T @ (m - mu) / m.shape[0]

    (mu1, s1), (mu2, s2) = stats(F), stats(P)
    r = _np_sqrtm(s2)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * _np_sqrtm(r @ s1 @ r))
    target = jax.tree.map(lambda a: a[None], losses.style_statistic(P, "wasserstein"))
    got = jax.jit(losses.style_loss, static_argnums=(3, 4))(F, target, np.ones(1, np.float32), "paper", "wasserstein")
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    relative = losses.style_loss(F, target, np.ones(1, np.float32), "relative", "wasserstein")
    np.testing.assert_allclose(relative, expected / (np.sum(mu2**2) + np.trace(s2)), rtol=1e-4)
    same = jax.tree.map(lambda a: a[None], losses.style_statistic(F, "wasserstein"))
    assert abs(float(losses.style_loss(F, same, np.ones(1, np.float32), "paper", "wasserstein"))) < 1e-4


def test_trace_sqrt_is_exact_above_the_knee_and_its_slope_bounded_below_it():
    # tr(A^1/2) of diag(1, 0.25, l): the square root for l above SQRT_KNEE x the largest eigenvalue,
    # the chord l / sqrt(knee) below it (0 at 0, continuous at the knee), so the slope never exceeds
    # 1 / sqrt(knee) however small l (sqrt's 1 / (2 sqrt(l)) would be 5e4 at l = 1e-10).
    knee = losses.SQRT_KNEE
    trace = jax.jit(losses.trace_sqrt_psd)
    for small in (0.0, 1e-10, 0.5 * knee, knee, 4 * knee):
        expected = 1.5 + (np.sqrt(small) if small >= knee else small / np.sqrt(knee))
        np.testing.assert_allclose(float(trace(jnp.diag(jnp.array([1.0, 0.25, small])))), expected, rtol=1e-6)
        slope = jax.grad(lambda a: losses.trace_sqrt_psd(jnp.diag(jnp.array([1.0, 0.25, 0.0]) + a * jnp.eye(3)[2])))(small)
        assert 0.0 < float(slope) <= 1.0 / np.sqrt(knee) + 1e-3
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0].astype(np.float32)
    m = rotation @ np.diag([1.0, 0.25, 1e-8]).astype(np.float32) @ rotation.T  # rotation-invariant
    np.testing.assert_allclose(float(trace(jnp.asarray(m))), 1.5 + 1e-8 / np.sqrt(knee), rtol=1e-5)


def _eigh_operand_shapes(jaxpr) -> list:
    """Input shapes of every eigendecomposition in ``jaxpr``, inside loops and calls too."""
    shapes = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "eigh":
            shapes.append(eqn.invars[0].aval.shape)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    shapes += _eigh_operand_shapes(inner)
    return shapes


def test_vmapped_w2_takes_one_unbatched_eigendecomposition_at_a_time():
    # A batch of eigendecompositions ran as tasks on XLA:CPU's program thread pool, and two in
    # flight at once deadlocked it (three W2 jobs batched at 96 px hung for good). Vmapped over
    # jobs and paintings, each eigendecomposition must stay one (C, C) matrix, in a loop.
    m = np.einsum("bij,bkj->bik", A, A) + np.eye(4, dtype=np.float32)
    nested = jax.vmap(jax.vmap(jax.grad(losses.trace_sqrt_psd)))
    shapes = _eigh_operand_shapes(jax.make_jaxpr(nested)(np.stack([m, m])).jaxpr)
    assert shapes and all(shape == (4, 4) for shape in shapes), shapes
    # ... and the values and gradients are jnp.linalg's, batched or not.
    np.testing.assert_allclose(jax.vmap(losses.eigvalsh)(m), np.linalg.eigvalsh(m.astype(np.float64)), rtol=1e-5)
    reference = jax.vmap(jax.grad(lambda a: jnp.sum(jnp.sqrt(jnp.linalg.eigvalsh(a)))))(m)
    mine = jax.vmap(jax.grad(lambda a: jnp.sum(jnp.sqrt(losses.eigvalsh(a)))))(m)
    np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-6)
