"""A style loss as one object: what it keeps of a painting, how far an image is from it, and how it is evaluated.

Every style loss (Gram matrices, Wasserstein-2, MRF patches, sliced Wasserstein, histograms, or a
researcher's own) is a frozen dataclass subclassing :class:`StyleLoss`, registered by name with
:func:`register`. The objective, the tiled and banded evaluators, the problem builder and the
configuration ask the object; nothing else compares loss names.

A loss is static: part of the compiled program (hashed and compared by ``jax.jit``), so its fields
are hyperparameters such as a patch size, never arrays.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp

from ..errors import JaxstyleError

STREAMING = ("sums", "patches", "whole")
"""How a loss's statistic comes from the positions of a layer, which decides its evaluators:

* ``"sums"``: sums over positions (``parts``/``combine``); tiles and streamed bands give the
  whole image's loss exactly.
* ``"patches"``: each output patch on its own (the MRF loss); tiles with a halo of one patch radius
  are exact, bands (whose rows straddle patches) are not used.
* ``"whole"``: needs the whole layer at once (sorting, histograms); evaluated whole only, and an
  image too large for that is refused in one line naming the loss.
"""


@dataclasses.dataclass(frozen=True)
class StyleLoss:
    """The interface of a style loss; subclass it as a frozen dataclass and :func:`register` it.

    Required: :meth:`statistic` and :meth:`distance`. The class attributes declare what it supports.

    Shapes: ``features`` is one layer's (H, W, C) activations; a painting's *target* is whatever
    :meth:`target` returns (a pytree); several paintings' targets are stacked on a leading axis S by
    :meth:`stack`, and the layer's term weighs them by ``blend`` (S,), summing to one.
    """

    name: ClassVar[str] = ""
    guided: ClassVar[bool] = False  # region masks apply (guided statistics per region, Gatys et al. 2017)
    streaming: ClassVar[str] = "whole"  # see STREAMING
    batchable: ClassVar[bool] = True  # jobs with this loss may share one vmapped batch

    @classmethod
    def from_config(cls, config) -> "StyleLoss":
        """The loss as a :class:`~jaxstyle.StyleConfig` names it (override to read loss options)."""
        return cls()

    def layers(self, config) -> tuple[str, ...]:
        """The layers the style term reads (default ``config.style_layers``)."""
        return tuple(config.style_layers)

    def min_size(self, layers) -> int:
        """The smallest image side these layers allow (default: one position at the deepest)."""
        from ..model.vgg import min_image_size

        return min_image_size(layers)

    def margin(self, layers) -> int:
        """Extra input pixels a tile's crop needs beyond the receptive field (``"patches"`` losses)."""
        return 0

    # --- what is compared -------------------------------------------------------------------------

    def statistic(self, features: jax.Array):
        """The statistic of one layer's (H, W, C) features that the loss compares."""
        raise NotImplementedError(f"{type(self).__name__} must define statistic(features)")

    def target(self, statistic):
        """A painting's statistic as stored for the run (computed once; default: as it is)."""
        return statistic

    def painting_target(self, features: jax.Array):
        """The target of one painting's layer from its features (default ``target(statistic(f))``)."""
        return self.target(self.statistic(features))

    def stack(self, targets):
        """Several paintings' (or jobs') targets stacked on a new leading axis."""
        return jax.tree.map(lambda *xs: jnp.stack(xs), *targets)

    def distance(self, statistic, target, normalization: str) -> jax.Array:
        """The loss between the image's statistic and one painting's target: a scalar."""
        raise NotImplementedError(f"{type(self).__name__} must define distance(statistic, target, normalization)")

    def layer_loss(self, features: jax.Array, targets, blend: jax.Array, normalization: str) -> jax.Array:
        """One layer's style term against S paintings: their distances weighted by ``blend`` (S,)."""
        statistic = self.statistic(features)
        return self.blended(statistic, targets, blend, normalization)

    def blended(self, statistic, targets, blend: jax.Array, normalization: str) -> jax.Array:
        """``sum_s blend_s distance(statistic, targets[s])``."""
        per_painting = jax.vmap(self.distance, in_axes=(None, 0, None))(statistic, targets, normalization)
        return jnp.dot(blend, per_painting)

    # --- tiles and bands (streaming "sums" or "patches") --------------------------------------------

    def parts(self, features: jax.Array, owned: jax.Array, targets) -> dict:
        """This window's share of the layer's statistic: ``features`` (h, w, C) of a window of the
        image, ``owned`` (h, w, 1) 0/1 marking the positions the window owns."""
        raise JaxstyleError(f"the style loss {self.name or type(self).__name__!r} cannot be evaluated tile by tile")

    def combine(self, parts: dict, positions):
        """The layer's statistic from every window's parts, stacked on axis 0 (``positions``: the
        layer's number of positions)."""
        raise JaxstyleError(f"the style loss {self.name or type(self).__name__!r} cannot be evaluated tile by tile")

    def loss_from_parts(self, parts: dict, targets, blend: jax.Array, normalization: str, layer_shape) -> jax.Array:
        """The layer's term from every window's parts (stacked on axis 0), ``layer_shape`` (H_l, W_l)."""
        positions = layer_shape[0] * layer_shape[1]
        return self.blended(self.combine(parts, positions), targets, blend, normalization)


_REGISTRY: dict[str, type[StyleLoss]] = {}


def register(cls: type[StyleLoss]) -> type[StyleLoss]:
    """Register a :class:`StyleLoss` subclass under its ``name`` (a class decorator); the name is then
    accepted by ``--style-loss``, ``StyleConfig(style_loss=...)`` and sweep specs."""
    if not (isinstance(cls, type) and issubclass(cls, StyleLoss)) or not cls.name:
        raise JaxstyleError(f"register() takes a StyleLoss subclass with a `name`, not {cls!r}")
    if cls.streaming not in STREAMING:
        raise JaxstyleError(f"style loss {cls.name!r}: `streaming` (={cls.streaming!r}) must be one of {', '.join(STREAMING)}")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> tuple[str, ...]:
    """The registered style losses' names, in registration order."""
    return tuple(_REGISTRY)


def get(name: str) -> type[StyleLoss]:
    """The registered class of ``name``; one line listing the registered names otherwise."""
    if name not in _REGISTRY:
        raise JaxstyleError(f"unknown style loss {name!r}; choose one of {', '.join(_REGISTRY)} (or register your own: "
                            "jaxstyle.losses.register)")
    return _REGISTRY[name]


def resolve(style_loss, config=None) -> StyleLoss:
    """The loss object of a config's ``style_loss``: an instance as it is, a name through the registry."""
    if isinstance(style_loss, StyleLoss):
        return style_loss
    if isinstance(style_loss, str):
        cls = get(style_loss)
        return cls.from_config(config) if config is not None else cls()
    raise JaxstyleError(f"`style_loss` (={style_loss!r}) must be a registered name ({', '.join(_REGISTRY)}) or a "
                        "jaxstyle.losses.StyleLoss instance")


def label(style_loss) -> str:
    """A loss's name for messages and records: the registered name, else the class name."""
    return style_loss if isinstance(style_loss, str) else (style_loss.name or type(style_loss).__name__)


@functools.lru_cache(maxsize=64)
def check(loss: StyleLoss, channels: int = 8) -> None:
    """Try a loss on small random features before a run spends minutes: its statistic and target,
    a finite scalar distance (zero at the painting's own statistic is not required), and a finite
    gradient. Raises :class:`JaxstyleError` naming the loss and the problem."""
    what = f"style loss {label(loss)!r}"
    key = jax.random.PRNGKey(0)
    f = jax.nn.relu(jax.random.normal(key, (6, 5, channels)))
    g = jax.nn.relu(jax.random.normal(jax.random.PRNGKey(1), (6, 5, channels)))
    try:
        try:
            single = loss.distance(loss.statistic(f), loss.painting_target(g), "relative")
        except NotImplementedError:  # a loss that defines layer_loss itself (MRF) needs neither
            single = jnp.zeros(())
        if jnp.shape(single) != ():
            raise JaxstyleError(f"{what}: distance must return a scalar, got shape {jnp.shape(single)}")
        targets = loss.stack([loss.painting_target(g)])
        value, grad = jax.value_and_grad(lambda x: loss.layer_loss(x, targets, jnp.ones((1,)), "relative"))(f)
    except JaxstyleError:
        raise
    except Exception as e:  # noqa: BLE001 - a user's code can fail in any way: one line naming it
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise JaxstyleError(f"{what} failed on test features ({type(e).__name__}: {first}); fix its statistic, "
                            "target or distance") from None
    if not bool(jnp.isfinite(value)):
        raise JaxstyleError(f"{what} returned {float(value)} on test features; it must be finite")
    if not bool(jnp.all(jnp.isfinite(grad))):
        raise JaxstyleError(f"{what} has a non-finite gradient on test features; make it differentiable")


# --- the loss of a registered name, as plain functions --------------------------------------------

def style_statistic(features: jax.Array, kind: str = "gram"):
    """A painting's target at one layer under the registered loss ``kind`` (its ``painting_target``)."""
    return get(kind)().painting_target(features)


def style_target(statistic, kind: str = "gram"):
    """A statistic (summed whole or tile by tile) as the target of the registered loss ``kind``."""
    return get(kind)().target(statistic)


def style_loss(features: jax.Array, targets, blend: jax.Array, normalization: str = "relative",
               kind: str = "gram") -> jax.Array:
    """One layer's style term of the registered loss ``kind`` against S paintings (``targets``
    stacked on a leading axis, ``blend`` (S,) summing to one)."""
    return get(kind)().layer_loss(features, targets, blend, normalization)


def style_loss_of_statistic(statistic, targets, blend: jax.Array, normalization: str = "relative",
                            kind: str = "gram") -> jax.Array:
    """:func:`style_loss` from the image's statistic, however it was summed (whole or tiled)."""
    return get(kind)().blended(statistic, targets, blend, normalization)
