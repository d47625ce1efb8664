"""How many bytes a run needs (whole, tiled or banded) and how many the device has."""

from __future__ import annotations

import os

import jax

from ..optim import lbfgs, optimize

# Memory model (bytes; XLA:CPU, float32, default layers to relu5_1). Untiled: an evaluation keeps
# every activation for the backward pass; bench/memory.py measured 3.3-3.8 KB per pixel above the
# baseline at 1024x768 and 2048x1536 (a whole run: 3.3 KB/px).
UNTILED_BYTES_PER_PIXEL = 3400
# Tiled: per pixel of one crop (its forward and VJP, as untiled), and per pixel of the image: x and
# its gradient (24), the L-BFGS memory (2 x 10 x 12 = 240 in float32), the guard's copies (24), the
# relu4_2 target (32), transients. Conservative against bench/memory.py: 512 px cores (736x736 crops)
# peaked at 2.31 GB at 1024x768 and 2.51 GB at 2048x1536, estimated here at 2.8 and 3.7 GB.
CROP_BYTES_PER_PIXEL = 3400
# Per image pixel, by the L-BFGS memory's dtype (jaxstyle.optim.lbfgs; planned runs hold bfloat16 unless
# told otherwise). Calibrated on 4096x3072 CLI runs with --max-memory 8: float32 memory, 128-row
# bands keeping block 4, peaked 103 B/px above 400 (then the figure); bfloat16 memory, 192-row
# bands, peaked 8.95e9 bytes, 49 B/px above the estimate with 368 (= 500 - 132: the optimizer
# update's arguments and temporaries at 1024x768 are 132 B/px smaller, bench/lbfgs_history.py).
# Hence bfloat16 420 and float32 420 + 132.
# Both figures are for optimize.LBFGS_MEMORY (10) pairs; other sizes add or remove their pairs' bytes
# (state_bytes_per_pixel), as untiled_bytes does for a whole run's memory.
STATE_BYTES_PER_PIXEL = {"float32": 552, "bfloat16": 420}
CALIBRATED = optimize.DEFAULT_MEMORY  # the L-BFGS memory UNTILED_BYTES_PER_PIXEL was measured with
WHOLE = optimize.lbfgs_memory(0, "auto", planned=False)  # what a run evaluated whole keeps by default
PLANNED = optimize.lbfgs_memory(0, "auto", planned=True)  # ... and one evaluated by a plan
BASE_BYTES = 600 << 20  # JAX, XLA, the weights
TILE_CHOICES = (2048, 1536, 1024, 768, 512, 384, 256)  # core sizes tried, largest first
# Streamed bands (jaxstyle.evaluate.bands): per pixel of one band (its activations, forward and VJP), per
# image pixel as above, plus what keeping block 4's outputs costs (bands.KEEP: 4 x 512 + 512 channels
# at 1/64 and 1/256 of the pixels, float32: 136 bytes). Measured with bench/memory.py (docs/benchmarks.md).
# The carries, kept per band for the backward pass: two input rows per 3x3 conv and one per pooling
# with an odd delay, 1414 floats per image column up to relu5_1 (bands.schedule), 5.7 KB.
BAND_BYTES_PER_PIXEL = 3400
KEEP_BYTES_PER_PIXEL = 136
CARRY_BYTES_PER_COLUMN = 5700
BAND_CHOICES = (512, 384, 256, 192, 128, 96, 64, 48, 32, 16)  # rows per band tried, most first
KEEP_MIN_ROWS = 128


def _accelerator_stats() -> dict | None:
    """The default device's memory statistics when it reports a limit (GPU, TPU), else ``None``."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return stats if stats and "bytes_limit" in stats else None


def free_memory_bytes() -> int:
    """Memory free on the default device: the accelerator's own, else the host's available memory."""
    stats = _accelerator_stats()
    if stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def more_pairs_bytes(memory: lbfgs.Memory, calibrated: lbfgs.Memory = CALIBRATED) -> int:
    """Bytes per pixel ``memory`` holds beyond (or, negative, short of) what a model was measured with."""
    return 3 * (memory.bytes_per_value() - calibrated.bytes_per_value())


def state_bytes_per_pixel(memory: lbfgs.Memory = PLANNED) -> int:
    """Image-sized state of a planned run per pixel, with this L-BFGS memory."""
    return STATE_BYTES_PER_PIXEL[memory.dtype] + more_pairs_bytes(memory, lbfgs.Memory(optimize.LBFGS_MEMORY, memory.dtype))


def untiled_bytes(height: int, width: int, memory: lbfgs.Memory = WHOLE) -> int:
    """Estimated peak bytes of an untiled run at this size, with this L-BFGS memory."""
    return BASE_BYTES + (UNTILED_BYTES_PER_PIXEL + more_pairs_bytes(memory)) * height * width


def tiled_bytes(plan, memory: lbfgs.Memory = PLANNED) -> int:
    """Estimated peak bytes of a tiled run with this plan and L-BFGS memory."""
    return (BASE_BYTES + CROP_BYTES_PER_PIXEL * plan.crop[0] * plan.crop[1]
            + state_bytes_per_pixel(memory) * plan.height * plan.width)


def banded_bytes(plan, memory: lbfgs.Memory = PLANNED) -> int:
    """Estimated peak bytes of a streamed run (``jaxstyle.evaluate.bands``) with this plan and L-BFGS memory."""
    return (BASE_BYTES + BAND_BYTES_PER_PIXEL * plan.band * plan.width + CARRY_BYTES_PER_COLUMN * plan.bands * plan.width
            + (state_bytes_per_pixel(memory) + (KEEP_BYTES_PER_PIXEL if plan.keep else 0)) * plan.height * plan.width)


def total_memory_bytes() -> int:
    """All of the default device's memory (the accelerator's, else the host's RAM)."""
    stats = _accelerator_stats()
    if stats:
        return int(stats["bytes_limit"])
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30
