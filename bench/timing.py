"""The benchmarks' one timing loop: wall seconds of repeated calls (plain Python, so that
``torch_reference.py`` uses it too, in its own environment)."""

from __future__ import annotations

import time
from typing import Callable


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
