"""Colour control (Gatys, Ecker, Bethge, Hertzmann & Shechtman 2017, "Controlling Perceptual Factors
in Neural Style Transfer", section 5): keep the photo's colours while transferring the painting's style.

* ``luminance``: transfer style on the luminance channel only. Both images go to YIQ; the painting's
  luminance is shifted and scaled to the photo's mean and standard deviation (their eq. 6); the
  optimisation runs on grey images (Y in all three channels); the result's Y is recombined with the
  photo's I and Q.
* ``histogram``: before optimising, give the painting the photo's colour mean and covariance with the
  linear map ``x' = C_c^1/2 C_s^-1/2 (x - mu_s) + mu_c`` (their eq. 5, "image analogies" variant).
"""

from __future__ import annotations

import numpy as np

COLORS = ("none", "luminance", "histogram")

# NTSC YIQ (FCC 1953 coefficients).
_RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]], np.float64
)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def rgb_to_yiq(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB → (H, W, 3) YIQ."""
    return (np.asarray(image, np.float64) @ _RGB_TO_YIQ.T).astype(np.float32)


def yiq_to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) YIQ → (H, W, 3) RGB (not clipped)."""
    return (np.asarray(image, np.float64) @ _YIQ_TO_RGB.T).astype(np.float32)


def luminance_image(image: np.ndarray, like: np.ndarray | None = None) -> np.ndarray:
    """Grey RGB image of ``image``'s luminance, optionally matched to ``like``'s luminance mean and std."""
    y = rgb_to_yiq(image)[..., 0]
    if like is not None:
        ref = rgb_to_yiq(like)[..., 0]
        y = (y - y.mean()) * (ref.std() / max(float(y.std()), 1e-6)) + ref.mean()
    y = np.clip(y, 0.0, 1.0)
    return np.repeat(y[..., None], 3, axis=-1).astype(np.float32)


def recombine_luminance(stylised_grey: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The stylised luminance with the content's chrominance (I, Q), as RGB in [0, 1]."""
    yiq = rgb_to_yiq(content)
    yiq[..., 0] = rgb_to_yiq(stylised_grey)[..., 0]
    return np.clip(yiq_to_rgb(yiq), 0.0, 1.0)


def _sqrtm(cov: np.ndarray, inverse: bool = False) -> np.ndarray:
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, 1e-8)
    power = -0.5 if inverse else 0.5
    return (vecs * vals**power) @ vecs.T


def colour_stats(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (3,) and covariance (3, 3) of an image's RGB values."""
    pixels = np.asarray(image, np.float64).reshape(-1, 3)
    return pixels.mean(axis=0), np.cov(pixels, rowvar=False)


def match_histogram(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """``style`` with ``content``'s RGB mean and covariance (clipped to [0, 1] afterwards)."""
    mu_s, cov_s = colour_stats(style)
    mu_c, cov_c = colour_stats(content)
    transform = _sqrtm(cov_c) @ _sqrtm(cov_s, inverse=True)
    pixels = np.asarray(style, np.float64).reshape(-1, 3)
    out = (pixels - mu_s) @ transform.T + mu_c
    return np.clip(out.reshape(style.shape), 0.0, 1.0).astype(np.float32)
