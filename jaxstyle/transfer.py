"""stylize(): the single entry point: photo + painting(s) + StyleConfig → Result (module: transfer)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from . import image as image_io
from . import objective, optimize
from .config import StyleConfig, layer_weights
from .errors import JaxstyleError
from .weights import VGGWeights, load_bundled

ImageLike = Union[str, os.PathLike, np.ndarray]


@dataclass(frozen=True)
class Progress:
    """What a progress callback receives every ``config.chunk`` steps."""

    step: int  # iterations done so far
    steps: int  # iterations requested
    loss: float  # loss before the latest iteration
    elapsed: float  # seconds since optimisation started (compilation included)
    image: Callable[[], np.ndarray]  # current image on demand, (H, W, 3) in [0, 1]


@dataclass(frozen=True)
class Result:
    """Output of :func:`stylize`."""

    image: np.ndarray  # (H, W, 3) float32 in [0, 1]
    history: np.ndarray  # (steps,) loss before each iteration
    terms: dict  # final weighted loss terms: content, style, tv, total
    evaluations: int  # loss-and-gradient evaluations spent
    timings: dict  # seconds: load, targets, first_step (includes compilation), optimize, total
    config: StyleConfig = field(default_factory=StyleConfig)


def _as_image(value: ImageLike, size: int | None, what: str) -> np.ndarray:
    if isinstance(value, (str, os.PathLike)):
        return image_io.load_image(value, size)
    array = np.asarray(value, dtype=np.float32)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise JaxstyleError(f"{what} array has shape {array.shape}; give an (H, W, 3) RGB array in [0, 1]")
    return image_io.resize_long_side(array, size) if size is not None else array


def _check_size(array: np.ndarray, config: StyleConfig, what: str) -> None:
    if min(array.shape[:2]) < config.min_size:
        raise JaxstyleError(
            f"{what} is {array.shape[1]}x{array.shape[0]} px after resizing, too small for the layers used: "
            f"each side must be at least {config.min_size} px; raise --size or use shallower layers"
        )


def _loss(x, data):
    weights, targets, coef, spec = data
    return objective.total_loss(x, weights, targets, coef, spec)


def prepare(content: ImageLike, styles: ImageLike | Sequence[ImageLike], config: StyleConfig):
    """Load and check the images for ``config``: (content (H, W, 3), [style (h, w, 3), …])."""
    config.validate()
    if isinstance(styles, (str, os.PathLike, np.ndarray)):
        styles = [styles]
    if not styles:
        raise JaxstyleError("no style image given; pass at least one")
    content_arr = _as_image(content, config.size, "content image")
    _check_size(content_arr, config, "the content image")
    style_arrs = [_as_image(s, config.size, "style image") for s in styles]
    for s in style_arrs:
        _check_size(s, config, "a style image")
    return content_arr, style_arrs


def initial_image(config: StyleConfig, content: np.ndarray) -> jax.Array:
    """The starting image: the photo, white noise from ``config.seed``, or an image file."""
    if config.init == "content":
        return jnp.asarray(content)
    if config.init == "noise":
        return jax.random.uniform(jax.random.key(config.seed), content.shape, jnp.float32)
    start = image_io.load_image(config.init)
    return jnp.asarray(image_io.resize_exact(start, content.shape[:2]))


def stylize(
    content: ImageLike,
    styles: ImageLike | Sequence[ImageLike],
    config: StyleConfig = StyleConfig(),
    *,
    weights: VGGWeights | None = None,
    callback: Callable[[Progress], None] | None = None,
) -> Result:
    """Render ``content`` in the style of ``styles`` (Gatys, Ecker & Bethge 2015).

    Args:
      content: the photograph: a file path or an (H, W, 3) float array in [0, 1].
      styles: one painting or a list of them (paths or arrays); their Gram terms are averaged
        with equal weight.
      config: every option; see :class:`StyleConfig`.
      weights: VGG-19 weights; default the bundled quantised Caffe VGG-19.
      callback: called with a :class:`Progress` every ``config.chunk`` steps and after the last.

    Returns:
      A :class:`Result` whose ``image`` has the content's shape at ``config.size`` (long side).

    Examples:
      >>> import jaxstyle
      >>> from jaxstyle.examples import CONTENT, STYLE
      >>> result = jaxstyle.stylize(CONTENT, STYLE, jaxstyle.StyleConfig(size=32, steps=2))
      >>> result.image.shape
      (21, 32, 3)
    """
    t0 = time.perf_counter()
    content_arr, style_arrs = prepare(content, styles, config)
    weights = load_bundled() if weights is None else weights
    x = initial_image(config, content_arr)
    t_load = time.perf_counter()

    spec = objective.ObjectiveSpec(
        content_layers=tuple(config.content_layers),
        style_layers=tuple(config.style_layers),
        pooling=config.pooling,
        normalization=config.normalization,
        tv_kind=config.tv_kind,
    )
    targets = objective.make_targets(weights, jnp.asarray(content_arr), [jnp.asarray(s) for s in style_arrs], spec)
    coef = objective.LossWeights(
        alpha=jnp.float32(config.content_weight),
        beta=jnp.float32(config.style_weight),
        tv=jnp.float32(config.tv_weight),
        content_layers=jnp.asarray(layer_weights(config.content_layer_weights, len(spec.content_layers)), jnp.float32),
        style_layers=jnp.asarray(layer_weights(config.style_layer_weights, len(spec.style_layers)), jnp.float32),
        blend=jnp.full((len(style_arrs),), 1.0 / len(style_arrs), jnp.float32),
    )
    data = (weights, targets, coef, spec)
    jax.block_until_ready(targets)
    t_targets = time.perf_counter()

    step = optimize.step_fn(_loss, config.optimizer, config.linesearch)
    state = optimize.state_initializer(config.optimizer, config.linesearch)(x)
    lr = jnp.float32(config.learning_rate)
    losses, evals = [], []
    for i in range(config.steps):
        x, state, loss, n_evals = step(x, state, lr, data)
        losses.append(loss)
        evals.append(n_evals)
        if i == 0:
            jax.block_until_ready(x)
            first_step = time.perf_counter() - t_targets
        if (i + 1) % config.chunk == 0 or i + 1 == config.steps:
            last = float(loss)  # waits for the queued steps
            if callback is not None:
                current = x
                callback(Progress(i + 1, config.steps, last, time.perf_counter() - t_targets,
                                  lambda: np.clip(np.asarray(current), 0.0, 1.0)))
    history = np.asarray(jax.device_get(losses), dtype=np.float32)
    evaluations = int(np.sum(jax.device_get(evals)))
    x = jnp.clip(x, 0.0, 1.0)
    terms = {k: float(v) for k, v in _final_terms(x, data).items()}
    t_end = time.perf_counter()
    return Result(
        image=np.asarray(x),
        history=history,
        terms=terms,
        evaluations=evaluations,
        timings={
            "load": t_load - t0,
            "targets": t_targets - t_load,
            "first_step": first_step,
            "optimize": t_end - t_targets,
            "total": t_end - t0,
        },
        config=config,
    )


@jax.jit
def _final_terms(x, data):
    return objective.loss_terms(x, *data)
