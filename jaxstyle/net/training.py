"""Training the network (Johnson et al. 2016): jaxstyle's objective as a loss over batches of photos, Adam.

The loss of a network on a photo is :func:`jaxstyle.evaluate.objective.loss_terms` of its output,
with the photo's own VGG features as the content target and the painting's style statistics as the
style target: the objective that ``stylize`` minimises over pixels, here minimised over the
network's parameters, averaged over a batch. Several networks (other paintings, other weights) train
as one vmapped program on the same batches (:func:`train_many`).

Resumable: every ``checkpoint_every`` steps (and on Ctrl-C) the parameters, Adam's state and the loss
history are written atomically to ``OUTPUT.checkpoint``; batches are a pure function of the seed and
the step (``jaxstyle.net.data``), so the same command after a kill resumes at the last checkpoint and
ends with the same network as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import interrupt
from ..config import StyleConfig
from ..errors import JaxstyleError
from ..evaluate import objective
from ..io import color
from ..io import image as image_io
from ..model.weights import VGGWeights, load_bundled, sha256_file
from ..run import problem as problem_lib
from . import checkpoint, data, store, transformer
from .checkpoint import TERMS
from .inference import apply as apply_network
# The objective's options (StyleConfig fields) that mean something for a network; the others (size,
# steps, optimizer, init, scales, tiling, masks) belong to optimising one image.
STYLE_OPTIONS = ("content_weight", "style_weight", "tv_weight", "tv_kind", "pooling", "content_layers", "style_layers",
                 "content_layer_weights", "style_layer_weights", "normalization", "style_loss", "mrf_layers",
                 "histogram_weight", "mrf_patch_size", "mrf_stride", "style_blend_weights", "style_scale", "color",
                 "normalize_vgg")


def option(default, help: str, metavar: str | None = None):
    """A :class:`TrainConfig` field with its command-line help, declared once (``jaxstyle train --NAME``)."""
    return dataclasses.field(default=default, metadata={"help": help, "metavar": metavar})


@dataclass(frozen=True)
class TrainConfig:
    """Options of training a network; the objective's options are ``style``'s.

    Attributes:
      style: the objective: content, style and TV weights, layers, style loss, ``style_scale`` (the
        painting's long side is ``style_scale * crop``), ``color`` (``"none"``, or ``"luminance"``:
        the network learns the painting's luminance and keeps each photo's colours), normalisation.
      crop: side of the square training crops, px (Johnson et al.: 256).
      batch: photos per step (Johnson et al.: 4).
      steps: Adam steps.
      learning_rate: Adam's step size (Johnson et al.: 1e-3).
      width: channels of the network's first layer (32: Johnson et al.'s; 16 or 8: smaller, faster).
      seed: the network's initial parameters and the order and crops of the photos.
      checkpoint_every: write a resumable checkpoint every this many steps (0: only on Ctrl-C).
      preview_every: stylise the held-out preview photo every this many steps (0: only at the end).
      preview_size: long side of the preview, px.
    """

    style: StyleConfig = dataclasses.field(default=StyleConfig(), metadata={"help": None})
    crop: int = option(256, "side of the square training crops, px", "PX")
    batch: int = option(4, "photos per step", "N")
    steps: int = option(2000, "Adam steps", "N")
    learning_rate: float = option(1e-3, "Adam's step size")
    width: int = option(transformer.WIDTH, "channels of the network's first layer (32: Johnson et al.; 16, 8: "
                        "smaller and faster)", "N")
    seed: int = option(0, "seed of the initial network and of the photos' order and crops", "N")
    checkpoint_every: int = option(100, "write a resumable checkpoint every N steps (0: only on Ctrl-C)", "N")
    preview_every: int = option(100, "stylise the preview photo every N steps (0: only at the end)", "N")
    preview_size: int = option(512, "long side of the preview, px", "PX")

    def validate(self) -> "TrainConfig":
        for name, low in (("crop", 16), ("batch", 1), ("steps", 1), ("width", 1), ("preview_size", 16),
                          ("checkpoint_every", 0), ("preview_every", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise JaxstyleError(f"--{name.replace('_', '-')} (={value!r}) must be a whole number >= {low}")
        if self.crop % transformer.MULTIPLE:
            raise JaxstyleError(f"--crop (={self.crop}) must be a multiple of {transformer.MULTIPLE}, e.g. 256")
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1):
            raise JaxstyleError(f"--learning-rate (={self.learning_rate!r}) must be in (0, 1), e.g. 0.001")
        style = self.style.validate()
        if style.content_mask is not None or style.style_masks:
            raise JaxstyleError("region masks (--content-mask, --style-masks) belong to one photo: a network for "
                                "every photo cannot use them; drop them")
        if style.color == "histogram":
            raise JaxstyleError("--color histogram recolours the painting to one photo; a network trained on many "
                                "cannot: train with --color none or luminance, and use --color histogram with apply")
        if not style.content_layers:
            raise JaxstyleError("a network needs a content term (--content-layers): without it the output ignores "
                                "the photo")
        if self.crop < style.min_size:
            raise JaxstyleError(f"--crop {self.crop} is too small for the layers used: at least {style.min_size} px")
        return self


@dataclass(frozen=True)
class TrainProgress:
    """What the progress callback receives after each step; shaped like ``stylize``'s ``Progress``,
    so :func:`jaxstyle.notebook.live` previews a training too."""

    step: int  # steps done
    steps: int  # steps in all
    loss: float  # this step's batch mean of the total loss (of the first network)
    images_per_second: float  # photos per second over this process's steps after the first
    waited: float  # seconds the device waited for photos, in all
    elapsed: float  # seconds since this process's first step
    _terms: dict = dataclasses.field(repr=False, default_factory=dict)
    _preview: Callable = dataclasses.field(repr=False, default=lambda: None)

    def terms(self) -> dict:
        """This step's batch means: ``{"total", "content", "style", "tv"}``."""
        return self._terms

    def image(self) -> np.ndarray:
        """The preview photo through the network as it is now (computed when asked)."""
        return self._preview()


@dataclass(frozen=True)
class Variant:
    """One network of a :func:`train_many`: its painting(s), objective and output file."""

    styles: tuple  # painting paths or arrays (several are blended, as in stylize)
    style: StyleConfig
    output: Path


def _painting(source) -> tuple[np.ndarray, str]:
    if isinstance(source, np.ndarray):
        return image_io.image_array(source, "style image"), hashlib.sha256(np.ascontiguousarray(source)).hexdigest()
    return image_io.load_image(source), sha256_file(source)


def training_key(config: TrainConfig, variants: Sequence[Variant], hashes, photos: data.Photos, weights_sha: str) -> str:
    """A hash of everything the trained parameters depend on: not the number of steps (step ``t`` does
    not depend on how many follow it, so a stopped training may be resumed with a larger ``--steps``),
    nor the checkpoint and preview cadence."""
    common = dataclasses.asdict(dataclasses.replace(config, steps=1, checkpoint_every=0, preview_every=0,
                                                    preview_size=16, style=StyleConfig()))
    text = json.dumps({"config": common, "variants": [dataclasses.asdict(v.style) for v in variants],
                       "styles": hashes, "photos": [[n, s] for n, s in zip(photos.names, photos.sizes)],
                       "weights": weights_sha}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def painting_problem(weights: VGGWeights, paintings: list[np.ndarray], style: StyleConfig, crop: int) -> objective.Problem:
    """The objective of one network: the painting(s) at ``style_scale * crop``; content targets come per batch."""
    spec = problem_lib.objective_spec(style)
    scaled = problem_lib.styles_at(paintings, crop, style)
    if style.color == "luminance":
        scaled = [color.luminance_image(s) for s in scaled]
    targets = objective.make_targets(weights, jnp.zeros((crop, crop, 3)), [jnp.asarray(s) for s in scaled], spec)
    return objective.Problem(weights, objective.Targets(content={}, style=targets.style),
                             problem_lib.coefficients(style, len(paintings)), spec)


def _features(problem: objective.Problem, photos: jax.Array) -> dict:
    spec = problem.spec
    return jax.vmap(lambda p: objective.image_features(problem.weights, p, spec.content_layers, spec.pooling))(photos)


def batch_loss(params: dict, photos: jax.Array, problem: objective.Problem) -> tuple[jax.Array, dict]:
    """The network's loss on a batch (N, H, W, 3): the mean over photos of the objective's terms of
    its output, each photo its own content target. Returns ``(total, terms)``."""
    out = transformer.forward(params, photos)
    content = jax.lax.stop_gradient(_features(problem, photos))

    def one(x, target):
        return objective.loss_terms(x, problem.replace(targets=problem.targets.replace(content=target)))

    terms = jax.vmap(one)(out, content)
    terms = {k: jnp.mean(terms.get(k, jnp.zeros(()))) for k in TERMS}
    return terms["total"], terms


@partial(jax.jit, donate_argnums=(0, 1))
def train_step(params, adam_state, photos, problem, learning_rate):
    """One Adam step of every network (leading axis of ``params``, ``adam_state``, ``problem``) on
    the same batch. Returns ``(params, adam_state, terms)``, terms (networks,) each."""
    adam = optax.scale_by_adam()

    def one(params, adam_state, problem):
        (_, terms), grads = jax.value_and_grad(batch_loss, has_aux=True)(params, photos, problem)
        with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
            updates, adam_state = adam.update(grads, adam_state, params)
        params = jax.tree.map(lambda p, u: p - learning_rate * u, params, updates)
        return params, adam_state, terms

    return jax.vmap(one, in_axes=(0, 0, objective.batch_axes(problem.spec)))(params, adam_state, problem)


def train_many(variants: Sequence[Variant], photos, config: TrainConfig = TrainConfig(), *,
               weights: VGGWeights | None = None, preview=None,
               progress: Callable[[TrainProgress], None] | None = None) -> list[store.Network]:
    """Train one network per variant, together (one vmapped program, the same batches), resumably.

    Variants must share the compiled structure of their objective (layers, style loss, pooling,
    normalisation) and their number of paintings; weights, paintings and ``style_scale`` may differ.

    Returns:
      The trained networks, each also written to its variant's output.
    """
    config = config.validate()
    if not variants:
        raise JaxstyleError("no network to train; give at least one painting")
    styles = [v.style.validate() for v in variants]
    spec = problem_lib.objective_spec(styles[0])
    for v in variants:
        if (problem_lib.objective_spec(v.style) != spec or len(v.styles) != len(variants[0].styles)
                or v.style.color != styles[0].color):
            raise JaxstyleError("networks trained together must share layers, style loss, pooling, normalisation, "
                                "colour mode and their number of paintings; train the others separately")
        if not v.styles:
            raise JaxstyleError("no style image given; pass at least one")
    found = data.scan(photos, config.crop)
    vgg = problem_lib.network(styles[0], weights)
    loaded = [[_painting(s) for s in v.styles] for v in variants]
    hashes = [[h for _, h in paintings] for paintings in loaded]
    key = training_key(config, variants, hashes, found, vgg.sha256)
    problems = [painting_problem(vgg, [p for p, _ in paintings], v.style, config.crop) for v, paintings in zip(variants, loaded)]
    problem = objective.Problem(vgg, objective.stack_targets([p.targets for p in problems], spec),
                                objective.stack([p.coef for p in problems]), spec)
    keys = jnp.stack([jax.random.fold_in(jax.random.key(config.seed), n) for n in range(len(variants))])
    params = jax.vmap(lambda k: transformer.init(k, config.width))(keys)
    adam_state = jax.vmap(optax.scale_by_adam().init)(params)
    ckpt = checkpoint.file_of(variants[0].output)
    header = {"architecture": transformer.ARCHITECTURE, "width": config.width, "networks": len(variants),
              "seed": config.seed}  # the random state: batch t and the initial parameters follow from it
    resumed = checkpoint.load(ckpt, key, params, adam_state)
    start, history = 0, []
    if resumed is not None:
        start, params, adam_state, history = resumed
        if start >= config.steps:
            raise JaxstyleError(f"{str(ckpt)!r} is at step {start}, past --steps {config.steps}: give --steps {start} "
                                "or more to finish it (or delete it to start again)")
    preview_image = image_io.resize_long_side(
        image_io.as_image(_default_preview() if preview is None else preview, "preview photo"), config.preview_size)
    luminance = styles[0].color == "luminance"
    lr = jnp.float32(config.learning_rate)
    feed = data.Prefetch(found, start, config.steps, config.batch, config.crop, config.seed)
    images, t0, step = 0, time.perf_counter(), start

    def networks():
        return [store.Network(jax.tree.map(lambda a, n=n: np.asarray(a[n]), params),
                              _header(config, v, h, found, key, step)) for n, (v, h) in enumerate(zip(variants, hashes))]

    def keep():
        checkpoint.save(ckpt, key, step, params, adam_state, history, header)
        checkpoint.write_curve(checkpoint.curve_path(variants[0].output), history)

    try:
        for step_index, photos_batch in feed:
            interrupt.check()
            batch = jnp.asarray(color.luminance_image(photos_batch) if luminance else photos_batch)
            with interrupt.deferred():  # a signal lands before or after a step and its record, never between
                params, adam_state, terms = train_step(params, adam_state, batch, problem, lr)
                step = step_index + 1
                history.append(np.stack([np.asarray(terms[k]) for k in TERMS], axis=-1))
            interrupt.check()
            if step == start + 1:  # the clock starts after the first step, which compiles
                t0 = time.perf_counter()
            else:
                images += config.batch
            if progress is not None:
                now = {k: float(terms[k][0]) for k in TERMS}
                elapsed = time.perf_counter() - t0
                progress(TrainProgress(step, config.steps, now["total"], images / elapsed if images else 0.0,
                                       feed.waited, elapsed, now, lambda: apply_network(networks()[0], preview_image)))
            if not np.all(np.isfinite(history[-1])):
                raise JaxstyleError(f"the loss became {history[-1][0][0]} at step {step}; lower --learning-rate "
                                    "or the weights")
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.steps:
                keep()
            if config.preview_every and step % config.preview_every == 0 and step < config.steps:
                _previews(networks(), variants, preview_image)
    except KeyboardInterrupt:
        if step > start:
            keep()
            interrupt.keep(f"a checkpoint at step {step} in {ckpt} (run the same command again to resume)")
        raise
    finally:
        feed.close()
    if feed.broken:
        image_io.warn_once(f"{len(feed.broken)} photo(s) failed to decode and were skipped: "
                           + ", ".join(sorted(p.name for p in feed.broken)[:3]))
    done = networks()
    for network, v in zip(done, variants):
        store.save(v.output, network)
    _previews(done, variants, preview_image)
    checkpoint.write_curve(checkpoint.curve_path(variants[0].output), history)
    ckpt.unlink(missing_ok=True)
    return done


def _default_preview():
    from ..examples import CONTENT

    return CONTENT


def _previews(networks, variants, photo: np.ndarray) -> None:
    for network, v in zip(networks, variants):
        image_io.save_image(apply_network(network, photo), checkpoint.preview_path(v.output))


def _header(config: TrainConfig, variant: Variant, hashes, photos: data.Photos, key: str, step: int) -> dict:
    return {"training": {
        "key": key, "steps": step, "crop": config.crop, "batch": config.batch, "learning_rate": config.learning_rate,
        "seed": config.seed, "photos": len(photos.paths), "style_sha256": hashes,
        "styles": [Path(s).name if isinstance(s, (str, os.PathLike)) else "array" for s in variant.styles],
        "style": json.loads(json.dumps(dataclasses.asdict(variant.style), default=str)),
    }}


def train(styles, photos, output: str | os.PathLike, config: TrainConfig = TrainConfig(), *,
          weights: VGGWeights | None = None, preview=None,
          progress: Callable[[TrainProgress], None] | None = None) -> store.Network:
    """Train a network that gives photos the style of ``styles`` (a painting's path or array, or several,
    blended) and write it to ``output``; resumes from ``OUTPUT.checkpoint`` if a run was stopped.

    Args:
      styles: the painting (path or (H, W, 3) array in [0, 1]), or a list of them.
      photos: a folder of photos (searched recursively) or a list of photo files.
      output: the network file to write (``.safetensors``).
      config: a :class:`TrainConfig`.
      weights: VGG-19 weights (default: the bundled ones).
      preview: the held-out photo stylised every ``preview_every`` steps into ``OUTPUT.preview.png``
        (default: the bundled example photo).
      progress: called with a :class:`TrainProgress` after every step.

    Returns:
      The trained :class:`~jaxstyle.net.store.Network`.
    """
    styles = (styles,) if isinstance(styles, (str, os.PathLike, np.ndarray)) else tuple(styles)
    return train_many([Variant(styles, config.style, Path(output))], photos, config, weights=weights,
                      preview=preview, progress=progress)[0]
