"""The total objective ``alpha * L_content + beta * L_style (+ TV)``: targets computed once, a pure loss.

Static choices (layers, pooling, normalisation) live in :class:`ObjectiveSpec`; everything a sweep
may vary without recompiling (alpha, beta, layer weights, blend weights, TV weight) is traced in
:class:`LossWeights`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp

from . import losses, vgg
from .weights import VGGWeights


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
    style_loss: str = "gram"

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.content_layers + self.style_layers))


@flax.struct.dataclass
class LossWeights:
    """Traced coefficients: changing them does not recompile."""

    alpha: jax.Array  # () content weight
    beta: jax.Array  # () style weight
    tv: jax.Array  # () total-variation weight
    content_layers: jax.Array  # (len(spec.content_layers),)
    style_layers: jax.Array  # (len(spec.style_layers),)
    blend: jax.Array  # (S,) style-image weights, summing to one


@flax.struct.dataclass
class Targets:
    """What the image is pulled towards: the photo's features and the paintings' style statistics."""

    content: dict  # {layer: (H_l, W_l, C_l)}
    style: dict  # {layer: losses.style_statistic of each painting, stacked: (S, C_l, C_l) Grams, …}


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


@jax.jit
def make_targets(weights: VGGWeights, content: jax.Array, styles: Sequence[jax.Array], spec: ObjectiveSpec) -> Targets:
    """Content features and stacked style statistics (jitted). Style images may differ in size."""
    content_feats = image_features(weights, content, spec.content_layers, spec.pooling)
    per_style = [
        {k: losses.style_statistic(v, spec.style_loss)
         for k, v in image_features(weights, s, spec.style_layers, spec.pooling).items()}
        for s in styles
    ]
    style = {layer: stack([p[layer] for p in per_style]) for layer in spec.style_layers}
    return Targets(content=content_feats, style=style)


def loss_terms(x: jax.Array, weights: VGGWeights, targets: Targets, coef: LossWeights, spec: ObjectiveSpec) -> dict:
    """Weighted loss terms of image ``x`` ((H, W, 3) RGB in [0, 1]) and their sum under ``"total"``."""
    feats = image_features(weights, x, spec.layers, spec.pooling)
    content = sum(
        coef.content_layers[i] * losses.content_loss(feats[layer], targets.content[layer], spec.normalization)
        for i, layer in enumerate(spec.content_layers)
    )
    style = sum(
        coef.style_layers[i]
        * losses.style_loss(feats[layer], targets.style[layer], coef.blend, spec.normalization, spec.style_loss)
        for i, layer in enumerate(spec.style_layers)
    )
    terms = {
        "content": coef.alpha * content,
        "style": coef.beta * style,
        "tv": coef.tv * losses.tv_loss(x, spec.tv_kind),
    }
    terms["total"] = terms["content"] + terms["style"] + terms["tv"]
    return terms


def total_loss(x, weights, targets, coef, spec) -> jax.Array:
    return loss_terms(x, weights, targets, coef, spec)["total"]
