"""L-BFGS's initial inverse Hessian (jaxstyle.precondition): its operator and what it does to L-BFGS."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxstyle.optim import lbfgs, precondition

SHAPE = (5, 7, 2)


def operator_matrix(corner: float) -> np.ndarray:
    """``M`` as a dense matrix, column by column (M applied to each basis image)."""
    n = int(np.prod(SHAPE))
    basis = jnp.eye(n, dtype=jnp.float32).reshape((n,) + SHAPE)
    return np.asarray(jax.vmap(lambda e: precondition.apply(e, corner).ravel())(basis)).T


def test_the_operator_is_symmetric_positive_definite_with_the_spectrum_as_eigenvalues():
    matrix = operator_matrix(0.1)
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-5)
    eigenvalues = np.linalg.eigvalsh(matrix.astype(np.float64))
    m = precondition.spectrum(*SHAPE[:2], 0.1)
    expected = np.sort(np.repeat(m.ravel(), SHAPE[2]))  # each basis image's m, once per channel
    np.testing.assert_allclose(np.sort(eigenvalues), expected, rtol=1e-4)
    # m: about 1 at the highest frequencies, 1/f below the corner; the constant image gets the most
    assert m.min() == pytest.approx(np.sqrt(1 + (0.1 / np.hypot(4 / 10, 6 / 14)) ** 2))
    assert m[0, 0, 0] == pytest.approx(np.sqrt(1 + (0.1 * 2 * 7) ** 2)) == m.max()  # f = 1/14, above the floor
    big = precondition.spectrum(2048, 1536, 0.1)  # f below the floor: m stops growing at 1/512 cycles per pixel
    assert big.max() == pytest.approx(np.sqrt(1 + (0.1 * 512) ** 2)) == big[0, 0, 0] == big[1, 1, 0]
    np.testing.assert_allclose(operator_matrix(0.0), np.eye(matrix.shape[0]), atol=0)


def test_energy_is_the_quadratic_form():
    g = jax.random.normal(jax.random.key(0), (2,) + SHAPE)  # a leading batch axis is allowed
    for corner in (0.0, 0.1, 0.3):
        assert float(precondition.energy(g, corner)) == pytest.approx(float(jnp.vdot(g, precondition.apply(g, corner))),
                                                                      rel=1e-5)


def test_nothing_wraps_from_one_edge_to_the_other():
    """Mirror (DCT) boundaries: an impulse at the left edge spreads rightwards and fades; a periodic
    (FFT) filter would give the far right column as much as the second one."""
    g = np.zeros((32, 32, 1), np.float32)
    g[16, 0, 0] = 1.0
    out = np.asarray(precondition.apply(jnp.asarray(g), 0.2))[16, :, 0]
    assert out[0] > out[1] > out[8] > 4 * abs(out[-1])


def test_the_first_direction_is_the_boosted_gradient_at_unit_norm():
    g = jax.random.normal(jax.random.key(1), (16, 16, 3))
    opt = lbfgs.scale_by_lbfgs(4, "float32", 0.1)
    direction, _ = opt.update(g, opt.init(g), jnp.zeros_like(g))
    boosted = precondition.apply(g, 0.1)
    np.testing.assert_allclose(direction, boosted / jnp.linalg.norm(boosted), rtol=1e-5, atol=1e-7)


def run_lbfgs(corner: float, steps: int, loss, x) -> float:
    """``loss`` after ``steps`` unit-rate L-BFGS steps (5 pairs) from the image ``x``."""
    opt = lbfgs.scale_by_lbfgs(5, "float32", corner)

    @jax.jit  # traced afresh for each call: a monkeypatched lbfgs.EXPAND is read here
    def step(x, state):
        direction, state = opt.update(jax.grad(loss)(x), state, x)
        return x - direction, state

    state = opt.init(x)
    for _ in range(steps):
        x, state = step(x, state)
    return float(loss(x))


def test_a_loss_flat_along_smooth_changes_converges_sooner():
    """A quadratic whose curvature grows with frequency (an image Laplacian plus a little identity:
    eigenvalues from 1e-3 to 8), as style transfer's is flatter along broad changes: the boosted start
    reaches in 20 steps a loss that plain L-BFGS does not reach in 40, and in 40 a hundredth of it.
    On the identity's quadratic (all curvatures equal) both converge."""
    target = jax.random.uniform(jax.random.key(2), (96, 96, 1))

    def laplacian(x):  # mirror boundaries: symmetric, positive semidefinite
        p = jnp.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
        return 4 * x - p[:-2, 1:-1] - p[2:, 1:-1] - p[1:-1, :-2] - p[1:-1, 2:]

    def stiff(x):
        d = x - target
        return 0.5 * jnp.vdot(d, laplacian(d)) + 0.5e-3 * jnp.vdot(d, d)

    zeros = jnp.zeros_like(target)
    plain = run_lbfgs(0.0, 40, stiff, zeros)
    assert plain < 0.1 * float(stiff(zeros))  # plain L-BFGS does make progress
    assert run_lbfgs(0.1, 20, stiff, zeros) < plain
    assert run_lbfgs(0.1, 40, stiff, zeros) < 0.01 * plain

    flat = lambda x: 0.5 * jnp.vdot(x - target, x - target)
    start = float(flat(zeros))
    assert run_lbfgs(0.0, 3, flat, zeros) < 1e-10 * start and run_lbfgs(0.1, 30, flat, zeros) < 1e-6 * start


def test_the_config_validates_the_corner():
    from jaxstyle import JaxstyleError, StyleConfig

    assert StyleConfig().lbfgs_memory_for(planned=False).precondition == precondition.CORNER
    assert StyleConfig(lbfgs_precondition=0).lbfgs_memory_for(planned=True) == lbfgs.Memory(10, "bfloat16", 0.0)
    for bad in (-0.1, 1.5, float("nan"), "0.1", True):
        with pytest.raises(JaxstyleError, match="lbfgs_precondition.*from 0 to 1 cycles per pixel"):
            StyleConfig(lbfgs_precondition=bad)



@pytest.mark.parametrize("corner", [0.0, 0.1])
def test_a_pair_of_negative_curvature_is_skipped_so_the_direction_stays_downhill(corner):
    """Where the loss is concave along the last step (or clipping shortened it), <s, y> < 0: a model
    built from that pair points uphill (optax's does, below); ours keeps the pair inert and the last
    good scale, as PyTorch's L-BFGS skips it."""
    x0 = jax.random.uniform(jax.random.key(4), (16, 16, 3))
    g0 = jax.random.normal(jax.random.key(5), x0.shape)
    ours, theirs = lbfgs.scale_by_lbfgs(4, "float32", corner), optax.scale_by_lbfgs(memory_size=4)
    d0, state = ours.update(g0, ours.init(x0), x0)
    _, their_state = theirs.update(g0, theirs.init(x0), x0)
    x1 = x0 - d0
    g1 = g0 + 0.5 * d0 + 0.1 * jax.random.normal(jax.random.key(6), x0.shape)  # y = g1 - g0 along -s: <s, y> < 0
    assert float(jnp.vdot(x1 - x0, g1 - g0)) < 0
    d1, state = ours.update(g1, state, x1)
    assert float(jnp.vdot(g1, d1)) > 0  # downhill: the step is -lr * d1
    # No pair of positive curvature held yet: gamma grew by EXPAND instead of staying.
    assert float(state.rho[0]) == 0.0 and float(state.gamma) == pytest.approx(lbfgs.EXPAND * min(1.0, 1 / float(
        jnp.linalg.norm(precondition.apply(g0, corner)))))
    their_d1, _ = theirs.update(g1, their_state, x1)
    assert float(jnp.vdot(g1, their_d1)) < 0  # the unguarded model points uphill


@pytest.mark.parametrize("corner", [0.0, 0.1])
def test_steps_grow_while_the_loss_is_concave_along_every_one(corner, monkeypatch):
    """From the photo, style transfer's loss is concave along the first steps (every pair skipped),
    and with gamma kept the steps stayed at their first, unit length: 14 steps crept 2% each on
    chelsea x Starry Night at 512 px. A double well started near its concave top shows it: with gamma
    kept the loss has not moved after 30 steps; growing it while no curved pair is held reaches the
    bottom."""

    def well(x):  # minima at +-1; concave where x^2 < 1/3
        return jnp.mean(jnp.square(jnp.square(x) - 1.0))

    def final_loss(expand: float) -> float:
        monkeypatch.setattr(lbfgs, "EXPAND", expand)
        return run_lbfgs(corner, 30, well, 0.01 + 0.005 * jax.random.uniform(jax.random.key(0), (16, 16, 3)))

    assert final_loss(1.0) > 0.99  # crept: well(0.01) is 0.9998
    assert final_loss(4.0) < 1e-4
