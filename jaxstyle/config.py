"""StyleConfig: every option of a run and its default, the single source for API, CLI and docs.

Over 400 lines: every option is declared here once, with its documentation, its CLI help and its
check, so that the API, the command line, sweeps and the docs all read one source.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from .io import color
from .optim import lbfgs, optimize, precondition
from . import losses
from .model import vgg
from .errors import JaxstyleError

INITS = ("content", "noise")
HISTORY_CHOICES = ("auto",) + lbfgs.DTYPES  # lbfgs_history: auto picks by the evaluation
FLOAT32_MAX = 3.4e38
MAX_SCALES = 16
MAX_LBFGS_MEMORY = 1000  # pairs: 24 KB per pixel in float32
MAX_SIZE = 1 << 16  # 65536 px on the long side: about 3 gigapixels, 1.2 TB of image-sized state
WEIGHT_LIMIT = 1e20  # a weight times a loss term must stay far inside float32's range
_SEQUENCE_FIELDS = ("content_layers", "style_layers", "content_layer_weights", "style_layer_weights",
                    "style_blend_weights", "style_masks", "mrf_layers")
MAX_MRF_PATCH = 7
AUTO_SCALES_ABOVE = 1024  # automatic coarse-to-fine (scales=0) above this long side
AUTO_COARSEST = 512
AUTO_MIN_STEPS = 10
STOP_WINDOW = 10  # steps over which `tolerance` judges the loss's fall


KINDS = {
    "compiled": "recompiles",  # part of the compiled program (shapes, layers, losses, optimizer)
    "shared": "new sweep group",  # no recompilation, but one batch runs it together
    "per_job": "free",  # differs freely between the jobs of one compiled batch
}


def option(default, help: str, kind: str, *, choices=None, shown: str | None = None, metavar: str | None = None,
           flag: bool = True):
    """A :class:`StyleConfig` field with its metadata, declared once: the CLI flag (``--name-with-dashes``
    unless ``flag`` is false), its help, choices and shown default, and its ``kind`` (see ``KINDS``)."""
    assert kind in KINDS, kind
    return dataclasses.field(default=default, metadata={
        "help": help, "kind": kind, "choices": choices, "shown": shown, "metavar": metavar, "flag": flag})


def options() -> tuple[dataclasses.Field, ...]:
    """The fields of :class:`StyleConfig`, each with its metadata."""
    return dataclasses.fields(StyleConfig)


def fields_of_kind(*kinds: str) -> tuple[str, ...]:
    """Names of the options of these kinds, in declaration order."""
    return tuple(f.name for f in options() if f.metadata["kind"] in kinds)


@dataclass(frozen=True)
class StyleConfig:
    """Options of one style transfer.

    Attributes:
      size: long side of the output in pixels; the content image is resized to it (Lanczos).
      steps: optimizer iterations.
      tolerance: stop a scale early once its best loss fell by less than this fraction of it over
        the last ``STOP_WINDOW`` (10) steps, judged every ``chunk`` steps (a group of jobs stops
        when every job has); 0 (default) runs every step. See ``jaxstyle.run.transfer.settled``.
      content_weight: alpha in the paper, weight of the content term.
      style_weight: beta in the paper, weight of the style term.
      tv_weight: weight of the total-variation regulariser (0 disables it; not in the paper).
      tv_kind: ``"l2"`` or ``"l1"`` total variation.
      init: ``"content"`` (start from the photo), ``"noise"`` (white noise, as in the paper) or the
        path of an image file to start from.
      noise_scale: amplitude of the white-noise start: pixels uniform in ``0.5 ± noise_scale / 2``
        (1 = uniform in [0, 1]). The paper does not give one; a smaller amplitude leaves less
        pixel noise in the result, too small a one stalls style-dominated runs (see
        ``StyleConfig.paper``).
      optimizer: ``"lbfgs"`` (the paper's choice) or ``"adam"``.
      lr: learning rate; ``None`` takes the optimizer's default (``optimize.DEFAULT_LR``).
      linesearch: L-BFGS line search: ``"none"`` (one evaluation per step, like PyTorch's L-BFGS),
        ``"backtracking"`` or ``"zoom"`` (optax's default); see ``optimize.make_optimizer``.
      lbfgs_memory: how many pairs of past steps (and gradient changes) the L-BFGS memory keeps:
        24 bytes per pixel each in float32, 12 in bfloat16 (PyTorch's L-BFGS keeps 100). 0 (default)
        = automatic: ``optimize.WHOLE_LBFGS_MEMORY`` (50) where the image is evaluated whole, and
        ``optimize.LBFGS_MEMORY`` (10, optax's) where it is streamed or tiled, where the memory
        grows with the image and limits its size. L-BFGS only.
      lbfgs_history: dtype of the L-BFGS memory (``jaxstyle.optim.lbfgs``): ``"float32"``,
        ``"bfloat16"`` (half the bytes) or ``"auto"`` (default: float32 for up to 10 pairs in a run
        evaluated whole, bfloat16 otherwise: streamed or tiled runs, where memory is what limits
        the size, and longer memories, which converged as in float32).
      lbfgs_precondition: corner frequency, in cycles per pixel, below which L-BFGS's initial
        inverse Hessian boosts the image's spatial frequencies as ``1 / f`` (``jaxstyle.optim.precondition``):
        broad changes of colour and light then come in the first steps instead of the last. 0 = none
        (plain L-BFGS, as optax's and PyTorch's). L-BFGS only.
      pooling: ``"max"`` or ``"avg"`` (the paper prefers average pooling for synthesis).
      content_layers: layers of the content term (the paper: relu4_2, i.e. conv4_2 after ReLU).
      style_layers: layers of the style term (the paper: relu1_1 … relu5_1).
      content_layer_weights: one weight per content layer; ``None`` = equal, summing to one.
      style_layer_weights: one weight per style layer; ``None`` = equal, summing to one (w_l = 1/5).
      normalization: ``"relative"`` (each term divided by its target's squared norm) or
        ``"paper"`` (eqs. 1 and 4 literally); see ``jaxstyle.losses``.
      style_loss: a registered style loss's name: ``"gram"`` (the paper), ``"wasserstein"`` (mean and
        covariance, W2), ``"mrf"`` (each output patch pulled to its nearest painting patch, Li & Wand
        2016), … (``jaxstyle.losses.names()``); or a :class:`~jaxstyle.losses.StyleLoss` instance,
        a researcher's own (Python API only).
      mrf_layers: the style term's layers under ``style_loss="mrf"`` (Li & Wand: relu3_1, relu4_1);
        ``style_layers`` (and ``style_layer_weights``' length) then refer to these.
      histogram_weight: under ``style_loss="histogram"``, the weight of the histogram term (Risser et
        al. 2017) against the Gram term it is added to.
      mrf_patch_size: side of the MRF patches in positions of the layer (3 in the paper).
      mrf_stride: the painting's patches are taken every ``mrf_stride`` positions (the output's at
        every position); 1 is the densest and slowest library.
      style_blend_weights: one weight per style image, normalised to sum to one; ``None`` = equal.
      style_scale: size of each style image relative to the output (long side ``scale * size``): one
        number for all, or one per style image. Larger makes brush strokes larger.
      content_mask: label image of the photo's regions (Gatys et al. 2017, spatial control): each
        flat colour is a region, styled by the style regions of the same colour (``jaxstyle.losses.masks``).
      style_masks: one label image per style image (its regions); ``None`` = each painting whole,
        for every region.
      mask_propagation: ``"eroded"`` (default: a feature belongs to a region only if its whole
        receptive field does, so no feature mixes regions) or ``"downsample"`` (block means).
      color: ``"none"``, ``"luminance"`` (style on luminance only, the photo's colours kept) or
        ``"histogram"`` (the painting recoloured to the photo's colour mean and covariance first);
        Gatys et al. 2017.
      scales: number of sizes, coarse to fine, each ``scale_ratio`` smaller than the next, ending at
        ``size``; 1 = single scale; 0 (default) = automatic: one scale up to ``AUTO_SCALES_ABOVE``
        px, above it coarse to fine by factors of two from 512-1023 px, most steps at the coarse
        scales (see :meth:`schedule`).
      scale_ratio: size ratio between consecutive scales.
      scale_steps: iterations at each coarser scale; ``None`` = ``steps``. The final scale runs ``steps``.
      average: decay of an exponential moving average of the image (bias-corrected), returned
        instead of the last iterate; 0 disables it. Removes Adam's high-frequency noise (e.g. 0.9).
      normalize_vgg: rescale the VGG weights so each filter's mean activation over calibration
        images (the bundled examples) is one, as the paper does (``jaxstyle.model.normalize``).
      tile: rows per band of the exact streamed evaluation (``jaxstyle.evaluate.bands``; core size in pixels
        of the tiled one, ``jaxstyle.evaluate.tiling``, for the MRF loss), whose memory does not grow with the
        image's height (tiles: at all); ``None`` (default) = only when the image does not fit
        ``max_memory`` whole; 0 = never.
      max_memory: memory budget in GB that decides tiling and the tile size; ``None`` = 70% of the
        memory free on the device.
      seed: seed of every random choice (the noise image).
      chunk: steps between progress reports (the device is only waited on then).
    """

    size: int = option(512, "long side of the output in pixels (Lanczos resize, once)", "compiled")
    steps: int = option(300, "optimizer iterations (at the final scale)", "shared")
    tolerance: float = option(0.0, f"stop a scale early once its best loss fell by less than this fraction over "
                              f"the last {STOP_WINDOW} steps, e.g. 0.003 (0 = run every step)", "shared")
    content_weight: float = option(1.0, "alpha: weight of the content term", "per_job")
    style_weight: float = option(10.0, "beta: weight of the style term", "per_job")
    tv_weight: float = option(0.0, "total-variation weight (0 = off)", "per_job")
    tv_kind: str = option("l2", "total-variation norm", "compiled", choices=losses.TV_KINDS)
    init: str = option("content", f"start image: {' or '.join(INITS)} (the paper) or an image path", "per_job")
    noise_scale: float = option(1.0, "amplitude of a noise start: uniform in 0.5 ± scale/2 (the paper preset: 0.5)",
                                "per_job")
    optimizer: optimize.Optimizer = option("lbfgs", "lbfgs (the paper) or adam", "compiled", choices=optimize.OPTIMIZERS)
    lr: float | None = option(None, "learning rate", "per_job",
                              shown=", ".join(f"{k} {v}" for k, v in optimize.DEFAULT_LR.items()))
    linesearch: optimize.Linesearch = option("none", "L-BFGS line search", "compiled", choices=optimize.LINESEARCHES)
    lbfgs_memory: int = option(0, "pairs of past steps L-BFGS keeps (24 bytes per pixel each in float32; PyTorch "
                               f"keeps 100); auto (0): {optimize.WHOLE_LBFGS_MEMORY}, or {optimize.LBFGS_MEMORY} "
                               "where the image is streamed or tiled", "compiled", metavar="N", shown="auto")
    lbfgs_history: str = option("auto", "dtype of the L-BFGS memory: float32, bfloat16 (half the bytes), auto = "
                                f"float32 for up to {optimize.LBFGS_MEMORY} pairs evaluated whole, else bfloat16",
                                "compiled", choices=HISTORY_CHOICES)
    lbfgs_precondition: float = option(precondition.CORNER, "L-BFGS starts from an inverse Hessian that boosts "
                                       "spatial frequencies below this many cycles per pixel as 1/f; 0 = none",
                                       "compiled", metavar="F")
    pooling: vgg.Pooling = option("max", "max or avg (the paper prefers avg)", "compiled", choices=vgg.POOLINGS)
    content_layers: tuple[str, ...] = option(("relu4_2",), "comma-separated layer names", "compiled")
    style_layers: tuple[str, ...] = option(("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
                                           "comma-separated layer names", "compiled")
    content_layer_weights: tuple[float, ...] | None = option(None, "comma-separated, one per content layer",
                                                             "per_job", shown="equal")
    style_layer_weights: tuple[float, ...] | None = option(None, "comma-separated, one per style layer", "per_job",
                                                           shown="equal")
    normalization: losses.Normalization = option("relative", "loss normalisation (see Departures from the paper)",
                                                 "compiled", choices=losses.NORMALIZATIONS)
    style_loss: str | losses.StyleLoss = option(
        "gram", "style loss, by its registered name: gram (the paper), wasserstein (mean and covariance), mrf (nearest "
        "patches, Li & Wand 2016, at --mrf-layers), …", "compiled", choices=losses.names)
    mrf_layers: tuple[str, ...] = option(("relu3_1", "relu4_1"), "layers of the MRF style loss (--style-loss mrf; "
                                         "--style-layers is for gram and wasserstein)", "compiled")
    histogram_weight: float = option(1.0, "weight of the histogram term against the Gram term (--style-loss "
                                     "histogram)", "compiled")
    mrf_patch_size: int = option(3, "side of the MRF loss's neural patches, in positions of the layer", "compiled")
    mrf_stride: int = option(2, "the painting's patches are taken every N positions (the output's at every one)",
                             "compiled", metavar="N")
    style_blend_weights: tuple[float, ...] | None = option(None, "comma-separated, one per style image (normalised)",
                                                           "per_job", shown="equal")
    style_scale: float | tuple[float, ...] = option(1.0, "style image size relative to the output: one number, "
                                                    "or one per style image", "per_job")
    content_mask: str | None = option(None, "label image of the photo's regions (each flat colour one region); "
                                      "each region is styled by the style regions of the same colour", "shared",
                                      metavar="PNG")
    style_masks: tuple[str, ...] | None = option(None, "comma-separated label images, one per style image: the "
                                                 "style regions (default: each painting whole, for every region)",
                                                 "shared", metavar="PNG,…")
    mask_propagation: str = option("eroded", "how masks reach each layer: eroded (no feature mixes two regions) "
                                   "or downsample (soft borders)", "shared", choices=("eroded", "downsample"))
    color: str = option("none", "keep the photo's colours: luminance-only transfer or histogram matching", "per_job",
                        choices=color.COLORS)
    scales: int = option(0, "number of sizes, coarse to fine; 0 = automatic (coarse to fine above 1024 px)",
                         "compiled", shown="0 (auto)")
    scale_ratio: float = option(2**0.5, "size ratio between scales", "compiled", shown="1.414")
    scale_steps: int | None = option(None, "iterations at each coarser scale", "shared", shown="--steps")
    average: float = option(0.0, "decay of the image's moving average returned instead of the last iterate "
                            "(0 = off; e.g. 0.9 with adam)", "shared")
    normalize_vgg: bool = option(False, "the paper's normalised network (mean activation 1 per filter)", "shared")
    tile: int | None = option(None, "evaluate in streamed bands of PX rows (tiles of PX px for mrf): exact, "
                              "memory flat in height; 0 = never", "compiled", shown="auto", metavar="PX")
    max_memory: float | None = option(None, "memory budget that decides tiling and the tile size", "compiled",
                                      shown="70% of free", metavar="GB")
    seed: int = option(0, "seed of every random choice (the noise start)", "per_job")
    chunk: int = option(10, "steps between progress reports (the CLI sets it from --save-every)", "per_job",
                        flag=False)

    @classmethod
    def paper(cls, **changes) -> "StyleConfig":
        """Gatys et al. (2015) as published: white-noise start, L-BFGS, content relu4_2 (the
        paper's conv4_2: Caffe's ReLU runs in place, so the blob named conv4_2 holds the ReLU
        output), style relu1_1 … relu5_1 with w_l = 1/5, average pooling, the normalised network,
        eq. (4) unnormalised and alpha/beta = 1e-3 (Fig. 2's ratio for most panels).

        Choices the paper leaves open, made so that its ratios give its pictures (the measurements
        behind them are in ``docs/benchmarks.md``):

        * ``normalization="area"``: eq. (1) divided by the number of positions M_l, so that one
          alpha/beta means one balance at every image size (literal eq. (1) grows with the area).
        * ``noise_scale=0.5``: white noise uniform in [0.25, 0.75]: less leftover pixel noise than
          [0, 1], without the stalls of a near-flat start.
        * plain L-BFGS with optax's 10 pairs (``lbfgs_precondition=0``, ``lbfgs_memory=10``): the
          preconditioned start and longer memory broke Fig. 3's trend from this noise.
        """
        preset = dict(init="noise", optimizer="lbfgs", content_layers=("relu4_2",),
                      style_layers=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
                      style_layer_weights=None, pooling="avg", normalization="area", normalize_vgg=True,
                      noise_scale=0.5, lbfgs_precondition=0.0, lbfgs_memory=optimize.LBFGS_MEMORY,
                      content_weight=1e-3, style_weight=1.0, steps=500)
        return cls(**{**preset, **changes})

    def __post_init__(self):
        """Sequences given as strings or lists become tuples (``"relu4_2"`` is one layer, and
        ``"relu1_1,relu2_1"`` two, never letters); then every value is checked (:meth:`validate`)."""
        for name in _SEQUENCE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str):
                value = tuple(part.strip() for part in value.split(",") if part.strip())
            elif isinstance(value, (list, tuple)):
                value = tuple(value)
            object.__setattr__(self, name, value)
        if isinstance(self.style_scale, list):
            object.__setattr__(self, "style_scale", tuple(self.style_scale))
        self.validate()

    def replace(self, **changes) -> "StyleConfig":
        return dataclasses.replace(self, **changes)

    @property
    def learning_rate(self) -> float:
        return optimize.DEFAULT_LR[self.optimizer] if self.lr is None else self.lr

    def lbfgs_memory_for(self, planned: bool) -> lbfgs.Memory:
        """What the L-BFGS memory keeps in a run evaluated whole (``planned=False``) or by a band or
        tile plan: ``lbfgs_memory`` pairs in ``lbfgs_history``'s dtype (0 and ``"auto"``: by the rule
        of ``optimize.lbfgs_memory``), starting from ``lbfgs_precondition``'s inverse Hessian."""
        return optimize.lbfgs_memory(self.lbfgs_memory, self.lbfgs_history, planned, float(self.lbfgs_precondition))

    @property
    def loss(self) -> losses.StyleLoss:
        """The style loss object: ``style_loss`` itself, or the registered loss of that name built
        from this config (``StyleLoss.from_config``)."""
        return losses.resolve(self.style_loss, self)

    @property
    def style_term_layers(self) -> tuple[str, ...]:
        """The layers of the style term, as the style loss reads them (``mrf_layers`` under MRF)."""
        return self.loss.layers(self)

    @property
    def min_size(self) -> int:
        """Smallest image side the requested layers allow (each pooling halves the map; an MRF
        layer needs a whole patch)."""
        size = vgg.min_image_size(self.content_layers + self.style_term_layers)
        return max(size, self.loss.min_size(self.style_term_layers)) if self.style_term_layers else size

    def validate(self) -> "StyleConfig":
        """Raise :class:`JaxstyleError` naming the first bad option, the value and the rule."""
        _choice("optimizer", self.optimizer, optimize.OPTIMIZERS)
        _choice("linesearch", self.linesearch, optimize.LINESEARCHES)
        _choice("lbfgs_history", self.lbfgs_history, HISTORY_CHOICES)
        _choice("pooling", self.pooling, vgg.POOLINGS)
        _choice("normalization", self.normalization, losses.NORMALIZATIONS)
        _choice("tv_kind", self.tv_kind, losses.TV_KINDS)
        if not isinstance(self.style_loss, losses.StyleLoss):
            _choice("style_loss", self.style_loss, losses.names())
        _choice("color", self.color, color.COLORS)
        for name in _SEQUENCE_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                raise JaxstyleError(f"`{name}` (={value!r}) must be a sequence, e.g. a tuple or a comma-separated string")
        for name in ("content_layers", "style_layers", "mrf_layers"):
            if not isinstance(getattr(self, name), tuple) or not all(isinstance(v, str) for v in getattr(self, name)):
                raise JaxstyleError(f"`{name}` (={getattr(self, name)!r}) must be layer names, e.g. ('relu4_2',)")
        if not isinstance(self.init, str) or not self.init:
            raise JaxstyleError(f"`init` (={self.init!r}) must be {' or '.join(repr(i) for i in INITS)} or an image path")
        for path in ((self.content_mask,) if self.content_mask is not None else ()) + (self.style_masks or ()):
            if not isinstance(path, str) or not Path(path).is_file():
                raise JaxstyleError(f"mask {path!r} is not an existing image file; check the path")
        if self.style_masks is not None and self.content_mask is None:
            raise JaxstyleError("`style_masks` need a `content_mask` (the photo's regions) to be assigned to")
        if self.content_mask is not None and not self.loss.guided:
            raise JaxstyleError(f"region masks work with a style loss that has guided statistics (gram), not "
                                f"{losses.label(self.style_loss)!r}; drop the masks or use --style-loss gram")
        _choice("mask_propagation", self.mask_propagation, ("eroded", "downsample"))
        if self.init not in INITS and not Path(self.init).is_file():
            raise JaxstyleError(f"`init` (={self.init!r}) is neither {' nor '.join(INITS)} nor an existing image file; "
                                "check the path")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not -(2**63) <= self.seed < 2**63:
            raise JaxstyleError(f"`seed` (={self.seed!r}) must be an integer of at most 64 bits, e.g. 0")
        if not isinstance(self.normalize_vgg, bool):
            raise JaxstyleError(f"`normalize_vgg` (={self.normalize_vgg!r}) must be True or False")
        for name in ("mrf_patch_size", "mrf_stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MRF_PATCH:
                raise JaxstyleError(f"`{name}` (={value!r}) must be an integer from 1 to {MAX_MRF_PATCH}, e.g. 3")
        if not self.content_layers and not self.style_term_layers:
            raise JaxstyleError("no content or style layers given; name at least one, e.g. --style-layers relu1_1")
        if self.content_layers:  # empty: style only (texture synthesis, the paper's Fig. 1 top)
            vgg.check_layers(self.content_layers, "content layer")
        if self.style_layers:  # empty: content only (content reconstruction, Fig. 1 bottom)
            vgg.check_layers(self.style_layers, "style layer")
        if self.mrf_layers:
            vgg.check_layers(self.mrf_layers, "MRF layer")
        for name in ("size", "steps", "chunk") + (("scale_steps",) if self.scale_steps is not None else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise JaxstyleError(f"`{name}` (={value!r}) must be a positive integer")
        if isinstance(self.lbfgs_memory, bool) or not isinstance(self.lbfgs_memory, int) or not 0 <= self.lbfgs_memory <= MAX_LBFGS_MEMORY:
            raise JaxstyleError(f"`lbfgs_memory` (={self.lbfgs_memory!r}) must be an integer from 1 to {MAX_LBFGS_MEMORY}, "
                                f"e.g. 10, or 0 (automatic)")
        if not (_number(self.lbfgs_precondition) and 0 <= self.lbfgs_precondition <= 1):
            raise JaxstyleError(f"`lbfgs_precondition` (={self.lbfgs_precondition!r}) must be a frequency from 0 to 1 "
                                f"cycles per pixel, e.g. {precondition.CORNER} (0 turns it off)")
        if self.size > MAX_SIZE:
            raise JaxstyleError(f"`size` (={self.size}) is beyond any machine's memory; use at most {MAX_SIZE} px")
        if isinstance(self.scales, bool) or not isinstance(self.scales, int) or not 0 <= self.scales <= MAX_SCALES:
            raise JaxstyleError(f"`scales` (={self.scales!r}) must be an integer from 1 to {MAX_SCALES}, or 0 for automatic")
        if self.tile is not None and not (_number(self.tile) and isinstance(self.tile, int) and 0 <= self.tile <= MAX_SIZE):
            raise JaxstyleError(f"`tile` (={self.tile!r}) must be a tile size in pixels from 1 to {MAX_SIZE} (e.g. 512), "
                                "or 0 to never tile")
        if self.max_memory is not None and not (_number(self.max_memory)
                                                and math.isfinite(self.max_memory) and self.max_memory > 0):
            raise JaxstyleError(f"`max_memory` (={self.max_memory!r}) must be a positive number of GB, e.g. 8")
        if self.size < self.min_size:
            raise JaxstyleError(
                f"`size` (={self.size}) is too small for layers down to "
                f"{_deepest(self.content_layers + self.style_term_layers)}"
                f" with the {losses.label(self.style_loss)} style loss: use at least {self.min_size} px"
            )
        for name in ("content_weight", "style_weight", "tv_weight", "histogram_weight"):
            _non_negative(name, getattr(self, name))
        if not (_number(self.noise_scale) and 0 <= self.noise_scale <= 1):
            raise JaxstyleError(f"`noise_scale` (={self.noise_scale!r}) must be in [0, 1], e.g. 0.5; 1 = uniform in [0, 1]")
        if not (_number(self.scale_ratio) and 1 < self.scale_ratio <= 16):
            raise JaxstyleError(f"`scale_ratio` (={self.scale_ratio!r}) must be a number in (1, 16], e.g. 1.414")
        if self.sizes()[0] < self.min_size:
            raise JaxstyleError(
                f"`scales` (={self.scales}) makes the coarsest size {self.sizes()[0]} px, below the "
                f"{self.min_size} px the layers need: use fewer scales or a smaller scale_ratio"
            )
        if not (_number(self.tolerance) and 0 <= self.tolerance < 1):
            raise JaxstyleError(f"`tolerance` (={self.tolerance!r}) must be in [0, 1), e.g. 0.003; 0 runs every step")
        if not (_number(self.average) and 0 <= self.average < 1):
            raise JaxstyleError(f"`average` (={self.average!r}) must be in [0, 1), e.g. 0.9; 0 disables it")
        for scale in self.style_scales(1 if not isinstance(self.style_scale, tuple) else len(self.style_scale)):
            if not (_number(scale) and math.isfinite(scale) and scale > 0):
                raise JaxstyleError(f"`style_scale` (={self.style_scale!r}) must be positive number(s)")
        if self.style_blend_weights is not None:
            for w in self.style_blend_weights:
                _non_negative("style_blend_weights", w)
            if sum(self.style_blend_weights) <= 0:
                raise JaxstyleError("`style_blend_weights` sum to 0; give at least one positive weight")
        if self.lr is not None and not (_number(self.lr) and math.isfinite(self.lr) and 0 < self.lr <= FLOAT32_MAX):
            raise JaxstyleError(f"`lr` (={self.lr}) must be a positive number")
        for name, layers in (("content_layer_weights", self.content_layers),
                             ("style_layer_weights", self.style_term_layers)):
            weights = getattr(self, name)
            if weights is None:
                continue
            if len(weights) != len(layers):
                raise JaxstyleError(f"`{name}` has {len(weights)} values for {len(layers)} layers; give one per layer")
            for w in weights:
                _non_negative(name, w)
        return self


    def sizes(self) -> list[int]:
        """Long side of each scale, coarse to fine, ending at ``size``."""
        return [size for size, _ in self.schedule()]

    def schedule(self) -> list[tuple[int, int]]:
        """(long side, iterations) of each scale, coarse to fine, ending at ``(size, steps)``.

        Automatic (``scales=0``): one scale up to ``AUTO_SCALES_ABOVE`` px. Above, sizes halve down
        to 512-1023 px; the coarsest runs ``steps`` iterations and each finer one a third of the
        previous (at least ``AUTO_MIN_STEPS``): 4096 px with 300 steps runs 300, 100, 33 and 11 at
        512, 1024, 2048 and 4096 px. A full-resolution evaluation costs 64x one at 512 px, so most
        of the work is done where it is cheap; the fine scales only sharpen what is already there.
        """
        if self.scales == 0:
            sizes = [self.size]
            while self.size > AUTO_SCALES_ABOVE and sizes[0] // 2 >= AUTO_COARSEST:
                sizes.insert(0, sizes[0] // 2)
            return [(size, self.steps if k == 0 else max(AUTO_MIN_STEPS, self.steps // 3**k)) for k, size in enumerate(sizes)]
        sizes = [max(1, round(self.size / self.scale_ratio**k)) for k in reversed(range(self.scales))]
        return [(size, self.scale_steps or self.steps) for size in sizes[:-1]] + [(sizes[-1], self.steps)]

    @property
    def memory_budget(self) -> float | None:
        """``max_memory`` in bytes (``None``: decided from the free memory)."""
        return None if self.max_memory is None else float(self.max_memory) * 2**30

    def style_scales(self, n_styles: int) -> tuple[float, ...]:
        """One scale per style image; raises if a per-style tuple has the wrong length."""
        if isinstance(self.style_scale, (tuple, list)):
            if len(self.style_scale) != n_styles:
                raise JaxstyleError(
                    f"`style_scale` has {len(self.style_scale)} values for {n_styles} style images; give one or one per image"
                )
            return tuple(self.style_scale)
        return (self.style_scale,) * n_styles

    def blend(self, n_styles: int) -> tuple[float, ...]:
        """Style-image weights normalised to sum to one (none without style images)."""
        if self.style_blend_weights is None and n_styles == 0:
            return ()
        if self.style_blend_weights is None:
            return (1.0 / n_styles,) * n_styles
        if len(self.style_blend_weights) != n_styles:
            raise JaxstyleError(
                f"`style_blend_weights` has {len(self.style_blend_weights)} values for {n_styles} style images; give one per image"
            )
        total = float(sum(self.style_blend_weights))
        return tuple(float(w) / total for w in self.style_blend_weights)


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise JaxstyleError(f"`{name}` (={value!r}) must be one of {', '.join(choices)}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _non_negative(name: str, value) -> None:
    if not (_number(value) and math.isfinite(value) and value >= 0):
        raise JaxstyleError(f"`{name}` (={value!r}) must be a finite number >= 0")
    if value > WEIGHT_LIMIT:  # alpha * loss overflows float32 (a black image, NaN loss) well before 3.4e38
        raise JaxstyleError(f"`{name}` (={value!r}) is too large for float32 arithmetic; use at most {WEIGHT_LIMIT:g} "
                            "(only ratios of the weights matter: scale them all down)")


def _deepest(layers) -> str:
    return max(layers, key=vgg.LAYERS.index)


def layer_weights(weights: tuple[float, ...] | None, n: int) -> tuple[float, ...]:
    """Per-layer weights as given, or equal weights summing to one."""
    return tuple(float(w) for w in weights) if weights is not None else (1.0 / max(n, 1),) * n
