"""The one run loop: jobs (photo + painting(s) + StyleConfig) → optimised images, scale by scale.

:func:`run` optimises a group of jobs that share their static options together: scale by scale
(coarse to fine), one jitted step per iteration queued from Python, progress reported every
``config.chunk`` steps, timings and final loss terms measured the same way for every job.
:func:`stylize` is a group of one; ``jaxstyle.run.batch.stylize_batch`` splits many jobs into groups.

How a step evaluates the loss is the only thing that varies, in an evaluator: :class:`_Whole`
stacks the jobs on a leading axis and vmaps one compiled step over them (sharded over devices when
given several); :class:`_Tiled` runs one job too large to evaluate whole, exactly, in streamed bands
of rows (``jaxstyle.evaluate.bands``) or tile by tile (``jaxstyle.evaluate.tiling``), as its plan says.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..io import image as image_io
from ..evaluate import bands, objective, tiling
from .. import interrupt
from ..optim import optimize
from ..config import STOP_WINDOW, StyleConfig
from ..errors import JaxstyleError
from .problem import ImageLike, Job, Prepared, finish_colour, images_at, initial_image, make_problem, network, prepare_job, tile_plan
from ..model.weights import VGGWeights


@dataclass(frozen=True)
class Progress:
    """What a progress callback receives every ``config.chunk`` steps (once per job of a group)."""

    step: int  # iterations done so far, over all scales
    steps: int  # iterations over all scales: those requested, less those of scales that stopped early (tolerance)
    loss: float  # loss before the latest iteration
    elapsed: float  # seconds since optimisation started (compilation included)
    image: Callable[[], np.ndarray]  # current image on demand, (H, W, 3) in [0, 1]
    terms: Callable[[], dict]  # current weighted loss terms on demand: content, style, tv, total
    scale: int = 0  # index of the current scale (0 = coarsest)
    tiling: str = ""  # how the current scale is evaluated when not whole (``BandPlan``/``TilePlan.describe``), else ""
    job: int = 0  # index of the job in its group (0 for stylize)


@dataclass(frozen=True)
class Result:
    """Output of :func:`stylize` (and of each job of :func:`run`)."""

    image: np.ndarray  # (H, W, 3) float32 in [0, 1]
    history: np.ndarray  # (steps run,) loss before each iteration, all scales in order
    terms: dict  # final weighted loss terms of the returned image: content, style, tv, total
    evaluations: int  # loss-and-gradient evaluations spent
    # seconds: load (images, network), first_step (includes compilation), optimize, total; and
    # batch_size (jobs optimised together), devices (they were sharded over)
    timings: dict
    config: StyleConfig = field(default_factory=StyleConfig)


# --- evaluators: how one step evaluates the loss ------------------------------------------------------

@jax.jit
def _ema(avg, x, decay):
    return decay * avg + (1.0 - decay) * x


@jax.jit
def _batched_terms(x, problem):
    return optimize.over_batch(objective.loss_terms, (0, objective.batch_axes(problem.spec)), x, problem)


def _method(config: StyleConfig, planned: bool) -> dict:
    """The optimizer's static options, as ``optimize``'s step functions take them."""
    return dict(kind=config.optimizer, linesearch=config.linesearch, memory=config.lbfgs_memory_for(planned))


class _Whole:
    """Jobs stacked on a leading batch axis, one vmapped step; sharded over ``devices`` if several."""

    def __init__(self, config: StyleConfig, devices):
        self.method = _method(config, planned=False)
        self.devices = len(devices) if devices else 1
        self.sharding = NamedSharding(Mesh(np.asarray(devices), ("batch",)), PartitionSpec("batch")) if devices else None
        self.replicated = NamedSharding(self.sharding.mesh, PartitionSpec()) if devices else None

    def _put(self, value, sharding):
        return value if sharding is None else jax.device_put(value, sharding)

    def problem(self, problems: list) -> objective.Problem:
        first = problems[0]
        return objective.Problem(
            weights=self._put(first.weights, self.replicated),
            targets=self._put(objective.stack_targets([p.targets for p in problems], problems[0].spec), self.sharding),
            coef=self._put(objective.stack([p.coef for p in problems]), self.sharding),
            spec=first.spec,
            masks=self._put(objective.stack([p.masks for p in problems]), self.sharding),
            temporal=self._put(objective.stack([p.temporal for p in problems]), self.sharding),
        )

    def stack(self, values: list) -> jax.Array:
        return self._put(jnp.stack([jnp.asarray(v, jnp.float32) for v in values]), self.sharding)

    def per_job(self, array, axis: int = 0) -> list:
        array = np.asarray(array)
        return [np.take(array, b, axis) for b in range(array.shape[axis])]

    def init(self, x):
        return optimize.init_state(x, **self.method, batched=True, sharding=self.sharding)

    def step(self, x, state, lr, problem):
        return optimize.step(x, state, lr, problem, loss_fn=objective.total_loss, **self.method,
                             axes=objective.batch_axes(problem.spec), sharding=self.sharding)

    def terms(self, x, problem) -> dict:
        return _batched_terms(x, problem)


class _Tiled:
    """One job too large to evaluate whole, evaluated by its plan (``bands.BandPlan`` or
    ``tiling.TilePlan``): exact, at a memory that grows with the width (bands) or not at all (tiles)."""

    devices = 1

    def __init__(self, config: StyleConfig, tiles: tiling.TilePlan | bands.BandPlan):
        self.method, self.tiles = _method(config, planned=True), tiles

    def problem(self, problems: list) -> objective.Problem:
        (problem,) = problems
        return problem

    def stack(self, values: list) -> jax.Array:
        (value,) = values
        return jnp.asarray(value, jnp.float32)

    def per_job(self, array, axis: int = 0) -> list:
        return [np.asarray(array)]

    def init(self, x):
        return optimize.init_state(x, **self.method)

    def step(self, x, state, lr, problem):
        value, grad = self.tiles.value_and_grad(x, problem)
        return optimize.jitted_update(x, state, lr, value, grad, **self.method)

    def terms(self, x, problem) -> dict:
        return self.tiles.loss_terms(x, problem)


# --- the loop ---------------------------------------------------------------------------------------

def run_steps(step, x, state, lr, problem, steps: int, config: StyleConfig, *, report=None, offset: int = 0,
              strict: bool = True) -> tuple:
    """Queue up to ``steps`` calls of ``step(x, state, lr, problem) -> Step`` from ``x`` and ``state``.

    Returns ``(image, losses, evaluations, first_step_s)``: the last iterate, or the bias-corrected
    moving average when ``config.average`` is set; losses and evaluations stacked over the steps
    run on axis 0 (``(n,)`` or ``(n, batch)``). ``report(i, loss, x_now, last)`` is called every
    ``config.chunk`` steps and after the last (``last`` true then); only then does Python wait for
    the device. There, when ``config.tolerance`` is set and every job's loss has settled
    (:func:`settled`), the loop stops early. When ``strict``, a loss that is NaN or infinite there
    stops the loop with a :class:`JaxstyleError` naming the step (``offset`` + i: the steps of
    earlier scales); otherwise the caller judges each job. An interrupt (``jaxstyle.interrupt``)
    stops the loop at the next step.
    """
    decay = jnp.float32(config.average)
    avg = jnp.zeros_like(x) if config.average else None
    losses, evals, first_step, done = [], [], None, 0
    t0 = time.perf_counter()
    for i in range(steps):
        interrupt.check()
        x, state, loss, n_evals = step(x, state, lr, problem)
        if avg is not None:
            avg = _ema(avg, x, decay)
        losses.append(loss)
        evals.append(n_evals)
        done = i + 1
        if i == 0:
            jax.block_until_ready(x)
            first_step = time.perf_counter() - t0
        if done % config.chunk == 0 or done == steps:
            if strict and not np.isfinite(np.asarray(loss)).all():
                raise JaxstyleError(
                    f"the loss became {np.asarray(loss).ravel()[0]} by step {offset + done}: the optimisation diverged; "
                    "lower --lr, or the weights (--content-weight, --style-weight, --tv-weight), or use --optimizer lbfgs")
            last = done == steps or settled(losses, config.tolerance)
            if report is not None:
                current = x if avg is None else avg / (1.0 - config.average**done)
                report(done, loss, current, last)
            if last:
                break
    if avg is not None:  # bias correction of the moving average (as in Adam)
        x = jnp.clip(avg / (1.0 - config.average**done), 0.0, 1.0)
    history = np.stack(jax.device_get(losses)).astype(np.float32)
    return x, history, np.sum(np.stack(jax.device_get(evals)), axis=0), first_step


def settled(losses: list, tolerance: float, window: int = STOP_WINDOW) -> bool:
    """Whether every job's best loss fell by less than ``tolerance`` (a fraction of it) over the last
    ``window`` steps: the stopping rule of ``StyleConfig.tolerance`` (0 never stops). The best
    loss, not the latest, so that one step that overshoots (L-BFGS without a line search, Adam's
    noise) does not stop a run that still improves. A job whose loss is no longer finite has settled."""
    if not tolerance or len(losses) <= window:
        return False
    values = np.stack(jax.device_get(losses)).astype(np.float64)  # (steps,) or (steps, batch)
    before, recent = np.fmin.reduce(values[:-window]), np.fmin.reduce(values[-window:])
    with np.errstate(invalid="ignore"):  # a loss of 0 (nothing left to fall) has settled
        fell = np.divide(before - recent, before, out=np.zeros_like(before), where=before > 0)
    return bool(np.all(~np.isfinite(values[-1]) | (fell < tolerance)))


def loss_terms(x: jax.Array, problem: objective.Problem, tiles: tiling.TilePlan | bands.BandPlan | None = None) -> dict:
    """The weighted loss terms (content, style, tv, total) of one image ``x``, whole or by its plan."""
    if tiles is None:
        return _terms(x, problem)
    return tiles.loss_terms(x, problem)


@jax.jit
def _terms(x, problem):
    return objective.loss_terms(x, problem)


def run(jobs: Sequence[Job | Prepared], *, weights: VGGWeights | None = None, devices=None,
        callback: Callable[[Progress], None] | None = None, log: Callable[[str], None] | None = None,
        strict: bool = False) -> list[Result]:
    """Optimise a group of jobs together: the one run loop of jaxstyle.

    Args:
      jobs: jobs sharing every static option (``jaxstyle.run.batch.static_key``), or the same already
        loaded (``problem.prepare_job``); several only if the image is small enough to evaluate
        whole (a tiled job runs alone).
      weights: VGG-19 weights (default bundled), normalised here if the configs ask.
      devices: shard the jobs over these devices (their number must divide the jobs'); default:
        no sharding, JAX's default device.
      callback: called with a :class:`Progress` per job every ``config.chunk`` steps and after the last.
      log: called with a line of text when a scale starts streamed or tiled (the plan's ``describe``).
      strict: stop with a :class:`JaxstyleError` as soon as a loss is not finite (a single run);
        otherwise a diverged job's result carries the non-finite terms (a batch: judged per job).

    Returns:
      One :class:`Result` per job, in order.
    """
    t0 = time.perf_counter()
    prepared = [job if isinstance(job, Prepared) else prepare_job(job) for job in jobs]
    config = prepared[0].config  # the group's shared options: schedule, optimizer, averaging, reporting
    weights = network(config, weights)
    t_load = time.perf_counter()
    schedule = config.schedule()
    done = 0
    histories, evaluations, first_step, x, evaluator = [], 0, None, None, None
    for k, (size, steps) in enumerate(schedule):
        images = [images_at(p.content, p.styles, size, p.config) for p in prepared]
        tiles = tile_plan(images[0][0].shape, config)
        if tiles is not None and len(prepared) > 1:
            raise ValueError("a tiled image runs alone: give run() one job (stylize_batch splits groups)")
        if tiles is not None and log is not None:
            log(tiles.describe())
        previous, evaluator = evaluator, _Tiled(config, tiles) if tiles is not None else _Whole(config, devices)
        problem = evaluator.problem([make_problem(weights, c, s, p.config, tiles, p.regions, p.temporal)
                                     for (c, s), p in zip(images, prepared)])
        if x is None:
            x = evaluator.stack([initial_image(p.config, c, p.start) for (c, _), p in zip(images, prepared)])
        else:  # coarse to fine: upsample the previous result (split by the evaluator that made it) and go on
            x = evaluator.stack([image_io.resize_exact(xi, c.shape[:2]) for xi, (c, _) in zip(previous.per_job(x), images)])
        lr = evaluator.stack([p.config.learning_rate for p in prepared])

        report = None
        if callback is not None:
            def report(i, loss, current, last, k=k, offset=done, steps=steps,
                       later=sum(s for _, s in schedule[k + 1:]), problem=problem, evaluator=evaluator, tiles=tiles):
                current = jnp.clip(current, 0.0, 1.0)
                planned = offset + (i if last else steps) + later  # a scale that stopped early (tolerance) ends at i

                @functools.cache  # evaluated only if a callback asks, once for the whole group
                def terms():
                    values = jax.device_get(evaluator.terms(current, problem))
                    return {name: evaluator.per_job(v) for name, v in values.items()}

                pixels = functools.cache(lambda: evaluator.per_job(current))
                for b, loss_b in enumerate(evaluator.per_job(loss)):
                    callback(Progress(offset + i, planned, float(loss_b), time.perf_counter() - t_load,
                                      image=lambda b=b: pixels()[b],
                                      terms=lambda b=b: {name: float(v[b]) for name, v in terms().items()},
                                      scale=k, tiling=tiles.describe() if tiles is not None else "", job=b))

        x, history, n_evals, first = run_steps(evaluator.step, x, evaluator.init(x), lr, problem, steps, config,
                                               report=report, offset=done, strict=strict)
        histories.append(evaluator.per_job(history, axis=1) if history.ndim == 2 else [history])
        evaluations = evaluations + np.asarray(n_evals)
        first_step = first if first_step is None else first_step
        done += len(history)

    x = jnp.clip(x, 0.0, 1.0)
    terms = {name: evaluator.per_job(value) for name, value in jax.device_get(evaluator.terms(x, problem)).items()}
    t_end = time.perf_counter()
    timings = {"load": t_load - t0, "first_step": first_step, "optimize": t_end - t_load, "total": t_end - t0,
               "batch_size": len(prepared), "devices": evaluator.devices}
    evaluations = np.broadcast_to(evaluations, (len(prepared),))
    return [
        Result(
            image=finish_colour(image, p.content, p.config),
            history=np.concatenate([h[b] for h in histories]),
            terms={name: float(values[b]) for name, values in terms.items()},
            evaluations=int(evaluations[b]),
            timings=timings,
            config=p.config,
        )
        for b, (image, p) in enumerate(zip(evaluator.per_job(x), prepared))
    ]


def stylize(
    content: ImageLike,
    styles: ImageLike | Sequence[ImageLike],
    config: StyleConfig = StyleConfig(),
    *,
    weights: VGGWeights | None = None,
    callback: Callable[[Progress], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> Result:
    """Render ``content`` in the style of ``styles`` (Gatys, Ecker & Bethge 2015).

    Args:
      content: the photograph: a file path or an (H, W, 3) float array in [0, 1]; ``None`` for a
        texture (no content layers): the output then has the first painting's aspect ratio.
      styles: one painting or a list of them (paths or arrays), blended by
        ``config.style_blend_weights``; empty for a content reconstruction (no style layers).
      config: every option; see :class:`StyleConfig`.
      weights: VGG-19 weights; default the bundled quantised Caffe VGG-19.
      callback: called with a :class:`Progress` every ``config.chunk`` steps and after the last.
      log: called with a line of text when a scale starts streamed or tiled (the plan's ``describe``).

    Returns:
      A :class:`Result` whose ``image`` has the content's shape at ``config.size`` (long side).

    Examples:
      >>> import jaxstyle
      >>> from jaxstyle.examples import CONTENT, STYLE
      >>> result = jaxstyle.stylize(CONTENT, STYLE, jaxstyle.StyleConfig(size=32, steps=2))
      >>> result.image.shape
      (21, 32, 3)
    """
    styles = (styles,) if isinstance(styles, (str, bytes, os.PathLike, np.ndarray)) else tuple(styles)
    (result,) = run([Job(content, styles, config)], weights=weights, callback=callback, log=log, strict=True)
    return result
