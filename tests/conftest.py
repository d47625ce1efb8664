"""Test settings: strict JAX so silent broadcasting and dtype-promotion bugs fail loudly (in the
processes the suite starts too: CLI subprocesses and notebook kernels read the same environment);
shared small fixtures.

Compiled programs persist on disk (JAX's compilation cache) for the whole suite and for the
processes it starts (CLI subprocesses, notebook kernels inherit the environment): the same VGG
programs are compiled in many tests and processes, and a second compile is a cache read.
"""

import os
import tempfile

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"jaxstyle-tests-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_NUMPY_RANK_PROMOTION", "raise")
os.environ.setdefault("JAX_NUMPY_DTYPE_PROMOTION", "strict")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture(scope="session")
def weights():
    from jaxstyle import load_bundled

    return load_bundled()


def smooth_image(h: int, w: int, phase: float = 0.0) -> np.ndarray:
    """Deterministic (h, w, 3) float32 image in [0, 1] with structure at several scales."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack(
        [0.5 + 0.4 * np.sin(0.3 * i + 0.2 * j + c + phase) * np.cos(0.11 * j - 0.7 * c) for c in range(3)], -1
    ).astype(np.float32)


def write_sweep_images(folder):
    """The photo c.png and the paintings s.png and s2.png that the sweep specs of the tests name."""
    from jaxstyle.io import image

    image.save_image(smooth_image(33, 44), folder / "c.png")
    image.save_image(stripes(40, 40), folder / "s.png")
    image.save_image(smooth_image(40, 40, 2.0), folder / "s2.png")
    return folder


def stripes(h: int, w: int) -> np.ndarray:
    """A strongly textured, colourful 'painting': diagonal stripes of saturated colour."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    t = (i + j) % 8 < 4
    out = np.where(t[..., None], np.array([0.9, 0.2, 0.1]), np.array([0.1, 0.3, 0.9]))
    return out.astype(np.float32)
