"""Pixel optimisation with optax: one jitted step per iteration, dispatched asynchronously.

The step is the jit boundary: :func:`step` ``(x, state, lr, problem) -> Step(x, state, loss,
evaluations)``, one module-level jitted function whose static arguments (the loss function, the
optimizer, the line search, the batch axes) say what compiles; the learning rate and the problem are
traced, so changing them never recompiles. Python only queues steps; it reads results back once per
reporting chunk, so the device never waits on it. L-BFGS without a line search is wrapped in
:func:`guard`, an optax transformation that takes back steps that blow the loss up.

Why not a ``lax.fori_loop`` over a chunk of steps: XLA:CPU runs convolutions in a while-loop body
less efficiently than the same step jitted alone, and a queued step costs little in dispatch.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from . import lbfgs

OPTIMIZERS = ("lbfgs", "adam")
Optimizer = Literal["lbfgs", "adam"]
LINESEARCHES = ("none", "backtracking", "zoom")
Linesearch = Literal["none", "backtracking", "zoom"]
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}
LBFGS_MEMORY = 10  # pairs: optax's default; what a streamed or tiled run keeps (its history grows with the image)
# Pairs a run evaluated whole keeps: 50 reached a given loss in fewer steps than optax's 10 or 30
# (docs/benchmarks.md, "A longer L-BFGS memory").
WHOLE_LBFGS_MEMORY = 50
DEFAULT_MEMORY = lbfgs.Memory(LBFGS_MEMORY, "float32")  # the functions' default below (optax's L-BFGS)
LINESEARCH_STEPS = 16
# L-BFGS without a line search: reject a step that multiplied the loss by more than this. Lower
# factors hurt: at 2, a 48 px run whose loss rises 7x for one step and then falls fast ended 200x
# worse after 30 steps; the blow-up this catches was a factor of 4e5.
GUARD_FACTOR = 100.0


def lbfgs_memory(pairs: int, history: str, planned: bool, precondition: float = 0.0) -> lbfgs.Memory:
    """The L-BFGS memory of a run evaluated whole (``planned=False``) or by a band or tile plan:
    ``pairs`` (0: WHOLE_LBFGS_MEMORY whole, LBFGS_MEMORY planned) in ``history``'s dtype ("auto":
    float32 for up to LBFGS_MEMORY pairs whole, else bfloat16). The one place the rule lives:
    ``StyleConfig.lbfgs_memory_for`` and the planner's defaults (``tiling.WHOLE``) both call it."""
    pairs = pairs or (LBFGS_MEMORY if planned else WHOLE_LBFGS_MEMORY)
    auto = "float32" if not planned and pairs <= LBFGS_MEMORY else "bfloat16"
    return lbfgs.Memory(pairs, auto if history == "auto" else history, precondition)


def make_optimizer(kind: Optimizer, learning_rate, linesearch: Linesearch = "none",
                   memory: lbfgs.Memory = DEFAULT_MEMORY) -> optax.GradientTransformationExtraArgs:
    """The optax transformation for ``kind``; ``learning_rate`` may be a traced scalar. L-BFGS is
    optax's, keeping ``memory`` (how many pairs, in which dtype, from which initial inverse Hessian:
    ``jaxstyle.optim.lbfgs``).

    L-BFGS line searches: ``"none"`` takes the L-BFGS step scaled by the learning rate, one loss
    evaluation per iteration, as PyTorch's L-BFGS does by default; ``"backtracking"`` (Armijo, full
    step first) and ``"zoom"`` (optax's default, strong Wolfe) evaluate the loss inside a while loop,
    which XLA:CPU runs far slower, for about the same progress per iteration: ``"none"`` is the
    default.
    """
    if kind == "lbfgs":
        search = {
            "none": None,
            "backtracking": optax.scale_by_backtracking_linesearch(
                max_backtracking_steps=LINESEARCH_STEPS, store_grad=True
            ),
            "zoom": optax.scale_by_zoom_linesearch(max_linesearch_steps=LINESEARCH_STEPS),
        }[linesearch]
        return optax.chain(lbfgs.scale_by_lbfgs(memory.pairs, memory.dtype, memory.precondition), optax.scale_by_learning_rate(learning_rate),
                           optax.identity() if search is None else search)
    if kind == "adam":
        return optax.with_extra_args_support(optax.adam(learning_rate))
    raise ValueError(f"unknown optimizer {kind!r}; choose one of {', '.join(OPTIMIZERS)}")


class Step(NamedTuple):
    x: jax.Array  # (H, W, 3) image after the step
    state: optax.OptState
    loss: jax.Array  # () loss of the image the step started from (the last accepted one)
    evaluations: jax.Array  # () loss-and-gradient evaluations the step spent


class GuardState(NamedTuple):
    """State of :func:`guard`."""

    inner: optax.OptState  # the wrapped transformation's state
    params: Any  # the last accepted parameters (an image: (H, W, 3))
    value: jax.Array  # () their loss (inf before the first step)
    grad: Any  # their gradient, shaped like params
    scale: jax.Array  # () step-size factor, halved on each rejection, doubled back up to 1


def guard(make_inner: Callable[[jax.Array], optax.GradientTransformationExtraArgs],
          factor: float | None = None) -> optax.GradientTransformationExtraArgs:
    """Reject steps that multiplied the loss by more than ``factor`` (or made it NaN).

    For optimizers without a line search, whose steps may overshoot. ``update`` needs the loss
    ``value`` at ``params`` (and its ``grad``; default the ``updates`` given). When ``value`` exceeds
    ``factor`` times the last accepted loss, the iterate is rejected: the update starts again from the
    last accepted parameters, with the inner optimizer's state restarted (an empty L-BFGS memory,
    whose first step is the gradient scaled to unit norm) and the step size halved; each accepted
    step doubles it back, up to 1. Non-monotone on purpose: a rise below ``factor`` is kept (L-BFGS
    without a line search may raise the loss for a step and recover). Costs no extra evaluation.

    Args:
      make_inner: ``scale -> transformation``: the optimizer with its step size multiplied by
        ``scale`` (a traced scalar), e.g. ``lambda s: optax.lbfgs(learning_rate=s, linesearch=None)``.
      factor: the largest accepted ratio of a step's loss to the last accepted loss (default
        :data:`GUARD_FACTOR`, read at each call so a benchmark can vary it).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose updates, applied to ``params``, give the
      next iterate (going back to the accepted parameters first when ``params`` was rejected).

    References:
      The measurements behind ``GUARD_FACTOR``: an unguarded 128 px texture's loss jumped from
      2e-2 to 9e3 within 100 steps; the blow-ups this catches were factors of 4e5.
    """

    factor = GUARD_FACTOR if factor is None else factor

    def init_fn(params):
        value = jnp.asarray(jnp.inf, jax.tree.leaves(params)[0].dtype)
        return GuardState(make_inner(jnp.ones_like(value)).init(params), params, value,
                          jax.tree.map(jnp.zeros_like, params), jnp.ones_like(value))

    def update_fn(updates, state, params=None, *, value, grad=None, **extra):
        grad = updates if grad is None else grad
        rejected = ~(value <= factor * state.value)
        pick = lambda new, old: jax.tree.map(lambda n, o: jnp.where(rejected, o, n), new, old)
        accepted, value, grad = pick(params, state.params), pick(value, state.value), pick(grad, state.grad)
        scale = jnp.where(rejected, 0.5 * state.scale, jnp.minimum(1.0, 2.0 * state.scale))
        inner = make_inner(scale)
        inner_state = pick(state.inner, inner.init(accepted))  # rejected: an empty memory
        step, inner_state = inner.update(grad, inner_state, accepted, value=value, grad=grad, **extra)
        # Relative to the params given: from a rejected iterate, first go back to the accepted one
        # (exactly zero when nothing was rejected).
        updates = jax.tree.map(lambda u, a, p: u + (a - p), step, accepted, params)
        return updates, GuardState(inner_state, accepted, value, grad, scale)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def has_linesearch(kind: Optimizer, linesearch: Linesearch) -> bool:
    """Whether this optimizer evaluates the loss inside its update (an L-BFGS line search)."""
    return kind == "lbfgs" and linesearch != "none"


def _guarded(kind: Optimizer, linesearch: Linesearch) -> bool:
    return kind == "lbfgs" and linesearch == "none"


def transformation(kind: Optimizer, learning_rate, linesearch: Linesearch = "none",
                   memory: lbfgs.Memory = DEFAULT_MEMORY) -> optax.GradientTransformationExtraArgs:
    """The run's optax transformation: :func:`make_optimizer`, inside :func:`guard` for L-BFGS
    without a line search. ``learning_rate`` may be traced."""
    if _guarded(kind, linesearch):
        return guard(lambda scale: make_optimizer(kind, learning_rate * scale, linesearch, memory))
    return make_optimizer(kind, learning_rate, linesearch, memory)


def init(x: jax.Array, kind: Optimizer, linesearch: Linesearch = "none",
         memory: lbfgs.Memory = DEFAULT_MEMORY) -> optax.OptState:
    """The optimizer state for the image ``x`` (its structure does not depend on the learning rate)."""
    return transformation(kind, jnp.ones((), x.dtype), linesearch, memory).init(x)


def update(x, state, lr, value, grad, value_fn=None, *, kind: Optimizer, linesearch: Linesearch = "none",
           memory: lbfgs.Memory = DEFAULT_MEMORY) -> Step:
    """One optimizer iteration from the loss ``value`` and its ``grad`` at ``x``, however they were
    computed (whole, or tile by tile as in ``jaxstyle.evaluate.tiling``). ``value_fn`` is needed only by the
    L-BFGS line searches. Pure."""
    # optax's own code mixes Python floats with int32 step counts (Adam's bias correction), which
    # strict dtype promotion refuses; jaxstyle's code is checked strict (tests/conftest.py).
    with jax.numpy_dtype_promotion("standard"):
        optimizer = transformation(kind, lr, linesearch, memory)
        updates, state = optimizer.update(grad, state, x, value=value, grad=grad, value_fn=value_fn)
    # Projection onto displayable pixels after every step, for L-BFGS too: at 128 px, 80 steps,
    # the final (clipped) loss was 1.053 with it and 1.116 when clipping only the output.
    new_x = jnp.clip(optax.apply_updates(x, updates), 0.0, 1.0)
    if has_linesearch(kind, linesearch):
        evals = jnp.maximum(optax.tree.get(state, "num_linesearch_steps"), 1).astype(jnp.int32)
    else:
        evals = jnp.int32(1)
    loss = state.value if _guarded(kind, linesearch) else value  # the guard reports the accepted loss
    return Step(new_x, state, loss, evals)


def make_step(loss_fn: Callable, kind: Optimizer, linesearch: Linesearch = "none", memory: lbfgs.Memory = DEFAULT_MEMORY):
    """The pure, unjitted ``step(x, state, lr, problem) -> Step`` minimising ``loss_fn(x, problem)``:
    one loss-and-gradient evaluation, then :func:`update`."""

    def one_step(x, state, lr, problem) -> Step:
        value_fn = lambda p: loss_fn(p, problem)
        if has_linesearch(kind, linesearch):  # the line search already evaluated value and gradient at x
            value, grad = optax.value_and_grad_from_state(value_fn)(x, state=state)
        else:
            value, grad = jax.value_and_grad(value_fn)(x)
        return update(x, state, lr, value, grad, value_fn, kind=kind, linesearch=linesearch, memory=memory)

    return one_step


@functools.partial(jax.jit, static_argnames=("loss_fn", "kind", "linesearch", "memory", "axes", "sharding"),
                   donate_argnames=("x", "state"))
def step(x, state, lr, problem, *, loss_fn: Callable, kind: Optimizer, linesearch: Linesearch = "none",
         memory: lbfgs.Memory = DEFAULT_MEMORY, axes=None, sharding=None) -> Step:
    """One jitted iteration minimising ``loss_fn(x, problem)``; ``x`` and ``state`` are donated.

    Static (each distinct value compiles once): ``loss_fn``, ``kind``, ``linesearch``,
    ``memory``; ``axes`` is ``None`` for one image or, for a batch (a leading axis on ``x``, ``state`` and ``lr``), the
    ``in_axes`` of ``problem`` (see ``objective.batch_axes``); ``sharding``, if given, pins every
    output to it, so the next call sees the same input shardings. Traced: everything else.
    """
    one = make_step(loss_fn, kind, linesearch, memory)
    out = one(x, state, lr, problem) if axes is None else over_batch(one, (0, 0, 0, axes), x, state, lr, problem)
    return out if sharding is None else jax.lax.with_sharding_constraint(out, sharding)


def over_batch(fn: Callable, in_axes: tuple, *args):
    """``jax.vmap(fn, in_axes)(*args)`` (``in_axes`` entries 0 or ``None``, pytree prefixes), except
    that a batch of one is squeezed and ``fn`` runs unbatched (XLA:CPU runs a vmapped batch of one
    slower than the same step without the axis; ``bench/speed.py --layouts single batch1``)."""
    size = jax.tree.leaves(args[0])[0].shape[0]
    if size != 1:
        return jax.vmap(fn, in_axes=in_axes)(*args)
    squeeze = lambda axis, tree: tree if axis is None else jax.tree.map(lambda a: a[0], tree)
    unbatched = [jax.tree.map(squeeze, axes, arg, is_leaf=lambda a: a is None) for axes, arg in zip(in_axes, args)]
    return jax.tree.map(lambda a: a[None], fn(*unbatched))


@functools.partial(jax.jit, static_argnames=("kind", "linesearch", "memory", "batched", "sharding"))
def init_state(x, *, kind: Optimizer, linesearch: Linesearch = "none", memory: lbfgs.Memory = DEFAULT_MEMORY,
               batched: bool = False, sharding=None):
    """:func:`init`, jitted; over a leading batch axis of ``x`` when ``batched``."""
    one = lambda xi: init(xi, kind, linesearch, memory)
    state = over_batch(one, (0,), x) if batched else one(x)
    return state if sharding is None else jax.lax.with_sharding_constraint(state, sharding)


@functools.partial(jax.jit, static_argnames=("kind", "linesearch", "memory"), donate_argnames=("state",))
def jitted_update(x, state, lr, value, grad, *, kind: Optimizer, linesearch: Linesearch = "none",
                  memory: lbfgs.Memory = DEFAULT_MEMORY) -> Step:
    """:func:`update`, jitted, for a loss and gradient evaluated outside it (the tiled evaluation).
    Line searches evaluate the loss inside the update, so only ``linesearch="none"`` is possible."""
    if has_linesearch(kind, linesearch):
        raise ValueError("an externally evaluated step supports L-BFGS only without a line search")
    return update(x, state, lr, value, grad, kind=kind, linesearch=linesearch, memory=memory)
