"""Optical flow between video frames, warping, and the consistency mask of Ruder, Dosovitskiy and
Brox, "Artistic style transfer for videos" (GCPR 2016), section 3.

Conventions: a flow ``f`` from frame ``a`` to frame ``b`` is an (H, W, 2) float32 array of (dx, dy)
such that ``a[y, x] ≈ b[y + dy, x + dx]``. :func:`warp` ``(image, f)`` samples ``image`` at
``p + f(p)``: with the flow from frame t to frame t-1 (the *backward* flow), ``warp(frame_{t-1}, f)``
is frame t as predicted from frame t-1.

The flow comes from OpenCV (``opencv-python-headless``, the ``video`` extra): DIS (Kroeger et al.
2016, fast, the default) or Farneback (2003). Both are computed on grey 8-bit frames.
"""

from __future__ import annotations

import importlib

import numpy as np

from ..errors import JaxstyleError

FLOWS = ("dis", "farneback")


def video_extra(name: str):
    """The module ``name`` of the video extra (``"av"``, ``"cv2"``), or one line naming the fix."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise JaxstyleError(f"jaxstyle video needs the video extra ({name} is missing): "
                            "pip install 'jaxstyle[video]'") from None


def _grey(frame: np.ndarray) -> np.ndarray:
    rgb = np.clip(np.asarray(frame, np.float32), 0.0, 1.0)
    return np.round(255.0 * (rgb @ np.asarray([0.299, 0.587, 0.114], np.float32))).astype(np.uint8)


def flow(a: np.ndarray, b: np.ndarray, method: str = "dis") -> np.ndarray:
    """The optical flow from frame ``a`` to frame ``b`` ((H, W, 3) RGB in [0, 1]): (H, W, 2) float32."""
    cv2 = video_extra("cv2")
    ga, gb = _grey(a), _grey(b)
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        out = dis.calc(ga, gb, None)
    elif method == "farneback":
        out = cv2.calcOpticalFlowFarneback(ga, gb, None, pyr_scale=0.5, levels=4, winsize=15, iterations=5,
                                           poly_n=5, poly_sigma=1.1, flags=0)
    else:
        raise JaxstyleError(f"unknown optical flow {method!r}; choose one of {', '.join(FLOWS)}")
    return np.asarray(out, np.float32)


def warp(image: np.ndarray, f: np.ndarray) -> np.ndarray:
    """``image`` sampled at ``p + f(p)`` (bilinear; positions outside are clamped to the border)."""
    cv2 = video_extra("cv2")
    h, w = f.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(np.asarray(image, np.float32), xs + f[..., 0], ys + f[..., 1], interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def consistency(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Ruder et al.'s per-pixel weight c of frame t: 0 where the flow is not to be trusted, else 1.

    Args:
      forward: flow from frame t-1 to frame t.
      backward: flow from frame t to frame t-1.

    A pixel p of frame t is *disoccluded* (it was hidden in frame t-1) when following the backward
    flow and then the forward flow does not come back: ``|w~ + w^|^2 > 0.01 (|w~|^2 + |w^|^2) + 0.5``
    with ``w^ = backward(p)`` and ``w~ = forward(p + w^)``; it lies on a *motion boundary* when
    ``|grad w^_x|^2 + |grad w^_y|^2 > 0.01 |w^|^2 + 0.002`` (Sundaram, Brox and Keutzer 2010, the
    thresholds Ruder et al. use). So is a pixel whose backward flow leaves frame t-1 (what a pan or
    zoom brings in at the edges: the warp could only smear the border there). All get weight 0.
    """
    there = warp(forward, backward)  # w~: the forward flow at the pixel's position in frame t-1
    total = there + backward
    occluded = np.sum(total**2, -1) > 0.01 * (np.sum(there**2, -1) + np.sum(backward**2, -1)) + 0.5
    dy = np.gradient(backward, axis=0)
    dx = np.gradient(backward, axis=1)
    boundary = np.sum(dx**2 + dy**2, -1) > 0.01 * np.sum(backward**2, -1) + 0.002
    h, w = backward.shape[:2]
    xs = np.arange(w, dtype=np.float32).reshape(1, w) + backward[..., 0]
    ys = np.arange(h, dtype=np.float32).reshape(h, 1) + backward[..., 1]
    outside = (xs < -0.5) | (xs > w - 0.5) | (ys < -0.5) | (ys > h - 0.5)  # beyond the edge pixels' extent
    return (~(occluded | boundary | outside)).astype(np.float32)


def flicker(frames, outputs, method: str = "dis") -> float:
    """Ruder et al.'s measure of temporal consistency: the mean over frames of the squared
    difference between output t and output t-1 warped into it by the flow between input frames
    t and t-1, where that flow is trusted (:func:`consistency`). ``frames`` and ``outputs``: lists
    of (H, W, 3) arrays of one size."""
    values = []
    for t in range(1, len(frames)):
        forward, backward = flow(frames[t - 1], frames[t], method), flow(frames[t], frames[t - 1], method)
        c = consistency(forward, backward)[..., None]
        values.append(float(np.sum(c * (outputs[t] - warp(outputs[t - 1], backward)) ** 2) / (3 * c.sum())))
    return float(np.mean(values))
