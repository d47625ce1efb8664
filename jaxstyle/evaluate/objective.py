"""The total objective ``alpha * L_content + beta * L_style (+ TV)`` as one named pytree, :class:`Problem`.

A :class:`Problem` holds everything the loss of an image depends on: the VGG weights, the
:class:`Targets` (the photo's features, the paintings' style statistics), the traced
:class:`LossWeights` (alpha, beta, layer and blend weights, TV weight: a sweep varies them without
recompiling) and the static :class:`ObjectiveSpec` (layers, pooling, normalisation, losses:
changing it recompiles). :func:`total_loss` ``(x, problem)`` is the function the optimizer minimises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp

from .. import losses
from ..losses import masks
from ..model import vgg
from ..model.weights import VGGWeights


@jax.tree_util.register_static
@dataclass(frozen=True)
class ObjectiveSpec:
    """Static structure of the objective; changing any field recompiles.

    Registered as a static pytree node: inside a pytree passed to ``jax.jit`` it is part of the
    cache key (hashed), not a traced leaf.
    """

    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    pooling: vgg.Pooling = "max"
    normalization: losses.Normalization = "relative"
    tv_kind: str = "l2"
    style_loss: losses.StyleLoss = losses.Gram()  # the style loss object (static: hashed into the compile key)
    regions: int = 0  # number of content regions (jaxstyle.losses.masks); 0: one global Gram per layer
    temporal: bool = False  # a video frame: Problem.temporal holds the warped previous frame (jaxstyle.run.video)

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.content_layers + self.style_layers))


@flax.struct.dataclass
class LossWeights:
    """Traced coefficients: changing them does not recompile."""

    alpha: jax.Array  # () content weight
    beta: jax.Array  # () style weight
    tv: jax.Array  # () total-variation weight
    content_layer_weights: jax.Array  # (len(spec.content_layers),)
    style_layer_weights: jax.Array  # (len(spec.style_layers),)
    style_blend_weights: jax.Array  # (S,) style-image weights, summing to one
    region_blend: jax.Array  # (R, S) weights of the style images in each region (rows sum to one); (0, S) unguided


@flax.struct.dataclass
class Targets:
    """What the image is pulled towards: the photo's features and the paintings' style statistics."""

    content: dict  # {layer: (H_l, W_l, C_l)}
    style: dict  # {layer: the style loss's target of each painting, stacked (StyleLoss.stack): (S, C_l, C_l)
    #               Grams, W2 moments, an mrf.PatchLibrary (S, N, P), …; with regions, each region's guided
    #               Gram of each painting: (R, S, C_l, C_l)}


def image_features(weights: VGGWeights, image: jax.Array, layers: Sequence[str], pooling: str = "max") -> dict:
    """VGG-19 features of an RGB image, with the weights' own preprocessing applied.

    Exported as ``jaxstyle.features``. Pure and jit-able (``layers`` and ``pooling`` static).

    Args:
      weights: a :class:`VGGWeights` (parameters plus their preprocessing).
      image: (H, W, 3) RGB in [0, 1].
      layers: names such as ``"relu4_2"`` (see ``jaxstyle.LAYERS``); computed up to the deepest.
      pooling: ``"max"`` or ``"avg"``.

    Returns:
      ``{layer: (H_l, W_l, C_l)}``.

    Examples:
      >>> import jax.numpy as jnp, jaxstyle
      >>> out = jaxstyle.features(jaxstyle.load_bundled(), jnp.zeros((32, 48, 3)), ["relu4_2"], "max")
      >>> out["relu4_2"].shape
      (4, 6, 512)
    """
    if not layers:
        return {}
    return vgg.features(weights.params, weights.preprocessing(image), layers, pooling=pooling)


def stack(trees):
    """Pytrees of equal structure stacked leaf by leaf on a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def stack_targets(targets: Sequence["Targets"], spec: ObjectiveSpec) -> "Targets":
    """Several jobs' targets stacked on a new leading axis; the style targets by the style loss
    (:meth:`~jaxstyle.losses.StyleLoss.stack`: MRF libraries of different lengths are padded)."""
    return Targets(content=stack([t.content for t in targets]),
                   style={layer: spec.style_loss.stack([t.style[layer] for t in targets]) for layer in targets[0].style})


def style_statistic(features: jax.Array, spec: ObjectiveSpec):
    """The target of one painting's layer under ``spec``'s style loss (its ``painting_target``)."""
    return spec.style_loss.painting_target(features)


@jax.jit
def make_targets(weights: VGGWeights, content: jax.Array, styles: Sequence[jax.Array], spec: ObjectiveSpec) -> Targets:
    """Content features and stacked style statistics (jitted). Style images may differ in size."""
    content_feats = image_features(weights, content, spec.content_layers, spec.pooling)
    per_style = [{k: style_statistic(v, spec) for k, v in image_features(weights, s, spec.style_layers, spec.pooling).items()}
                 for s in styles]
    style = {layer: spec.style_loss.stack([p[layer] for p in per_style]) for layer in spec.style_layers}
    return Targets(content=content_feats, style=style)


@flax.struct.dataclass
class Problem:
    """Everything the loss of an image depends on; the ``problem`` argument of :func:`total_loss`.

    ``weights`` are shared by every job of a batch; ``targets`` and ``coef`` get a leading batch
    axis when jobs are stacked (:func:`batch_axes`); ``spec`` is static.
    """

    weights: VGGWeights
    targets: Targets
    coef: LossWeights
    spec: ObjectiveSpec = flax.struct.field(pytree_node=False)
    masks: dict = flax.struct.field(default_factory=dict)  # {style layer: (R, H_l, W_l)} region masks, or {}
    # With spec.temporal (a video frame, Ruder et al. 2016): {"target": (H, W, 3) the previous output
    # warped by the flow, "mask": (H, W) where the flow is trusted, "weight": ()}; else {}
    temporal: dict = flax.struct.field(default_factory=dict)


def batch_axes(spec: ObjectiveSpec) -> Problem:
    """``vmap``'s ``in_axes`` for a stack of problems: weights shared, the rest per job."""
    return Problem(weights=None, targets=0, coef=0, spec=spec, masks=0, temporal=0)


def weighted_terms(content: Sequence[jax.Array], style: Sequence[jax.Array], x: jax.Array, coef: LossWeights,
                   spec: ObjectiveSpec, temporal: dict | None = None) -> dict:
    """The weighted terms (content, style, tv; temporal for a video frame) and their sum under
    ``"total"``, from the unweighted loss of each content layer and each style layer (in ``spec``'s
    order) of the image ``x``; ``temporal`` is :attr:`Problem.temporal`."""
    terms = {
        "content": coef.alpha * sum(coef.content_layer_weights[i] * c for i, c in enumerate(content)),
        "style": coef.beta * sum(coef.style_layer_weights[i] * s for i, s in enumerate(style)),
        "tv": coef.tv * losses.tv_loss(x, spec.tv_kind),
    }
    if spec.temporal:
        terms["temporal"] = temporal["weight"] * losses.temporal_loss(x, temporal["target"], temporal["mask"])
    terms["total"] = sum(terms.values())
    return terms


def loss_terms(x: jax.Array, problem: Problem) -> dict:
    """Weighted loss terms of image ``x`` ((H, W, 3) RGB in [0, 1]) and their sum under ``"total"``."""
    spec, targets = problem.spec, problem.targets
    feats = image_features(problem.weights, x, spec.layers, spec.pooling)
    content = [losses.content_loss(feats[layer], targets.content[layer], spec.normalization)
               for layer in spec.content_layers]
    if spec.regions:  # guided Grams (Gatys et al. 2017): each region against its own style regions
        style = [guided_style_loss(masks.guided_grams(feats[layer], problem.masks[layer]), targets.style[layer],
                                   problem.coef.region_blend, spec.normalization)
                 for layer in spec.style_layers]
    else:
        style = [spec.style_loss.layer_loss(feats[layer], targets.style[layer], problem.coef.style_blend_weights,
                                            spec.normalization)
                 for layer in spec.style_layers]
    return weighted_terms(content, style, x, problem.coef, spec, problem.temporal)


def guided_style_loss(grams: jax.Array, targets: jax.Array, region_blend: jax.Array, normalization) -> jax.Array:
    """One layer's style term with regions: the mean over regions of each region's guided Gram
    (``grams`` (R, C, C), ``masks.guided_grams``, whole or tiled) against its paintings' regions
    (``targets`` (R, S, C, C), weights ``region_blend`` (R, S))."""
    per_region = jax.vmap(losses.Gram().blended, in_axes=(0, 0, 0, None))(grams, targets, region_blend, normalization)
    return jnp.mean(per_region)


def total_loss(x: jax.Array, problem: Problem) -> jax.Array:
    """The objective at ``x``: what the optimizer minimises. Pure and jit-able."""
    return loss_terms(x, problem)["total"]

