"""Pixel optimisation with optax: one jitted step per iteration, dispatched asynchronously.

The step is the jit boundary: ``step(x, state, lr, data) -> (x, state, loss, evaluations)``. The
learning rate and the loss's ``data`` pytree are traced, so changing them never recompiles. Python
only queues steps; it reads results back once per reporting chunk, so the device never waits on it.

Measured on the 2-core CPU (bench/speed.py): running a chunk of steps inside ``lax.fori_loop``
made each step about 2x slower than the same step jitted alone (XLA:CPU runs convolutions in a
while-loop body less efficiently), and a queued jitted step costs well under 1% in dispatch.
"""

from __future__ import annotations

import functools
from typing import Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("lbfgs", "adam")
Optimizer = Literal["lbfgs", "adam"]
LINESEARCHES = ("none", "backtracking", "zoom")
Linesearch = Literal["none", "backtracking", "zoom"]
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}
LBFGS_MEMORY = 10
LINESEARCH_STEPS = 16
# L-BFGS without a line search: reject a step that multiplied the loss by more than this. Lower
# factors hurt: at 2, a 48 px run whose loss rises 7x for one step and then falls fast ended 200x
# worse after 30 steps; the blow-up this catches was a factor of 4e5.
GUARD_FACTOR = 100.0


def make_optimizer(kind: Optimizer, learning_rate, linesearch: Linesearch = "none") -> optax.GradientTransformationExtraArgs:
    """The optax transformation for ``kind``; ``learning_rate`` may be a traced scalar.

    L-BFGS line searches, measured on the 2-core CPU (bench/speed.py, 256 and 512 px): ``"none"``
    takes the L-BFGS step scaled by the learning rate, one loss evaluation per iteration, as
    PyTorch's L-BFGS does by default; ``"backtracking"`` (Armijo, full step first) and ``"zoom"``
    (optax's default, strong Wolfe) spend 1.2 to 1.5 evaluations per iteration, but evaluate the loss
    inside a while loop, which XLA:CPU runs far slower: 3.7 to 4.5x the time per iteration. Loss per
    iteration was about the same for all three on style transfer, so ``"none"`` gives the best image
    per second.
    """
    if kind == "lbfgs":
        search = {
            "none": None,
            "backtracking": optax.scale_by_backtracking_linesearch(
                max_backtracking_steps=LINESEARCH_STEPS, store_grad=True
            ),
            "zoom": optax.scale_by_zoom_linesearch(max_linesearch_steps=LINESEARCH_STEPS),
        }[linesearch]
        return optax.lbfgs(learning_rate=learning_rate, memory_size=LBFGS_MEMORY, linesearch=search)
    if kind == "adam":
        return optax.with_extra_args_support(optax.adam(learning_rate))
    raise ValueError(f"unknown optimizer {kind!r}; choose one of {', '.join(OPTIMIZERS)}")


class Step(NamedTuple):
    x: jax.Array  # (H, W, 3) image after the step
    state: optax.OptState
    loss: jax.Array  # () loss of the image the step started from (the last accepted one)
    evaluations: jax.Array  # () loss-and-gradient evaluations the step spent


class Guarded(NamedTuple):
    """State of L-BFGS without a line search, guarded against overshooting steps."""

    inner: optax.OptState  # optax's L-BFGS state
    x: jax.Array  # (H, W, 3) last accepted image
    value: jax.Array  # () its loss (inf before the first step)
    grad: jax.Array  # (H, W, 3) its gradient
    scale: jax.Array  # () step-size factor, halved on each rejection, doubled back up to 1


def has_linesearch(kind: Optimizer, linesearch: Linesearch) -> bool:
    """Whether this optimizer evaluates the loss inside its update (an L-BFGS line search)."""
    return kind == "lbfgs" and linesearch != "none"


def _guarded(kind: Optimizer, linesearch: Linesearch) -> bool:
    return kind == "lbfgs" and linesearch == "none"


def make_update(kind: Optimizer, linesearch: Linesearch = "none"):
    """The pure ``update(x, state, lr, value, grad, value_fn=None) -> Step``: one optimizer iteration
    from the loss ``value`` and its ``grad`` at ``x``, however they were computed (whole, or tile by
    tile as in ``jaxstyle.tiling``). ``value_fn`` is needed only by the L-BFGS line searches.

    L-BFGS without a line search is guarded: a step that multiplied the loss by more than
    ``GUARD_FACTOR`` (or made it NaN) is rejected at the next evaluation, which then restarts
    from the last accepted image with an empty memory (whose first step is the gradient scaled to
    unit norm) and half the step size.
    Measured: unguarded, a 128 px texture's loss jumped from 2e-2 to 9e3 within 100 steps. The
    guard costs no extra evaluation.
    """
    uses_state = has_linesearch(kind, linesearch)
    guard = _guarded(kind, linesearch)

    def update(x, state, lr, value, grad, value_fn=None) -> Step:
        inner = state
        if guard:
            # Non-monotone: L-BFGS without a line search may raise the loss for a step and recover;
            # only a step that multiplied it by more than GUARD_FACTOR (or made it NaN) is taken back.
            rejected = ~(value <= GUARD_FACTOR * state.value)
            pick = lambda new, old: jnp.where(rejected, old, new)
            x, value, grad = pick(x, state.x), pick(value, state.value), pick(grad, state.grad)
            scale = jnp.where(rejected, 0.5 * state.scale, jnp.minimum(1.0, 2.0 * state.scale))
            fresh = make_optimizer(kind, lr, linesearch).init(x)
            inner = jax.tree.map(lambda f, s: jnp.where(rejected, f, s), fresh, state.inner)
            lr = lr * scale
        opt = make_optimizer(kind, lr, linesearch)
        updates, inner = opt.update(grad, inner, x, value=value, grad=grad, value_fn=value_fn)
        # Projection onto displayable pixels after every step, for L-BFGS too: at 128 px, 80 steps,
        # the final (clipped) loss was 1.053 with it and 1.116 when clipping only the output.
        new_x = jnp.clip(optax.apply_updates(x, updates), 0.0, 1.0)
        if uses_state:
            evals = jnp.maximum(optax.tree.get(inner, "num_linesearch_steps"), 1).astype(jnp.int32)
        else:
            evals = jnp.int32(1)
        new_state = Guarded(inner, x, value, grad, scale) if guard else inner
        return Step(new_x, new_state, value, evals)

    return update


def make_step(loss_fn: Callable, kind: Optimizer, linesearch: Linesearch = "none"):
    """The pure, unjitted ``step(x, state, lr, data) -> Step`` minimising ``loss_fn(x, data)``:
    one loss-and-gradient evaluation, then :func:`make_update`'s iteration."""
    uses_state = has_linesearch(kind, linesearch)
    update = make_update(kind, linesearch)

    def step(x, state, lr, data) -> Step:
        value_fn = lambda p: loss_fn(p, data)
        if uses_state:  # the line search already evaluated value and gradient at x
            value, grad = optax.value_and_grad_from_state(value_fn)(x, state=state)
        else:
            value, grad = jax.value_and_grad(value_fn)(x)
        return update(x, state, lr, value, grad, value_fn)

    return step


@functools.lru_cache(maxsize=None)
def step_fn(loss_fn: Callable, kind: Optimizer, linesearch: Linesearch = "none"):
    """A jitted ``step(x, state, lr, data) -> Step`` minimising ``loss_fn(x, data)``.

    Cached per (loss_fn, kind, linesearch), so repeated runs in a process reuse the compilation
    (jit's own cache then keys on shapes and on the static parts of ``data``). ``x`` and ``state``
    are donated: the step replaces them.
    """
    return jax.jit(make_step(loss_fn, kind, linesearch), donate_argnames=("x", "state"))


@functools.lru_cache(maxsize=None)
def batched_step_fn(loss_fn: Callable, kind: Optimizer, linesearch: Linesearch = "none", data_axes=None,
                    out_sharding=None):
    """:func:`step_fn` vmapped over a leading batch axis of ``x``, ``state``, ``lr`` and ``data``.

    ``data_axes`` is the ``in_axes`` entry for ``data`` (a pytree prefix: ``None`` for parts shared
    by the batch, such as the VGG weights; 0 for per-job parts). ``out_sharding`` (a sharding of the
    batch axis) pins every output to it, so the next call sees the same input shardings and the
    step compiles exactly once.
    """
    batched = jax.vmap(make_step(loss_fn, kind, linesearch), in_axes=(0, 0, 0, data_axes))
    return jax.jit(batched, donate_argnames=("x", "state"), out_shardings=out_sharding)


@functools.lru_cache(maxsize=None)
def state_initializer(kind: Optimizer, linesearch: Linesearch = "none"):
    """A jitted ``init(x) -> state`` (the state's structure does not depend on the learning rate)."""

    def init(x):
        inner = make_optimizer(kind, 1.0, linesearch).init(x)
        if not _guarded(kind, linesearch):
            return inner
        return Guarded(inner, x, jnp.asarray(jnp.inf, x.dtype), jnp.zeros_like(x), jnp.asarray(1.0, x.dtype))

    return jax.jit(init)


@functools.lru_cache(maxsize=None)
def _jitted_update(kind: Optimizer, linesearch: Linesearch):
    return jax.jit(make_update(kind, linesearch), donate_argnames=("state",))


def evaluated_step(value_and_grad: Callable, kind: Optimizer, linesearch: Linesearch = "none"):
    """``step(x, state, lr, data) -> Step`` from a loss-and-gradient function that is not one jitted
    program (``value_and_grad(x, data) -> (value, grad)``, e.g. the tiled evaluation, which queues a
    jitted call per tile), followed by the jitted :func:`make_update`. Line searches need to evaluate
    the loss inside the jitted update, so only ``linesearch="none"`` is possible here."""
    if has_linesearch(kind, linesearch):
        raise ValueError("a step from an external evaluation supports L-BFGS only without a line search")
    update = _jitted_update(kind, linesearch)

    def step(x, state, lr, data) -> Step:
        value, grad = value_and_grad(x, data)
        return update(x, state, lr, value, grad)

    return step
