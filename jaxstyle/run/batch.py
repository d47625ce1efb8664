"""Many style transfers as few compiled programs: jobs grouped by what their compiled program and
their loop share (:func:`static_key`), each group run in batches by the one run loop
(``jaxstyle.run.transfer.run``), vmapped over the jobs and sharded over the local devices.

Which options split groups is declared once, on :class:`StyleConfig`'s fields (``kind``:
``"compiled"`` and ``"shared"`` do, ``"per_job"`` options differ freely inside a batch).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable, Sequence

import jax

from ..optim import lbfgs
from ..evaluate import memory as memory_model
from ..config import StyleConfig, fields_of_kind
from ..errors import JaxstyleError, is_out_of_memory
from ..io.image import JaxstyleWarning, long_side_shape
from .problem import Job, Prepared, prepare, prepare_job, tile_plan
from .transfer import Result, run
from ..model.weights import VGGWeights

__all__ = ["Job", "PER_JOB_FIELDS", "static_key", "group_jobs", "auto_batch_size", "stylize_batch"]

# Options that may differ inside one compiled batch; every other StyleConfig field splits groups.
PER_JOB_FIELDS = fields_of_kind("per_job")
# Rough resident bytes per output pixel of one job (activations, gradients, optimizer state), measured
# at 512x384 with bench/speed.py (about 0.8 GB above the process's baseline for 196,608 px), with
# memory_model.CALIBRATED's L-BFGS memory.
BYTES_PER_PIXEL = 4096


def static_key(config: StyleConfig, content_shape, n_styles: int) -> tuple:
    """What must be equal for jobs to share one compiled batch: the content image's shape, the
    number of style images and every option that is not ``per_job``."""
    fields = {name: value for name, value in dataclasses.asdict(config).items() if name not in PER_JOB_FIELDS}
    return (tuple(content_shape[:2]), n_styles, tuple(sorted((k, repr(v)) for k, v in fields.items())))


def auto_batch_size(pixels: int, n_jobs: int, devices: int, memory: lbfgs.Memory = memory_model.WHOLE) -> int:
    """Jobs per batch: as many as fit in about half the free memory, a multiple of the devices.
    ``memory``: the jobs' L-BFGS memory (:data:`BYTES_PER_PIXEL` counts ``jaxstyle.evaluate.memory.CALIBRATED``)."""
    per_pixel = BYTES_PER_PIXEL + memory_model.more_pairs_bytes(memory)
    fit = max(1, int(0.5 * memory_model.memory_limit().available // (per_pixel * pixels)))
    size = min(n_jobs, fit, 64)
    return max(devices, size // devices * devices)


def group_jobs(jobs: Sequence[Job], shapes: Sequence[tuple] | None = None) -> list[list[int]]:
    """Indices of jobs grouped by :func:`static_key`, in first-seen order. ``shapes``: each job's
    content shape at its size, if known; otherwise the images are loaded to find it."""
    shapes = _shapes(jobs) if shapes is None else shapes
    groups: dict = {}
    for i, (job, shape) in enumerate(zip(jobs, shapes)):
        groups.setdefault(static_key(job.config, shape, len(job.styles)), []).append(i)
    return list(groups.values())


def _shapes(jobs: Sequence[Job]) -> list[tuple]:
    return [prepare(job.content, list(job.styles), job.config)[0].shape for job in jobs]


def stylize_batch(jobs: Sequence[Job | Prepared], *, weights: VGGWeights | None = None, batch_size: int | None = None,
                  devices=None, on_result: Callable[[int, Result], None] | None = None,
                  shapes: Sequence[tuple] | None = None) -> list[Result]:
    """Run jobs that share static structure as vmapped, sharded batches of :func:`transfer.run`.

    Args:
      jobs: jobs whose :func:`static_key` is equal (see :func:`group_jobs`), or the same loaded
        (``problem.prepare_job``).
      weights: shared VGG-19 weights (default: bundled).
      batch_size: the most jobs per compiled batch; default :func:`auto_batch_size`. The jobs are
        split into batches of equal size (a multiple of the number of devices), padded by
        repeating a job, so that the group compiles once.
      devices: devices to shard the batch axis over (default: all local devices).
      on_result: called with ``(job index, Result)`` as soon as each batch finishes.
      shapes: each job's content shape at its size, if the caller already knows it (a sweep, which
        keeps only the decoded files, shared by its jobs); otherwise each job is loaded here, once.

    Returns:
      One :class:`Result` per job, in order.
    """
    if not jobs:
        return []
    devices = list(jax.local_devices() if devices is None else devices)
    if shapes is None:  # load each job once, here: the run goes on from what was loaded
        jobs = [job if isinstance(job, Prepared) else prepare_job(job) for job in jobs]
        shapes = [job.content.shape for job in jobs]
    keys = {static_key(job.config, shape, len(job.styles)) for job, shape in zip(jobs, shapes)}
    if len(keys) > 1:
        raise JaxstyleError("jobs in one batch must share image shape, style count and static options; group them first")
    config = jobs[0].config
    if any(tile_plan(long_side_shape(shapes[0], size), config) is not None for size, _ in config.schedule()):
        size = 1  # too large to evaluate whole: each job runs alone, tile by tile (compiled once per shape)
    elif not config.loss.batchable:
        size = 1  # the style loss declares it cannot be vmapped over jobs
    else:
        size = batch_size or auto_batch_size(shapes[0][0] * shapes[0][1], len(jobs), len(devices),
                                              config.lbfgs_memory_for(planned=False))
    sharded = len(devices) > 1 and size > 1
    # Equal batches (at most one padding job each, repeating the last job), so that every batch has
    # one shape and the group compiles once: 65 jobs at 64 per batch run as two batches of 33.
    batches = -(-len(jobs) // size)
    size = -(-len(jobs) // batches)
    if sharded:
        size = -(-size // len(devices)) * len(devices)
    results: list = [None] * len(jobs)
    start = 0
    while start < len(jobs):
        chunk = list(range(start, min(start + size, len(jobs))))
        padded = chunk + [chunk[-1]] * (size - len(chunk))
        try:
            outs = run([jobs[i] for i in padded], weights=weights, devices=devices if sharded else None)
        except Exception as error:  # noqa: BLE001 - only the allocator's refusal is handled here
            if not is_out_of_memory(error) or size == 1:
                raise
            # The memory model guessed too high: the same jobs again, half as many at a time.
            size = max(len(devices) if sharded else 1, size // 2)
            sharded = sharded and size > 1
            warnings.warn(f"out of memory at {len(padded)} jobs per batch; retrying {size} at a time",
                          JaxstyleWarning, stacklevel=2)
            continue
        for i, result in zip(chunk, outs):
            results[i] = result
            if on_result is not None:
                on_result(i, result)
        start += size
    return results

