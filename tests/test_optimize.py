"""The optimizer on its own: the L-BFGS guard as an optax transformation, and compilations."""

import collections
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxstyle import optimize

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
