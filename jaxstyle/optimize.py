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
    loss: jax.Array  # () loss before the step
    evaluations: jax.Array  # () loss-and-gradient evaluations the step spent


def make_step(loss_fn: Callable, kind: Optimizer, linesearch: Linesearch = "none"):
    """The pure, unjitted ``step(x, state, lr, data) -> Step`` minimising ``loss_fn(x, data)``."""
    uses_state = kind == "lbfgs" and linesearch != "none"

    def step(x, state, lr, data) -> Step:
        opt = make_optimizer(kind, lr, linesearch)
        value_fn = lambda p: loss_fn(p, data)
        if uses_state:  # the line search already evaluated value and gradient at x
            value, grad = optax.value_and_grad_from_state(value_fn)(x, state=state)
        else:
            value, grad = jax.value_and_grad(value_fn)(x)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=value_fn)
        # Projection onto displayable pixels after every step, for L-BFGS too: at 128 px, 80 steps,
        # the final (clipped) loss was 1.053 with it and 1.116 when clipping only the output.
        x = jnp.clip(optax.apply_updates(x, updates), 0.0, 1.0)
        if uses_state:
            evals = jnp.maximum(optax.tree.get(state, "num_linesearch_steps"), 1).astype(jnp.int32)
        else:
            evals = jnp.int32(1)
        return Step(x, state, value, evals)

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
    return jax.jit(lambda x: make_optimizer(kind, 1.0, linesearch).init(x))
