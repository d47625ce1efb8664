"""How many bytes a run needs (whole, tiled or banded) and how many the device has."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import jax

from ..errors import JaxstyleError
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


# --- what the process may use --------------------------------------------------------------------

@dataclass(frozen=True)
class Limit:
    """The memory this process may use: ``available`` bytes now, ``total`` at most, bound by ``source``."""

    available: int
    total: int
    source: str  # the limit that binds, in words ("the cgroup's memory.max", "RLIMIT_AS", …)


_NO_LIMIT = 1 << 62  # what cgroup v1 writes for "unlimited" (9223372036854771712) and above


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, ValueError):
        return None
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= _NO_LIMIT else value


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == key:
                return int(fields[1])
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_limits(proc: Path, cgroup_root: Path) -> list[Limit]:
    """The memory limits of this process's cgroup and of each of its ancestors (v2 and v1), each with
    what is left under it: the limit minus the usage, page cache that can be dropped not counted."""
    try:
        lines = (proc / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        if controllers == "":  # v2: one unified hierarchy
            base, files, version = cgroup_root / "unified", ("memory.max", "memory.current", "inactive_file"), "v2"
            if not (base / "cgroup.controllers").exists():
                base = cgroup_root
        elif "memory" in controllers.split(","):
            base, files, version = cgroup_root / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes",
                                                           "total_inactive_file"), "v1"
        else:
            continue
        parts = [p for p in path.strip("/").split("/") if p]
        for depth in range(len(parts), -1, -1):  # the cgroup itself, then each ancestor
            folder = base.joinpath(*parts[:depth])
            limit = _read_int(folder / files[0])
            if limit is None:
                continue
            usage = _read_int(folder / files[1]) or 0
            usage = max(0, usage - _stat(folder / "memory.stat", files[2]))
            found.append(Limit(max(0, limit - usage), limit, f"the cgroup's {files[0]} ({version}, {folder})"))
    return found


def _rlimit_limits(proc: Path, rlimits) -> list[Limit]:
    """The address-space and data-segment rlimits, each minus what the process maps already."""
    import resource

    found = []
    for name, field in (("RLIMIT_AS", "VmSize"), ("RLIMIT_DATA", "VmData")):
        if rlimits is not None:
            soft = rlimits.get(name)
        elif hasattr(resource, name):
            soft = resource.getrlimit(getattr(resource, name))[0]
        else:
            soft = None
        if soft is None or soft == resource.RLIM_INFINITY or soft < 0:
            continue
        used = _stat(proc / "self" / "status", field + ":") * 1024  # "VmSize:  1498052 kB"
        found.append(Limit(max(0, soft - used), soft, f"the process's {name} (ulimit)"))
    return found


def _host_memory(proc: Path) -> Limit:
    """The host's available and total memory (``/proc/meminfo``, else ``sysconf``)."""
    available = _stat(proc / "meminfo", "MemAvailable:") * 1024 or None  # "MemAvailable:  23967500 kB"
    total = _stat(proc / "meminfo", "MemTotal:") * 1024 or None
    if available is None or total is None:
        try:
            page = os.sysconf("SC_PAGE_SIZE")
            available = available or os.sysconf("SC_AVPHYS_PAGES") * page
            total = total or os.sysconf("SC_PHYS_PAGES") * page
        except (ValueError, OSError, AttributeError):
            available, total = available or 4 << 30, total or 8 << 30
    return Limit(available, total, "the host's available memory")


def _accelerator_stats() -> dict | None:
    """The default device's memory statistics when it reports a limit (GPU, TPU), else ``None``."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return stats if stats and "bytes_limit" in stats else None


def memory_limit(*, proc: str | os.PathLike = "/proc", cgroup_root: str | os.PathLike = "/sys/fs/cgroup",
                 rlimits: dict | None = None, accelerator: bool = True) -> Limit:
    """The smallest real limit on the memory this process may use.

    On a GPU or TPU, the accelerator's own memory. On the host, the least of the memory the host has
    available (``MemAvailable``), each enclosing cgroup's limit minus its usage (v2 ``memory.max`` and
    ``memory.current``, v1 ``memory.limit_in_bytes`` and ``memory.usage_in_bytes``, found through
    ``/proc/self/cgroup``: containers, Kubernetes, SLURM jobs) and the address-space and data rlimits
    (``ulimit -v``, ``ulimit -d``) minus what the process maps already.

    Args:
      proc, cgroup_root, rlimits: where to read (``rlimits``: ``{"RLIMIT_AS": bytes, …}`` instead of
        the process's own), for tests.
      accelerator: consult the default device first.
    """
    if accelerator:
        stats = _accelerator_stats()
        if stats:
            device = jax.local_devices()[0]
            return Limit(int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)), int(stats["bytes_limit"]),
                         f"the {device.platform} device's memory")
    proc = Path(proc)
    limits = [_host_memory(proc), *_cgroup_limits(proc, Path(cgroup_root)), *_rlimit_limits(proc, rlimits)]
    tightest = min(limits, key=lambda limit: limit.available)
    return Limit(tightest.available, min(limit.total for limit in limits), tightest.source)


BUDGET_FRACTION = 0.7  # of the available memory, when --max-memory is not given


def budget(max_memory: float | None = None, limit: Limit | None = None) -> tuple[float, str]:
    """The memory budget in bytes and where it comes from: ``max_memory`` (bytes) when given, else
    :data:`BUDGET_FRACTION` of :func:`memory_limit`'s available memory."""
    if max_memory is not None:
        return float(max_memory), "--max-memory"
    limit = memory_limit() if limit is None else limit
    return BUDGET_FRACTION * limit.available, f"{BUDGET_FRACTION:.0%} of {limit.source}"


def check_max_memory(max_memory: float | None, limit: Limit | None = None) -> None:
    """Refuse a ``max_memory`` (bytes) above the hard limit on this process: the run would be killed
    (or abort in the allocator) before it ends. Raises :class:`JaxstyleError` naming the limit."""
    if max_memory is None:
        return
    limit = memory_limit() if limit is None else limit
    if max_memory > limit.total:
        raise JaxstyleError(f"--max-memory {max_memory / 2**30:.3g} GB is more than this process may use: "
                            f"{limit.total / 2**30:.3g} GB ({limit.source}); give at most that, or drop --max-memory")


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
