"""The optimizer on its own: the L-BFGS guard as an optax transformation, and compilations."""

import collections
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxstyle.optim import optimize

SCALES = jnp.asarray([1.0, 4.0, 9.0, 0.5])


def f(x):
    """A convex quadratic with minimum at 0: 1/2 sum scales * x^2."""
    return 0.5 * jnp.sum(SCALES * x**2)


def lbfgs(scale):
    return optax.lbfgs(learning_rate=0.5 * scale, memory_size=4, linesearch=None)


def guarded_step(opt, x, state, value=None):
    value_, grad = jax.value_and_grad(f)(x)
    value = value_ if value is None else value
    updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=f)
    return optax.apply_updates(x, updates), state


def test_guard_accepts_falling_losses_and_matches_plain_lbfgs():
    """While no step is rejected the guard is invisible: the iterates equal optax's L-BFGS's."""
    opt = optimize.guard(lbfgs)
    plain = lbfgs(1.0)
    x = y = jnp.asarray([1.0, -2.0, 0.5, 3.0])
    state, plain_state = opt.init(x), plain.init(y)
    for _ in range(6):
        x, state = guarded_step(opt, x, state)
        value, grad = jax.value_and_grad(f)(y)
        updates, plain_state = plain.update(grad, plain_state, y, value=value, grad=grad, value_fn=f)
        y = optax.apply_updates(y, updates)
        np.testing.assert_array_equal(x, y)
    assert float(state.scale) == 1.0 and float(f(x)) < 0.1 * float(f(jnp.asarray([1.0, -2.0, 0.5, 3.0])))


def test_guard_rejects_a_blow_up_restarts_memory_and_recovers_its_step():
    factor = 100.0
    opt = optimize.guard(lbfgs, factor=factor)
    x0 = jnp.asarray([1.0, -2.0, 0.5, 3.0])
    state = opt.init(x0)
    x1, state = guarded_step(opt, x0, state)
    x2, state = guarded_step(opt, x1, state)  # accepted: the guard now holds x1 and f(x1)
    np.testing.assert_array_equal(state.params, x1)
    assert int(state.inner[0].count) == 2  # two steps in L-BFGS's memory

    # An iterate whose loss is more than `factor` times the accepted one is rejected ...
    bad = x2 + 100.0
    assert float(f(bad)) > factor * float(state.value)
    x3, state = guarded_step(opt, bad, state)
    np.testing.assert_array_equal(state.params, x1)  # ... the accepted image is kept,
    assert float(state.scale) == 0.5  # the step size halved,
    assert int(state.inner[0].count) == 1  # the memory restarted (one fresh step in it),
    # and the next iterate is a fresh L-BFGS step from x1 at half the step size.
    fresh = lbfgs(0.5)
    value, grad = jax.value_and_grad(f)(x1)
    updates, _ = fresh.update(grad, fresh.init(x1), x1, value=value, grad=grad, value_fn=f)
    # (Up to float rounding: optax's updates are added to the rejected iterate, about 100 here.)
    np.testing.assert_allclose(x3, optax.apply_updates(x1, updates), rtol=0, atol=100 * 4 * np.finfo(np.float32).eps)
    assert float(f(x3)) < float(f(x1))

    # Accepted steps double the scale back, up to 1.
    x4, state = guarded_step(opt, x3, state)
    assert float(state.scale) == 1.0
    x5, state = guarded_step(opt, x4, state)
    assert float(state.scale) == 1.0 and float(f(x5)) < float(f(x3))


def test_guard_rejects_nan():
    opt = optimize.guard(lbfgs)
    x0 = jnp.asarray([1.0, -2.0, 0.5, 3.0])
    x1, state = guarded_step(opt, x0, opt.init(x0))
    _, state = guarded_step(opt, x1, state, value=jnp.float32(jnp.nan))
    assert float(state.scale) == 0.5 and np.array_equal(state.params, x0)


def test_the_step_reports_the_accepted_loss():
    """optimize.step (jitted) reports, after a rejection, the loss of the image it went back to."""
    loss = lambda x, problem: f(x) * problem
    x0 = jnp.asarray([1.0, -2.0, 0.5, 3.0])
    expected = float(f(x0))
    state = optimize.init_state(x0, kind="lbfgs")
    x1, state, loss0, evals = optimize.step(x0, state, jnp.float32(0.5), jnp.float32(1.0), loss_fn=loss, kind="lbfgs")
    assert float(loss0) == expected and int(evals) == 1  # (x0 was donated to the step: not readable now)
    accepted = float(state.value)
    _, state, reported, _ = optimize.step(x1 + 100.0, state, jnp.float32(0.5), jnp.float32(1.0), loss_fn=loss,
                                          kind="lbfgs")
    assert float(reported) == accepted and float(state.scale) == 0.5


def test_the_jitted_step_compiles_once_for_new_values(caplog):
    loss = lambda x, problem: f(x) * problem
    x = jnp.asarray([1.0, -2.0, 0.5, 3.0])
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        state = optimize.init_state(x, kind="adam")
        for value in (1.0, 2.0, 3.0):
            x, state, _, _ = optimize.step(x, state, jnp.float32(0.1), jnp.float32(value), loss_fn=loss, kind="adam")
    counts = collections.Counter(r.message.split(" with ")[0] for r in caplog.records if "Compiling" in r.message)
    assert counts["Compiling jit(step)"] == 1, counts


def rosenbrock(x):
    """A non-quadratic test function (curvature changes along the path): sum of 2-D Rosenbrock valleys."""
    a, b = x[..., 0], x[..., 1]
    return jnp.sum((1.0 - a) ** 2 + 10.0 * (b - a**2) ** 2)


def lbfgs_path(direction, steps: int = 25):
    """Iterates of ``x - 0.5 * direction`` from a fixed start (shape (3, 4, 2), an image-like array)."""
    x = jnp.asarray(np.random.default_rng(1).uniform(-1.5, 1.5, (3, 4, 2)), jnp.float32)
    state, path = direction.init(x), []
    for _ in range(steps):
        value, grad = jax.value_and_grad(rosenbrock)(x)
        d, state = jax.jit(direction.update)(grad, state, x)
        x = x - 0.5 * d
        path.append(float(value))
    return x, path


def test_lbfgs_with_float32_memory_is_optaxs_and_bfloat16_memory_still_converges():
    from jaxstyle.optim import lbfgs

    memory = 4  # fewer than the steps: slots are reused
    ours, ours_path = lbfgs_path(lbfgs.scale_by_lbfgs(memory, "float32"))
    theirs, theirs_path = lbfgs_path(optax.scale_by_lbfgs(memory_size=memory))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours_path, theirs_path, rtol=1e-5)
    assert theirs_path[-1] < 1e-3 * theirs_path[0]  # the reference itself converges here
    half, half_path = lbfgs_path(lbfgs.scale_by_lbfgs(memory, "bfloat16"))
    state = lbfgs.scale_by_lbfgs(memory, "bfloat16").init(half)
    assert state.steps.dtype == state.changes.dtype == jnp.uint16 and state.last_params.dtype == jnp.float32
    assert half_path[-1] < 1e-3 * half_path[0]  # rounded pairs: a different path, still converging
    assert half_path != ours_path


def test_the_lbfgs_memory_is_long_where_the_image_is_whole_and_float32_only_where_short_and_whole():
    from jaxstyle import JaxstyleError, StyleConfig
    from jaxstyle.optim import lbfgs
    from jaxstyle.evaluate import memory

    auto = StyleConfig(lbfgs_precondition=0.2)
    assert auto.lbfgs_memory_for(planned=False) == lbfgs.Memory(50, "bfloat16", 0.2)
    assert auto.lbfgs_memory_for(planned=True) == lbfgs.Memory(10, "bfloat16", 0.2)
    # the planner's defaults are the config's
    assert (memory.WHOLE, memory.PLANNED) == tuple(lbfgs.Memory(m.pairs, m.dtype) for m in (
        StyleConfig().lbfgs_memory_for(planned=False), StyleConfig().lbfgs_memory_for(planned=True)))
    short = StyleConfig(lbfgs_memory=10, lbfgs_precondition=0)
    assert short.lbfgs_memory_for(planned=False) == lbfgs.Memory(10, "float32")  # optax's, exactly
    assert short.lbfgs_memory_for(planned=True) == lbfgs.Memory(10, "bfloat16")
    for dtype in ("float32", "bfloat16"):
        forced = StyleConfig(lbfgs_history=dtype, lbfgs_memory=50, lbfgs_precondition=0)
        assert forced.lbfgs_memory_for(planned=False) == forced.lbfgs_memory_for(planned=True) == lbfgs.Memory(50, dtype)
    with pytest.raises(JaxstyleError, match="lbfgs_history.*float32, bfloat16"):
        StyleConfig(lbfgs_history="float16")
    for bad in (-1, 1001, 2.5, True):
        with pytest.raises(JaxstyleError, match="lbfgs_memory.*from 1 to 1000.*or 0 .automatic"):
            StyleConfig(lbfgs_memory=bad)
    x = jnp.zeros((4, 6, 3), jnp.float32)
    for pairs in (3, 10):
        state = optimize.init_state(x, kind="lbfgs", memory=lbfgs.Memory(pairs, "bfloat16"))
        held = jax.tree.leaves(state)
        assert sum(a.nbytes for a in held if a.dtype == jnp.uint16) == 2 * pairs * x.size * 2
