"""Example images shipped with the package (see README for credits and licences), and example
clips made from them or from noise, for the video path's tests, benchmark and notebook (no media
file is shipped or downloaded)."""

from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
CONTENT = _HERE / "chelsea.jpg"  # "Chelsea the cat", Stefan van der Walt, CC0 (from scikit-image)
STYLE = _HERE / "starry_night.jpg"  # Vincent van Gogh, The Starry Night (1889), public domain
SECOND_STYLE = _HERE / "the_scream.jpg"  # Edvard Munch, The Scream (1893), public domain


def _blocks(h: int, w: int, seed: int, cell: int = 3) -> np.ndarray:
    """An (h, w, 3) texture of random flat ``cell``-px blocks in [0, 1]: a flow has something to track."""
    values = np.random.default_rng(seed).random((h // cell + 2, w // cell + 2, 3)).astype(np.float32)
    return np.kron(values, np.ones((cell, cell, 1), np.float32))[:h, :w]


def moving_square(frames: int = 8, height: int = 96, width: int = 128, square: int = 40, step: int = 3,
                  left: int = 16, top: int = 28) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """A textured square moving ``step`` px right per frame over a still textured background.

    Returns:
      ``(frames, corners)``: (height, width, 3) float32 frames in [0, 1], and the square's
      (top, left) corner in each. Between frames t-1 and t, the pixels left behind,
      columns ``left_t - step … left_t - 1`` of the square's rows, are disoccluded.
    """
    ground = 0.15 + 0.35 * _blocks(height, width, 1)
    patch = 0.5 + 0.5 * _blocks(square, square, 2)
    out, corners = [], []
    for t in range(frames):
        frame = ground.copy()
        x0 = left + step * t
        frame[top:top + square, x0:x0 + square] = patch
        out.append(frame)
        corners.append((top, x0))
    return out, corners


def pan(image: np.ndarray, frames: int, height: int, width: int, step: int = 2) -> list[np.ndarray]:
    """A camera pan across ``image``: ``frames`` crops of (height, width), each ``step`` px right of
    the last (the image must be at least ``width + step * (frames - 1)`` px wide)."""
    if image.shape[1] < width + step * (frames - 1) or image.shape[0] < height:
        raise ValueError(f"a {image.shape[1]}x{image.shape[0]} image is too small for this pan")
    top = (image.shape[0] - height) // 2
    return [np.ascontiguousarray(image[top:top + height, step * t:step * t + width]) for t in range(frames)]
