"""The loss terms: content, style (Gram, Wasserstein, MRF, guided by region masks), total variation.

The functions of :mod:`jaxstyle.losses.terms` are re-exported here, so ``losses.gram`` names the
Gram matrix wherever the package is imported.
"""

from .terms import (
    NORMALIZATIONS,
    SQRT_KNEE,
    STYLE_LOSSES,
    TV_KINDS,
    Normalization,
    content_from_squared_error,
    content_loss,
    eigh,
    eigvalsh,
    feature_stats,
    gram,
    style_layer_loss,
    style_loss,
    style_loss_of_statistic,
    style_statistic,
    style_target,
    temporal_loss,
    trace_sqrt_psd,
    tv_loss,
    wasserstein_layer_loss,
)

__all__ = [
    "NORMALIZATIONS", "SQRT_KNEE", "STYLE_LOSSES", "TV_KINDS", "Normalization", "content_from_squared_error",
    "content_loss", "eigh", "eigvalsh", "feature_stats", "gram", "style_layer_loss", "style_loss",
    "style_loss_of_statistic", "style_statistic", "style_target", "temporal_loss", "trace_sqrt_psd", "tv_loss",
    "wasserstein_layer_loss",
]
