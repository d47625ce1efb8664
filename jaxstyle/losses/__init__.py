"""The loss terms: content, total variation, and style losses as objects (:class:`StyleLoss`), by name.

The registered style losses: ``gram`` (Gatys et al.), ``wasserstein``, ``mrf`` (Li & Wand), ``sliced``
(Heitz et al.) and ``histogram`` (Risser et al.). Each is one module that registers itself; a researcher's own is a :class:`StyleLoss` subclass passed as
``StyleConfig(style_loss=MyLoss())`` or registered by name with :func:`register`.
"""

from . import gatys, wasserstein, mrf, sliced, histogram  # noqa: F401, I001 - registered in this order
from .base import (STREAMING, StyleLoss, check, get, label, names, register, resolve, style_loss,
                   style_loss_of_statistic, style_statistic, style_target)
from .gatys import Gram, gram, style_layer_loss
from .histogram import Histogram
from .mrf import MRF
from .sliced import SlicedWasserstein
from .terms import EPS, NORMALIZATIONS, TV_KINDS, Normalization, content_from_squared_error, content_loss, temporal_loss, tv_loss
from .wasserstein import SQRT_KNEE, Wasserstein, eigh, eigvalsh, feature_stats, trace_sqrt_psd, wasserstein_layer_loss

__all__ = [
    "EPS", "Gram", "Histogram", "MRF", "SlicedWasserstein", "NORMALIZATIONS", "Normalization", "SQRT_KNEE", "STREAMING", "StyleLoss", "TV_KINDS",
    "Wasserstein", "check", "content_from_squared_error", "content_loss", "eigh", "eigvalsh", "feature_stats", "get",
    "gram", "label", "names", "register", "resolve", "style_layer_loss", "style_loss", "style_loss_of_statistic",
    "style_statistic", "style_target", "temporal_loss", "trace_sqrt_psd", "tv_loss", "wasserstein_layer_loss",
]
