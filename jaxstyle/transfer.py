"""stylize(): the single entry point: photo + painting(s) + StyleConfig → Result (module: transfer).

Multi-scale runs and colour control wrap the one optimisation loop, :func:`optimize_image`. Each
scale is evaluated whole or, when it would not fit the memory budget, tile by tile and exactly
(:func:`tile_plan`, ``jaxstyle.tiling``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from . import color, interrupt
from . import image as image_io
from . import losses, objective, optimize, tiling
from .config import StyleConfig, layer_weights
from .errors import JaxstyleError
from .weights import VGGWeights, load_bundled

ImageLike = Union[str, os.PathLike, np.ndarray]


@dataclass(frozen=True)
class Progress:
    """What a progress callback receives every ``config.chunk`` steps."""

    step: int  # iterations done so far, over all scales
    steps: int  # iterations requested, over all scales
    loss: float  # loss before the latest iteration
    elapsed: float  # seconds since optimisation started (compilation included)
    image: Callable[[], np.ndarray]  # current image on demand, (H, W, 3) in [0, 1]
    terms: Callable[[], dict]  # current weighted loss terms on demand: content, style, tv, total
    scale: int = 0  # index of the current scale (0 = coarsest)
    tiling: str = ""  # how the current scale is evaluated when tiled (``TilePlan.describe``), else ""


@dataclass(frozen=True)
class Result:
    """Output of :func:`stylize`."""

    image: np.ndarray  # (H, W, 3) float32 in [0, 1]
    history: np.ndarray  # (total steps,) loss before each iteration, all scales in order
    terms: dict  # final weighted loss terms of the returned image: content, style, tv, total
    evaluations: int  # loss-and-gradient evaluations spent
    timings: dict  # seconds: load, first_step (includes compilation), optimize, total
    config: StyleConfig = field(default_factory=StyleConfig)


def _as_image(value: ImageLike, what: str) -> np.ndarray:
    if isinstance(value, (str, bytes, os.PathLike)):
        return image_io.load_image(value)
    return image_io.image_array(value, what)


def _check_size(shape: tuple[int, ...], config: StyleConfig, what: str) -> None:
    if min(shape[:2]) < config.min_size:
        raise JaxstyleError(
            f"{what} is {shape[1]}x{shape[0]} px after resizing, too small for the layers used: "
            f"each side must be at least {config.min_size} px; raise --size (or --style-scale) or use shallower layers"
        )


def loss(x, data):
    """The total loss of ``x`` under the ``data`` pytree ``(weights, targets, coefficients, spec)``
    that :func:`make_objective` builds: the ``loss_fn`` of ``optimize.step_fn``."""
    weights, targets, coef, spec = data
    return objective.total_loss(x, weights, targets, coef, spec)


@jax.jit
def _final_terms(x, data):
    return objective.loss_terms(x, *data)


@jax.jit
def _ema(avg, x, decay):
    return decay * avg + (1.0 - decay) * x


def prepare(content: ImageLike, styles: ImageLike | Sequence[ImageLike], config: StyleConfig):
    """Load and check the images for ``config``.

    Returns:
      ``(content, styles)``: the content at ``config.size`` (long side, Lanczos) and the style
      images as loaded (each is resized once per scale, from this original, when used). Raises if
      any image is too small for the layers at the final scale.
    """
    if not isinstance(config, StyleConfig):
        raise JaxstyleError(f"config must be a jaxstyle.StyleConfig, not {type(config).__name__}; e.g. StyleConfig(size=512)")
    config.validate()
    if isinstance(styles, (str, bytes, os.PathLike, np.ndarray)):
        styles = [styles]
    styles = list(styles)
    if not styles:
        raise JaxstyleError("no style image given; pass at least one")
    config.style_scales(len(styles))
    config.blend(len(styles))
    content_original = _as_image(content, "content image")
    shape = image_io.long_side_shape(content_original.shape, config.size)
    tile_plan(shape, config)  # refuses, before any resizing, a size that cannot fit even tiled
    content_arr = image_io.resize_long_side(content_original, config.size)
    _check_size(content_arr.shape, config, "the content image")
    originals = [_as_image(s, "style image") for s in styles]
    for k, (s, scale) in enumerate(zip(originals, config.style_scales(len(originals)))):
        style_shape = image_io.long_side_shape(s.shape, max(1, round(config.size * scale)))
        what = f"style image {k + 1}" + (f" ({styles[k]})" if not isinstance(styles[k], np.ndarray) else "")
        _check_size(style_shape, config, what)
        tiling.choose_plan(*style_shape, objective_spec(config).layers, max_memory=config.memory_budget,
                           what=f"{what} at --style-scale {scale:g}")
    return content_arr, originals


def styles_at(styles: Sequence[np.ndarray], size: int, config: StyleConfig) -> list[np.ndarray]:
    """Each style image at long side ``style_scale * size`` (Lanczos), from its original."""
    scales = config.style_scales(len(styles))
    return [image_io.resize_long_side(s, max(1, round(size * k))) for s, k in zip(styles, scales)]


def initial_image(config: StyleConfig, content: np.ndarray) -> jax.Array:
    """The starting image: the photo, white noise from ``config.seed``, or an image file."""
    if config.init == "content":
        return jnp.asarray(content)
    if config.init == "noise":
        uniform = jax.random.uniform(jax.random.key(config.seed), content.shape, jnp.float32)
        return uniform if config.noise_scale == 1 else 0.5 + config.noise_scale * (uniform - 0.5)
    start = image_io.load_image(config.init)
    return jnp.asarray(image_io.resize_exact(start, content.shape[:2]))


_NORMALIZED: dict = {}


def calibration_images() -> list[np.ndarray]:
    """The images the normalised network is calibrated on: the bundled examples, long side 224 px."""
    from .examples import CONTENT, STYLE

    return [image_io.load_image(p, 224) for p in (CONTENT, STYLE)]


def network(config: StyleConfig, weights: VGGWeights | None = None) -> VGGWeights:
    """The weights a run uses: given or bundled, normalised as in the paper if the config asks."""
    weights = load_bundled() if weights is None else weights
    if not config.normalize_vgg:
        return weights
    key = (weights.sha256, config.pooling)
    if key not in _NORMALIZED:  # calibrate once per weights and pooling, on the bundled examples
        from .normalize import normalize_vgg

        _NORMALIZED[key] = normalize_vgg(weights, calibration_images(), config.pooling)
    return _NORMALIZED[key]


def prepare_colour(content: np.ndarray, styles: list[np.ndarray], config: StyleConfig):
    """Colour control before optimising: recolour the paintings once, at full resolution."""
    if config.color == "histogram":
        styles = [color.match_histogram(s, content) for s in styles]
    elif config.color == "luminance":
        styles = [color.luminance_image(s, like=content) for s in styles]
    return content, styles


def finish_colour(image: np.ndarray, content: np.ndarray, config: StyleConfig) -> np.ndarray:
    """Colour control after optimising: luminance transfer takes back the photo's chrominance."""
    return color.recombine_luminance(image, content) if config.color == "luminance" else image


def scale_plan(config: StyleConfig) -> list[tuple[int, int]]:
    """(long side, iterations) of each scale, coarse to fine."""
    return config.schedule()


def images_at(content: np.ndarray, styles: Sequence[np.ndarray], size: int, config: StyleConfig):
    """The content (grey under luminance transfer) and styles for one scale, each resized once."""
    content_k = image_io.resize_long_side(content, size)
    if config.color == "luminance":
        content_k = color.luminance_image(content_k)
    return content_k, styles_at(styles, size, config)


def objective_spec(config: StyleConfig) -> objective.ObjectiveSpec:
    return objective.ObjectiveSpec(
        content_layers=tuple(config.content_layers),
        style_layers=tuple(config.style_layers),
        pooling=config.pooling,
        normalization=config.normalization,
        tv_kind=config.tv_kind,
        style_loss=config.style_loss,
    )


def tile_plan(shape: tuple[int, ...], config: StyleConfig) -> tiling.TilePlan | None:
    """How an image of ``shape`` is evaluated under ``config``: whole (``None``) or tiled."""
    plan = tiling.choose_plan(shape[0], shape[1], objective_spec(config).layers, max_memory=config.memory_budget,
                              tile=config.tile)
    if plan is not None and config.style_loss == "wasserstein":
        # The W2 statistics tile exactly (tiling.combine_moments), but on this project's CPU runtime
        # (jax 0.10.2) the tiled W2 loss hung the process intermittently, idle, inside XLA.
        raise JaxstyleError(
            f"a {shape[1]}x{shape[0]} image needs the tiled evaluation, which does not yet support "
            f"--style-loss wasserstein: use --style-loss gram, or a smaller --size (or --tile 0 to try untiled)"
        )
    if plan is not None and optimize.has_linesearch(config.optimizer, config.linesearch):
        raise JaxstyleError(
            f"a {shape[1]}x{shape[0]} image is evaluated tile by tile, and the L-BFGS line search "
            f"{config.linesearch!r} cannot run tiled: use --linesearch none (the default), or --tile 0 if it fits in memory"
        )
    return plan


def make_objective(weights: VGGWeights, content: np.ndarray, styles: Sequence[np.ndarray], config: StyleConfig,
                   tiles: tiling.TilePlan | None = None):
    """The loss's ``data`` pytree ``(weights, targets, coefficients, spec)`` for these images.

    With a tile plan, the targets are computed crop by crop too (forward only), so a huge photo or
    painting never needs its whole activations at once.
    """
    spec = objective_spec(config)
    style_tiles = [tiles.tile if tiles is not None else _style_tile(s.shape, config) for s in styles]
    if tiles is None and not any(style_tiles):
        targets = objective.make_targets(weights, jnp.asarray(content), [jnp.asarray(s) for s in styles], spec)
    else:
        if tiles is None:
            content_target = objective.image_features(weights, jnp.asarray(content), spec.content_layers, spec.pooling)
        else:
            content_target = tiling.features(weights, jnp.asarray(content), spec.content_layers, spec.pooling, tiles.tile)
        per_style = [
            tiling.style_statistics(weights, jnp.asarray(s), spec.style_layers, spec.pooling, spec.style_loss, tile)
            if tile else {layer: losses.style_statistic(f, spec.style_loss)
                          for layer, f in objective.image_features(weights, jnp.asarray(s), spec.style_layers, spec.pooling).items()}
            for s, tile in zip(styles, style_tiles)
        ]
        targets = objective.Targets(
            content=content_target,
            style={layer: objective.stack([p[layer] for p in per_style]) for layer in spec.style_layers},
        )
    coef = objective.LossWeights(
        alpha=jnp.float32(config.content_weight),
        beta=jnp.float32(config.style_weight),
        tv=jnp.float32(config.tv_weight),
        content_layers=jnp.asarray(layer_weights(config.content_layer_weights, len(spec.content_layers)), jnp.float32),
        style_layers=jnp.asarray(layer_weights(config.style_layer_weights, len(spec.style_layers)), jnp.float32),
        blend=jnp.asarray(config.blend(len(styles)), jnp.float32),
    )
    return weights, targets, coef, spec


def _style_tile(shape: tuple[int, ...], config: StyleConfig) -> int | None:
    """Core size for a style image's statistics (forward only): ``None`` when it fits whole. A
    painting at a large ``style_scale`` can need tiling while the output does not."""
    if config.tile == 0:
        return None
    plan = tiling.choose_plan(shape[0], shape[1], objective_spec(config).layers, max_memory=config.memory_budget,
                              what="a style image")
    return None if plan is None else plan.tile


def run_steps(step, x, state, lr, data, steps: int, config: StyleConfig, *, report=None, offset: int = 0) -> tuple:
    """Queue ``steps`` calls of a jitted ``step`` (single or batched) from ``x`` and ``state``.

    Returns ``(image, losses, evaluations, first_step_s)``: the last iterate, or the bias-corrected
    moving average when ``config.average`` is set; losses and evaluations stacked over steps on
    axis 0 (``(steps,)`` or ``(steps, batch)``). ``report(i, loss, x_now)`` is called every
    ``config.chunk`` steps and after the last; only then does Python wait for the device. A single
    run (scalar loss) whose loss is NaN or infinite there stops with a :class:`JaxstyleError` naming
    the step (``offset`` + i: the steps of earlier scales); a batch leaves that to its caller, per
    job. An interrupt (``jaxstyle.interrupt``) stops the loop at the next step.
    """
    decay = jnp.float32(config.average)
    avg = jnp.zeros_like(x) if config.average else None
    losses, evals, first_step = [], [], None
    t0 = time.perf_counter()
    for i in range(steps):
        interrupt.check()
        x, state, loss, n_evals = step(x, state, lr, data)
        if avg is not None:
            avg = _ema(avg, x, decay)
        losses.append(loss)
        evals.append(n_evals)
        if i == 0:
            jax.block_until_ready(x)
            first_step = time.perf_counter() - t0
        if (i + 1) % config.chunk == 0 or i + 1 == steps:
            if jnp.ndim(loss) == 0 and not np.isfinite(float(loss)):
                raise JaxstyleError(
                    f"the loss became {float(loss)} by step {offset + i + 1}: the optimisation diverged; lower "
                    "--lr, or the weights (--content-weight, --style-weight, --tv-weight), or use --optimizer lbfgs")
            if report is not None:
                current = x if avg is None else avg / (1.0 - config.average ** (i + 1))
                report(i + 1, float(loss), current)
    if avg is not None:  # bias correction of the moving average (as in Adam)
        x = jnp.clip(avg / (1.0 - config.average**steps), 0.0, 1.0)
    history = np.stack(jax.device_get(losses)).astype(np.float32)
    return x, history, np.sum(np.stack(jax.device_get(evals)), axis=0), first_step


def loss_terms(x: jax.Array, data, tiles: tiling.TilePlan | None = None) -> dict:
    """The weighted loss terms (content, style, tv, total) at ``x``, whole or tile by tile."""
    if tiles is None:
        return _final_terms(x, data)
    return tiling.loss_terms(x, *data, tiles)


def optimize_image(x: jax.Array, data, config: StyleConfig, steps: int, *, report=None,
                   tiles: tiling.TilePlan | None = None, offset: int = 0) -> tuple:
    """Run ``steps`` optimizer iterations from ``x``; returns (image, losses, evaluations, first_step_s).

    ``report(i, loss, x_now)`` is called every ``config.chunk`` steps and after the last. With a tile
    plan each evaluation runs tile by tile (``jaxstyle.tiling``), exactly.
    """
    if tiles is None:
        step = optimize.step_fn(loss, config.optimizer, config.linesearch)
    else:
        step = optimize.evaluated_step(lambda x, data: tiling.value_and_grad(x, *data, tiles),
                                       config.optimizer, config.linesearch)
    state = optimize.state_initializer(config.optimizer, config.linesearch)(x)
    x, history, evaluations, first_step = run_steps(step, x, state, jnp.float32(config.learning_rate), data,
                                                    steps, config, report=report, offset=offset)
    return x, history, int(evaluations), first_step


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
      content: the photograph: a file path or an (H, W, 3) float array in [0, 1].
      styles: one painting or a list of them (paths or arrays), blended by
        ``config.style_blend_weights``.
      config: every option; see :class:`StyleConfig`.
      weights: VGG-19 weights; default the bundled quantised Caffe VGG-19.
      callback: called with a :class:`Progress` every ``config.chunk`` steps and after the last.
      log: called with a line of text when a scale starts tiled (``TilePlan.describe``).

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
    content_arr, originals = prepare_colour(*prepare(content, styles, config), config)
    weights = network(config, weights)
    t_load = time.perf_counter()

    plan = scale_plan(config)
    total_steps, done = sum(steps for _, steps in plan), 0
    histories, evaluations, first_step, x, data = [], 0, None, None, None
    for k, (size, steps) in enumerate(plan):
        content_k, styles_k = images_at(content_arr, originals, size, config)
        tiles = tile_plan(content_k.shape, config)
        if tiles is not None and log is not None:
            log(tiles.describe())
        data = make_objective(weights, content_k, styles_k, config, tiles)
        if x is None:
            x = initial_image(config, content_k)
        else:  # coarse to fine: upsample the previous result and continue from it
            x = jnp.asarray(image_io.resize_exact(np.asarray(x), content_k.shape[:2]))

        report = None
        if callback is not None:
            def report(i, loss, current, k=k, offset=done, data=data, tiles=tiles):
                callback(Progress(
                    offset + i, total_steps, loss, time.perf_counter() - t_load,
                    image=lambda: np.clip(np.asarray(current), 0.0, 1.0),
                    terms=lambda: {n: float(v) for n, v in loss_terms(jnp.clip(current, 0.0, 1.0), data, tiles).items()},
                    scale=k,
                    tiling=tiles.describe() if tiles is not None else "",
                ))

        x, history, n_evals, first = optimize_image(x, data, config, steps, report=report, tiles=tiles, offset=done)
        histories.append(history)
        evaluations += n_evals
        first_step = first if first_step is None else first_step
        done += steps

    x = jnp.clip(x, 0.0, 1.0)
    terms = {k: float(v) for k, v in loss_terms(x, data, tiles).items()}
    out = finish_colour(np.asarray(x), content_arr, config)
    t_end = time.perf_counter()
    return Result(
        image=out,
        history=np.concatenate(histories),
        terms=terms,
        evaluations=evaluations,
        timings={"load": t_load - t0, "first_step": first_step, "optimize": t_end - t_load, "total": t_end - t0,
                 "batch_size": 1, "devices": 1},
        config=config,
    )
