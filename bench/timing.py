"""What every benchmark shares: the one timing loop, and the folder of the classic photos and paintings.

Plain Python, so that ``torch_reference.py`` uses it too, in its own environment.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

# tubingen, golden_gate, starry_night, the_scream, shipwreck, ... (not in the repository): the folder
# JAXSTYLE_IMAGES names, else ../shared/images beside the checkout; without it, the bundled pair only.
IMAGES = Path(os.environ.get("JAXSTYLE_IMAGES") or Path(__file__).resolve().parents[2] / "shared" / "images")


def seconds(run: Callable[[int], object], repeats: int) -> list[float]:
    """Wall seconds of ``run(k)`` for k = 0 … ``repeats`` - 1, one call at a time. ``run`` waits for
    its own result (``jax.block_until_ready``, ``torch.cuda.synchronize``) so that the clock
    stops when the work is done, not when it is queued."""
    times = []
    for k in range(repeats):
        t = time.perf_counter()
        run(k)
        times.append(time.perf_counter() - t)
    return times
