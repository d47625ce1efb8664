"""Many style transfers as one compiled program: jobs that share static structure are vmapped over a
batch axis, and the batch axis is sharded over the local devices.

Static (one compilation per group): content image shape, number of style images, layers, pooling,
normalisation, losses, optimizer, line search, steps and scales. Traced (differ freely inside a
batch): the images themselves, alpha, beta, layer and blend weights, TV weight, learning rate, seed.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import objective, optimize, transfer
from .config import INITS, StyleConfig
from .errors import JaxstyleError
from .weights import VGGWeights

# Fields that may differ inside one compiled batch; every other StyleConfig field is static.
TRACED_FIELDS = ("content_weight", "style_weight", "tv_weight", "lr", "seed", "content_layer_weights",
                 "style_layer_weights", "style_blend_weights", "init", "noise_scale")
# Rough resident bytes per output pixel of one job (activations, gradients, optimizer state), measured
# at 512x384 with bench/speed.py (about 0.8 GB above the process's baseline for 196,608 px).
BYTES_PER_PIXEL = 4096
# Each job's ``data`` pytree is (weights, targets, coefficients, spec): weights are shared.
DATA_AXES = (None, 0, 0, None)


@dataclass(frozen=True)
class Job:
    content: object  # path or (H, W, 3) array
    styles: tuple  # paths or arrays
    config: StyleConfig


def static_key(job_config: StyleConfig, content_shape, n_styles: int) -> tuple:
    """What must be equal for jobs to share one compiled batch."""
    fields = dataclasses.asdict(job_config)
    for name in TRACED_FIELDS:
        fields.pop(name)
    fields["init_kind"] = job_config.init if job_config.init in INITS else "file"
    return (tuple(content_shape), n_styles, tuple(sorted((k, repr(v)) for k, v in fields.items())))


def auto_batch_size(pixels: int, n_jobs: int, devices: int) -> int:
    """Jobs per batch: as many as fit in about half the free memory, a multiple of the devices."""
    free = _free_memory_bytes()
    fit = max(1, int(0.5 * free // (BYTES_PER_PIXEL * pixels)))
    size = min(n_jobs, fit, 64)
    return max(devices, size // devices * devices)


def _free_memory_bytes() -> int:
    device = jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return (stats["bytes_limit"] - stats.get("bytes_in_use", 0)) * jax.local_device_count()
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def _mesh(devices) -> Mesh:
    return Mesh(np.asarray(devices), ("batch",))


def stylize_batch(jobs: Sequence[Job], *, weights: VGGWeights | None = None, batch_size: int | None = None,
                  devices=None, on_result: Callable[[int, transfer.Result], None] | None = None) -> list:
    """Run jobs that share static structure as vmapped, sharded batches.

    Args:
      jobs: jobs whose :func:`static_key` is equal (see :func:`group_jobs`).
      weights: shared VGG-19 weights (default: bundled).
      batch_size: jobs per compiled batch; default :func:`auto_batch_size`. Rounded up to a
        multiple of the number of devices (the batch is padded by repeating a job).
      devices: devices to shard the batch axis over (default: all local devices).
      on_result: called with ``(job index, Result)`` as soon as each batch finishes.

    Returns:
      One :class:`transfer.Result` per job, in order.
    """
    given_weights = weights
    weights = transfer.network(jobs[0].config, weights) if jobs else weights
    devices = list(jax.local_devices() if devices is None else devices)
    prepared = []
    for job in jobs:
        content, styles = transfer.prepare_colour(*transfer.prepare(job.content, list(job.styles), job.config), job.config)
        prepared.append((content, styles, job.config))
    keys = {static_key(c, content.shape, len(s)) for content, s, c in prepared}
    if len(keys) > 1:
        raise JaxstyleError("jobs in one batch must share image shape, style count and static options; group them first")
    if transfer.tile_plan(prepared[0][0].shape, prepared[0][2]) is not None:
        # Too large to evaluate whole: a batch would not fit either, so each job runs on its own,
        # tile by tile (jaxstyle.tiling); the tiled functions compile once for the group's shape.
        results = []
        for i, job in enumerate(jobs):
            results.append(transfer.stylize(job.content, list(job.styles), job.config, weights=given_weights))
            if on_result is not None:
                on_result(i, results[-1])
        return results
    pixels = prepared[0][0].shape[0] * prepared[0][0].shape[1]
    size = batch_size or auto_batch_size(pixels, len(jobs), len(devices))
    size = -(-size // len(devices)) * len(devices)
    results = [None] * len(jobs)
    for start in range(0, len(jobs), size):
        chunk = list(range(start, min(start + size, len(jobs))))
        padded = chunk + [chunk[-1]] * (size - len(chunk)) if len(chunk) % len(devices) else chunk
        outs = _run_batch([prepared[i] for i in padded], weights, devices)
        for i, result in zip(chunk, outs):
            results[i] = result
            if on_result is not None:
                on_result(i, result)
    return results


def _run_batch(prepared, weights, devices) -> list:
    t0 = time.perf_counter()
    config = prepared[0][2]
    mesh = _mesh(devices)
    batch_sharding = NamedSharding(mesh, PartitionSpec("batch"))
    replicated = NamedSharding(mesh, PartitionSpec())
    weights = jax.device_put(weights, replicated)
    step = optimize.batched_step_fn(transfer.loss, config.optimizer, config.linesearch, DATA_AXES, batch_sharding)
    init = jax.jit(jax.vmap(optimize.state_initializer(config.optimizer, config.linesearch)), out_shardings=batch_sharding)
    final_terms = jax.jit(jax.vmap(lambda x, data: transfer.objective.loss_terms(x, *data), in_axes=(0, DATA_AXES)))
    histories, evaluations, x, data = [], None, None, None
    for size, steps in transfer.scale_plan(config):
        per_job = [transfer.images_at(content, styles, size, c) for content, styles, c in prepared]
        datas = [transfer.make_objective(weights, ck, sk, c) for (ck, sk), (_, _, c) in zip(per_job, prepared)]
        spec = datas[0][3]
        targets = jax.device_put(objective.stack([d[1] for d in datas]), batch_sharding)
        coef = jax.device_put(objective.stack([d[2] for d in datas]), batch_sharding)
        data = (weights, targets, coef, spec)
        if x is None:
            x = jnp.stack([transfer.initial_image(c, ck) for (ck, _), (_, _, c) in zip(per_job, prepared)])
        else:
            x = jnp.stack([jnp.asarray(transfer.image_io.resize_exact(np.asarray(xi), ck.shape[:2]))
                           for xi, (ck, _) in zip(x, per_job)])
        x = jax.device_put(x, batch_sharding)
        lr = jax.device_put(jnp.asarray([c.learning_rate for _, _, c in prepared], jnp.float32), batch_sharding)
        x, losses, n_evals, _ = transfer.run_steps(step, x, init(x), lr, data, steps, config)
        histories.append(losses.T)  # (batch, steps)
        evaluations = n_evals if evaluations is None else evaluations + n_evals
    x = jnp.clip(x, 0.0, 1.0)
    terms = jax.device_get(final_terms(x, data))
    images = np.asarray(jax.device_get(x))
    history = np.concatenate(histories, axis=1)
    seconds = time.perf_counter() - t0
    return [
        transfer.Result(
            image=transfer.finish_colour(images[b], content, c),
            history=history[b],
            terms={k: float(v[b]) for k, v in terms.items()},
            evaluations=int(evaluations[b]),
            timings={"batch_total": seconds, "batch_size": len(prepared), "devices": len(devices)},
            config=c,
        )
        for b, (content, _, c) in enumerate(prepared)
    ]


def group_jobs(jobs: Sequence[Job]) -> list[list[int]]:
    """Indices of jobs grouped by :func:`static_key` (content shape read from the file), in first-seen order."""
    groups: dict = {}
    for i, job in enumerate(jobs):
        content, styles = transfer.prepare(job.content, list(job.styles), job.config)
        groups.setdefault(static_key(job.config, content.shape, len(styles)), []).append(i)
    return list(groups.values())
