"""One job → its optimisation problem: images loaded and checked, colour control, the images of each
scale, the network, the starting image, and the :class:`objective.Problem` of each scale.

Everything here runs once per job (or once per scale) in Python, before the compiled loop of
``jaxstyle.run.transfer``; nothing here is in the hot loop.

Over 400 lines: the one translation from a job to its problems (images, regions, colour, network,
targets per scale); its steps share the job's checks, which a split would scatter.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ..evaluate import bands, memory, objective, planner, tiling
from ..io import color
from .. import losses
from ..losses import masks
from ..optim import optimize
from ..model import vgg
from ..io import image as image_io
from ..config import INITS, StyleConfig, layer_weights
from ..errors import JaxstyleError
from ..model.weights import VGGWeights, load_bundled

ImageLike = Union[str, os.PathLike, np.ndarray]


@dataclass(frozen=True)
class Job:
    """One style transfer to run: photo, painting(s) (paths or arrays) and options.

    ``content`` may be ``None`` when the config has no content layers (texture synthesis): the
    output then takes the first painting's aspect ratio. ``styles`` may be empty when it has no
    style layers (content reconstruction).
    """

    content: ImageLike | None
    styles: tuple
    config: StyleConfig


@dataclass(frozen=True)
class Prepared:
    """A job after loading: what the run loop needs of it, decoded once."""

    content: np.ndarray  # (H, W, 3) at config.size, the photo (or a grey canvas for a texture)
    styles: list  # the paintings as loaded (recoloured under colour control), resized per scale
    start: np.ndarray | None  # the decoded --init image, if one was given
    config: StyleConfig
    regions: "Regions | None" = None  # the decoded region masks, if the config has a content mask
    temporal: "Temporal | None" = None  # a video frame's link to the previous one (jaxstyle.run.video)


@dataclass(frozen=True)
class Regions:
    """A job's region masks, decoded (``jaxstyle.losses.masks``): index maps and the colour of each region."""

    content: np.ndarray  # (H, W) int32 region of each pixel of the photo (at config.size)
    colours: list  # (R,) colour of each content region
    styles: list  # per style image: (H_s, W_s) index map at the painting's own size, or None (whole)
    style_colours: list  # per style image: its regions' colours, or None
    assigned: np.ndarray  # (R, S) bool: which paintings style each content region


@dataclass(frozen=True)
class Temporal:
    """A video frame's temporal term (Ruder et al. 2016): the previous output warped into this frame
    by the optical flow, where the flow is trusted, and the term's weight (0 for a first frame: the
    same compiled program runs every frame)."""

    target: np.ndarray  # (H, W, 3) in [0, 1]
    mask: np.ndarray  # (H, W) in [0, 1]
    weight: float


def _check_size(shape: tuple[int, ...], config: StyleConfig, what: str) -> None:
    if min(shape[:2]) < config.min_size:
        raise JaxstyleError(
            f"{what} is {shape[1]}x{shape[0]} px after resizing, too small for the layers used: "
            f"each side must be at least {config.min_size} px; raise --size (or --style-scale) or use shallower layers"
        )


def prepare(content: ImageLike | None, styles: ImageLike | Sequence[ImageLike], config: StyleConfig):
    """Load and check the images for ``config``.

    Returns:
      ``(content, styles)``: the content at ``config.size`` (long side, Lanczos) and the style
      images as loaded (each is resized once per scale, from this original, when used). Raises if
      any image is too small for the layers at the final scale.
    """
    if not isinstance(config, StyleConfig):
        raise JaxstyleError(f"config must be a jaxstyle.StyleConfig, not {type(config).__name__}; e.g. StyleConfig(size=512)")
    config.validate()
    if not type(config.loss).__module__.startswith("jaxstyle.losses."):  # the shipped ones are tested
        losses.check(config.loss)  # a loss of one's own that fails fails here, in one line, not minutes later
    memory.check_max_memory(config.memory_budget)
    if isinstance(styles, (str, bytes, os.PathLike, np.ndarray)):
        styles = [styles]
    styles = list(styles)
    if not styles and config.style_term_layers:
        raise JaxstyleError("no style image given; pass at least one")
    config.style_scales(len(styles))
    config.blend(len(styles))
    originals = [image_io.as_image(s, "style image") for s in styles]
    if content is None:  # texture synthesis: only the output's shape comes from the painting
        if config.content_layers or not originals:
            raise JaxstyleError("no content image given; pass one (only a texture, with no content layers, can do without)")
        if config.init == "content" or config.color != "none":
            raise JaxstyleError("without a content image the start must be noise (or an image) and --color none")
        content_original = np.full(originals[0].shape, 0.5, np.float32)
    else:
        content_original = image_io.as_image(content, "content image")
    shape = image_io.long_side_shape(content_original.shape, config.size)
    tile_plan(shape, config)  # refuses, before any resizing, a size that cannot fit even tiled
    content_arr = image_io.resize_long_side(content_original, config.size)
    _check_size(content_arr.shape, config, "the content image")
    for k, (s, scale) in enumerate(zip(originals, config.style_scales(len(originals)))):
        style_shape = image_io.long_side_shape(s.shape, max(1, round(config.size * scale)))
        what = f"style image {k + 1}" + (f" ({styles[k]})" if not isinstance(styles[k], np.ndarray) else "")
        _check_size(style_shape, config, what)
        planner.choose_plan(*style_shape, objective_spec(config).layers, max_memory=config.memory_budget,
                           what=f"{what} at --style-scale {scale:g}")
    return content_arr, originals


def prepare_job(job: Job) -> Prepared:
    """:func:`prepare`, colour control, the start image and the region masks, each file decoded once."""
    content, styles = prepare_colour(*prepare(job.content, job.styles, job.config), job.config)
    start = None if job.config.init in INITS else image_io.load_image(job.config.init)
    return Prepared(content, styles, start, job.config, load_regions(job.config, content, styles))


def _mask_index(path: str, shape: tuple[int, ...], what: str):
    index, colours = masks.regions(image_io.load_image(path), f"{what} {path}")
    if image_io.long_side_shape(index.shape, max(shape[:2])) != tuple(shape[:2]):
        image_io.warn_once(f"the {what} {path} is {index.shape[1]}x{index.shape[0]}, its image {shape[1]}x{shape[0]}: "
                           "resized to it (nearest neighbour), which stretches it")
    return image_io.resize_nearest(index, shape[:2]), colours


def load_regions(config: StyleConfig, content: np.ndarray, styles: Sequence[np.ndarray]) -> Regions | None:
    """The region masks of a job (``None`` without ``content_mask``), checked: one style mask per
    painting, every content region styled by at least one painting (same colour, or a painting
    without a mask)."""
    if config.content_mask is None:
        return None
    index, colours = _mask_index(config.content_mask, content.shape, "content mask")
    style_masks = config.style_masks or (None,) * len(styles)
    if len(style_masks) != len(styles):
        raise JaxstyleError(f"{len(style_masks)} style masks for {len(styles)} style images; give one per style image")
    indexes, style_colours = [], []
    for path, s in zip(style_masks, styles):
        found = (None, None) if path is None else _mask_index(path, s.shape, "style mask")
        indexes.append(found[0])
        style_colours.append(found[1])
    assigned = np.array([[sc is None or c in sc for sc in style_colours] for c in colours], bool).reshape(len(colours), -1)
    for r, c in enumerate(colours):
        if not assigned[r].any():
            raise JaxstyleError(f"region colour {c} of the content mask has no style: paint that colour in a style "
                                "mask, or add a style image without a mask")
    return Regions(index, colours, indexes, style_colours, assigned)


def styles_at(styles: Sequence[np.ndarray], size: int, config: StyleConfig) -> list[np.ndarray]:
    """Each style image at long side ``style_scale * size`` (Lanczos), from its original."""
    scales = config.style_scales(len(styles))
    return [image_io.resize_long_side(s, max(1, round(size * k))) for s, k in zip(styles, scales)]


def initial_image(config: StyleConfig, content: np.ndarray, start: np.ndarray | None = None) -> jax.Array:
    """The starting image: ``start`` when given (``config.init``'s file as decoded by
    :func:`prepare_job`, or a video frame's warped previous output), else the photo, white noise
    from ``config.seed``, or ``config.init``'s file."""
    if start is not None:
        return jnp.asarray(image_io.resize_exact(start, content.shape[:2]))
    if config.init == "content":
        return jnp.asarray(content)
    if config.init == "noise":
        uniform = jax.random.uniform(jax.random.key(config.seed), content.shape, jnp.float32)
        return uniform if config.noise_scale == 1 else 0.5 + config.noise_scale * (uniform - 0.5)
    return jnp.asarray(image_io.resize_exact(image_io.load_image(config.init), content.shape[:2]))


_NORMALIZED: dict = {}  # (weights' sha256, pooling) -> the normalised weights: calibration costs seconds


def calibration_images() -> list[np.ndarray]:
    """The images the normalised network is calibrated on: the bundled examples, long side 224 px."""
    from ..examples import CONTENT, STYLE

    return [image_io.load_image(p, 224) for p in (CONTENT, STYLE)]


def network(config: StyleConfig, weights: VGGWeights | None = None) -> VGGWeights:
    """The weights a run uses: given or bundled, normalised as in the paper if the config asks, with
    each layer's backward kernel precomputed (``vgg.with_backward_kernels``)."""
    weights = load_bundled() if weights is None else weights
    if config.normalize_vgg:
        key = (weights.sha256, config.pooling)
        if key not in _NORMALIZED:  # calibrate once per weights and pooling, on the bundled examples
            from ..model.normalize import normalize_vgg

            _NORMALIZED[key] = normalize_vgg(weights, calibration_images(), config.pooling)
        weights = _NORMALIZED[key]
    return dataclasses.replace(weights, params=vgg.with_backward_kernels(weights.params))


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


def images_at(content: np.ndarray, styles: Sequence[np.ndarray], size: int, config: StyleConfig):
    """The content (grey under luminance transfer) and styles for one scale, each resized once."""
    content_k = image_io.resize_long_side(content, size)
    if config.color == "luminance":
        content_k = color.luminance_image(content_k)
    return content_k, styles_at(styles, size, config)


def objective_spec(config: StyleConfig, regions: Regions | None = None, temporal: bool = False) -> objective.ObjectiveSpec:
    """The static part of a run's objective (layers, losses, pooling, normalisation) from its config."""
    return objective.ObjectiveSpec(
        temporal=temporal,
        regions=0 if regions is None else len(regions.colours),
        content_layers=tuple(config.content_layers),
        style_layers=tuple(config.style_term_layers),
        pooling=config.pooling,
        normalization=config.normalization,
        tv_kind=config.tv_kind,
        style_loss=config.loss,
    )


def tile_plan(shape: tuple[int, ...], config: StyleConfig) -> tiling.TilePlan | bands.BandPlan | None:
    """How an image of ``shape`` is evaluated under ``config``: whole (``None``), in streamed bands of
    rows (``jaxstyle.evaluate.bands``) or, for a loss of patches (MRF), in tiles
    (``jaxstyle.evaluate.tiling``); a loss that needs each layer whole is refused when the image
    does not fit whole."""
    spec = objective_spec(config)
    loss = spec.style_loss
    tile = 0 if loss.streaming == "whole" and config.tile is None else config.tile
    try:
        plan = planner.choose_plan(shape[0], shape[1], spec.layers, max_memory=config.memory_budget, tile=tile,
                                   margin=loss.margin(spec.style_layers), streamable=loss.streaming == "sums",
                                   whole=config.lbfgs_memory_for(planned=False),
                                   planned=config.lbfgs_memory_for(planned=True))
    except JaxstyleError as e:
        if loss.streaming != "whole" or config.tile is not None:
            raise
        raise JaxstyleError(f"the style loss {losses.label(config.style_loss)!r} needs each layer whole, and a "
                            f"{shape[1]}x{shape[0]} image does not fit in memory whole; lower --size, or use a loss "
                            "that streams (gram, wasserstein)") from e
    if plan is not None and loss.streaming == "whole":
        raise JaxstyleError(f"the style loss {losses.label(config.style_loss)!r} needs each layer whole: it cannot be "
                            "evaluated in tiles or bands; drop --tile, or use a loss that streams (gram, wasserstein)")
    if plan is not None and optimize.has_linesearch(config.optimizer, config.linesearch):
        raise JaxstyleError(
            f"a {shape[1]}x{shape[0]} image is evaluated tile by tile, and the L-BFGS line search "
            f"{config.linesearch!r} cannot run tiled: use --linesearch none (the default), or --tile 0 if it fits in memory"
        )
    return plan


def coefficients(config: StyleConfig, n_styles: int, regions: Regions | None = None) -> objective.LossWeights:
    """The traced weights of ``config``'s objective (with regions: each region's blend of the
    paintings assigned to it, renormalised)."""
    blend = np.asarray(config.blend(n_styles), np.float32).reshape(n_styles)
    if regions is None:
        region_blend = np.zeros((0, n_styles), np.float32)
    else:
        region_blend = regions.assigned * blend.reshape(1, -1)
        region_blend = region_blend / np.maximum(region_blend.sum(axis=1, keepdims=True), 1e-12)
    return objective.LossWeights(
        alpha=jnp.float32(config.content_weight),
        beta=jnp.float32(config.style_weight),
        tv=jnp.float32(config.tv_weight),
        content_layer_weights=jnp.asarray(layer_weights(config.content_layer_weights, len(config.content_layers)), jnp.float32),
        style_layer_weights=jnp.asarray(layer_weights(config.style_layer_weights, len(config.style_term_layers)), jnp.float32),
        style_blend_weights=jnp.asarray(blend),
        region_blend=jnp.asarray(region_blend, jnp.float32),
    )


def make_problem(weights: VGGWeights, content: np.ndarray, styles: Sequence[np.ndarray], config: StyleConfig,
                 tiles: tiling.TilePlan | bands.BandPlan | None = None, regions: Regions | None = None,
                 temporal: Temporal | None = None) -> objective.Problem:
    """The :class:`objective.Problem` of these images (one scale's) under ``config``.

    With a plan (bands or tiles), the targets are computed crop by crop (forward only), so a huge photo or
    painting never needs its whole activations at once. With ``regions``, the style targets are
    each region's guided Gram matrices (``jaxstyle.losses.masks``). With ``temporal`` (a video frame), its
    target and mask resized to this scale.
    """
    spec = objective_spec(config, regions, temporal is not None)
    problem = (_guided_problem(weights, content, styles, config, spec, regions, tiles) if regions is not None
               else _plain_problem(weights, content, styles, config, spec, tiles))
    if temporal is None:
        return problem
    shape = content.shape[:2]
    return problem.replace(temporal={
        "target": jnp.asarray(image_io.resize_exact(temporal.target, shape)),
        "mask": jnp.asarray(image_io.resize_exact(temporal.mask[..., None], shape)[..., 0]),
        "weight": jnp.float32(temporal.weight),
    })


def _plain_problem(weights, content, styles, config, spec, tiles) -> objective.Problem:
    """Targets without regions: the photo's features and each painting's style statistic."""
    style_tiles = [tiles.tile if tiles is not None else _style_tile(s.shape, config) for s in styles]
    if tiles is None and not any(style_tiles):
        targets = objective.make_targets(weights, jnp.asarray(content), [jnp.asarray(s) for s in styles], spec)
    else:
        if tiles is None:
            content_target = objective.image_features(weights, jnp.asarray(content), spec.content_layers, spec.pooling)
        else:
            content_target = tiling.features(weights, jnp.asarray(content), spec.content_layers, spec.pooling, tiles.tile)
        per_style = [_style_statistics(weights, jnp.asarray(s), spec, tile) for s, tile in zip(styles, style_tiles)]
        targets = objective.Targets(
            content=content_target,
            style={layer: spec.style_loss.stack([p[layer] for p in per_style]) for layer in spec.style_layers},
        )
    return objective.Problem(weights, targets, coefficients(config, len(styles)), spec)


def _style_statistics(weights: VGGWeights, style: jax.Array, spec: objective.ObjectiveSpec, tile: int | None) -> dict:
    """``{layer: objective.style_statistic}`` of one painting, crop by crop when ``tile`` is set."""
    if not tile:
        feats = objective.image_features(weights, style, spec.style_layers, spec.pooling)
    elif spec.style_loss.streaming == "sums":
        return tiling.style_statistics(weights, style, spec.style_layers, spec.pooling, spec.style_loss, tile)
    else:  # a loss of patches or of the whole layer: tile only the features (forward), then its target
        feats = tiling.features(weights, style, spec.style_layers, spec.pooling, tile)
    return {layer: objective.style_statistic(f, spec) for layer, f in feats.items()}


def _guided_problem(weights, content, styles, config, spec, regions: Regions, tiles) -> objective.Problem:
    """Targets with regions: for region r and painting k, the Gram of k's region of r's colour
    (the whole painting if k has no mask; a placeholder of weight zero if k does not style r).
    Crop by crop (forward only) when the output (``tiles``) or a painting needs tiling."""
    n = len(regions.colours)
    layers = spec.style_layers
    content_masks = _layer_masks(masks.one_hot(regions.content, n, content.shape[:2]), layers, config,
                                 regions.colours, "content mask")
    per_style = []
    for k, s in enumerate(styles):
        tile = tiles.tile if tiles is not None else _style_tile(s.shape, config)
        style_masks = None
        if regions.styles[k] is not None:
            index = image_io.resize_nearest(regions.styles[k], s.shape[:2])
            lookup = [regions.style_colours[k].index(c) if c in regions.style_colours[k] else -1 for c in regions.colours]
            own = np.stack([index == j for j in lookup]).astype(np.float32)  # (R, H, W); a row of zeros if absent
            present = np.asarray([r for r in range(n) if lookup[r] >= 0])
            style_masks = _layer_masks(own, layers, config, regions.colours, f"style mask {k + 1}", present)
        image = jnp.asarray(s)
        if tile:
            whole = tiling.style_statistics(weights, image, layers, spec.pooling, spec.style_loss, tile)
            guided = None if style_masks is None else tiling.style_statistics(weights, image, layers, spec.pooling,
                                                                              spec.style_loss, tile, style_masks)
        else:
            feats = objective.image_features(weights, image, layers, spec.pooling)
            whole = {layer: losses.gram(f) for layer, f in feats.items()}
            guided = None if style_masks is None else {layer: masks.guided_grams(feats[layer], style_masks[layer])
                                                       for layer in layers}
        if guided is None:
            per_style.append({layer: jnp.stack([g] * n) for layer, g in whole.items()})
            continue
        use = jnp.asarray(regions.assigned[:, k] & (np.asarray(lookup) >= 0)).reshape(n, 1, 1)
        per_style.append({layer: jnp.where(use, guided[layer], whole[layer]) for layer in layers})
    if tiles is None:
        content_target = objective.image_features(weights, jnp.asarray(content), spec.content_layers, spec.pooling)
    else:
        content_target = tiling.features(weights, jnp.asarray(content), spec.content_layers, spec.pooling, tiles.tile)
    targets = objective.Targets(
        content=content_target,
        style={layer: jnp.stack([p[layer] for p in per_style], axis=1) for layer in layers},  # (R, S, C, C)
    )
    return objective.Problem(weights, targets, coefficients(config, len(styles), regions), spec, content_masks)


def _layer_masks(one_hot: np.ndarray, layers, config: StyleConfig, colours, what: str, present=None) -> dict:
    """Region masks at each layer (``masks.layer_masks``), said once where an eroded region falls
    back to its downsampled mask, and checked: every region present keeps some mass at every layer."""
    out, replaced = masks.layer_masks(one_hot, layers, config.mask_propagation)
    present = np.arange(len(colours)) if present is None else present
    for r, layer in replaced:
        if r in present:
            image_io.warn_once(f"region colour {colours[r]} of the {what} is narrower than {layer}'s receptive field: "
                               f"its downsampled mask is used at {layer} (features there mix it with its neighbours)")
    masks.check_regions({layer: m[present] for layer, m in out.items()}, [colours[r] for r in present], what)
    return out


def _style_tile(shape: tuple[int, ...], config: StyleConfig) -> int | None:
    """Core size for a style image's statistics (forward only): ``None`` when it fits whole. A
    painting at a large ``style_scale`` can need tiling while the output does not."""
    if config.tile == 0:
        return None
    plan = planner.choose_plan(shape[0], shape[1], objective_spec(config).layers, max_memory=config.memory_budget,
                              what="a style image")
    return None if plan is None else plan.tile
