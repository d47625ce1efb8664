"""Peak memory and seconds per evaluation, untiled, streamed, tiled and checkpointed, by image size. Prints a table.

    python bench/memory.py                          # untiled and streamed, long side 512 … 4096 (4:3), CPU
    python bench/memory.py --sizes 1024 --band 512 --keep none --modes untiled streamed
    python bench/memory.py --sizes 1024 --tile 512 --modes untiled tiled remat

Each row runs in a fresh subprocess so its peak is its own: on the CPU the process's peak resident
memory (ru_maxrss), on a GPU the device's peak bytes in use. One evaluation = loss and gradient of
the default objective (content relu4_2, style relu1_1 … relu5_1, Gram, max pooling) on a synthetic
4:3 photo and painting.

Modes:
  untiled   jax.value_and_grad of the whole objective (skipped where the memory model says it
            cannot fit: the row says so)
  tiled     jaxstyle.tiling's exact two-pass evaluation, cores of --tile px
  streamed  jaxstyle.bands's exact evaluation in bands of at most --band rows, streamed (no halo);
            --keep block4 (default) keeps block 4's outputs for the backward pass, none recomputes them
  remat     untiled, under one jax.checkpoint that saves only each VGG block's pooled output
            (vgg.features names them). Measured: no lower peak than untiled (3.19 against
            3.14 GB at 1024x768 on the CPU): one checkpoint around the whole objective recomputes
            the whole forward before the backward; a lower peak needs one checkpoint per block.
Columns: bytes/px = peak minus the process's baseline (measured before any image work) per output pixel.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import seconds  # noqa: E402


def measure(size: int, mode: str, tile: int | None, band: int, repeats: int, keep: str = "block4") -> dict:
    import jax
    import jax.numpy as jnp

    from jaxstyle import StyleConfig, load_bundled
    from jaxstyle.evaluate import bands, objective, tiling
    from jaxstyle.run import problem

    device = jax.devices()[0]
    gpu = device.platform != "cpu"

    def peak() -> int:
        if gpu:
            return device.memory_stats()["peak_bytes_in_use"]
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    weights = problem.network(StyleConfig(), load_bundled())  # as a run uses them
    jax.block_until_ready(weights.params)
    baseline = peak()
    h, w = size * 3 // 4, size
    cfg = StyleConfig(size=size)
    spec = problem.objective_spec(cfg)
    plan = None
    if mode == "tiled":
        plan = tiling.make_plan(h, w, tile, spec.layers)
    elif mode == "streamed":
        plan = bands.make_plan(h, w, band, spec.layers, bands.KEEP if keep == "block4" else ())
    i = jnp.arange(h, dtype=jnp.float32).reshape(h, 1, 1)
    j = jnp.arange(w, dtype=jnp.float32).reshape(1, w, 1)
    c = jnp.arange(3, dtype=jnp.float32).reshape(1, 1, 3)
    content = 0.5 + 0.4 * jnp.sin(0.05 * i + 0.03 * j + c) * jnp.cos(0.011 * j - 0.7 * c)
    style = 0.5 + 0.4 * jnp.sign(jnp.sin(0.2 * (i + j) + c))[: h // 2, : w // 2]
    data = problem.make_problem(weights, content, [style], cfg, plan)  # targets crop by crop too, when planned
    x = 0.9 * content + 0.05
    if mode == "tiled":
        evaluate = lambda x: tiling.value_and_grad(x, data, plan)
    elif mode == "streamed":
        evaluate = lambda x: bands.value_and_grad(x, data, plan)
    else:
        loss = lambda x: objective.total_loss(x, data)
        if mode == "remat":
            names = tuple(f"pool{b}" for b in range(1, 6))
            loss = jax.checkpoint(loss, policy=jax.checkpoint_policies.save_only_these_names(*names))
        evaluate = jax.jit(jax.value_and_grad(loss))
    t = time.perf_counter()
    jax.block_until_ready(evaluate(x))
    first = time.perf_counter() - t
    times = seconds(lambda k: jax.block_until_ready(evaluate(x + 1e-3 * (k + 1))), repeats)
    top = peak()
    return {"size": f"{w}x{h}", "mode": mode + (f" keep {keep}" if mode == "streamed" else ""), "tile": getattr(plan, "band", getattr(plan, "tile", None)),
            "tiles": getattr(plan, "bands", None) or (len(plan.tiles) if plan else 1), "eval_s": statistics.median(times) if times else float("nan"),
            "first_s": first,
            "peak_bytes": top, "bytes_per_px": (top - baseline) / (h * w), "device": device.device_kind}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    p.add_argument("--modes", nargs="+", default=["untiled", "streamed"], choices=("untiled", "tiled", "streamed", "remat"))
    p.add_argument("--tile", type=int, default=512, help="core size of the tiled rows")
    p.add_argument("--band", type=int, default=128, help="rows per band of the streamed rows")
    p.add_argument("--keep", choices=("block4", "none"), default="block4",
                   help="streamed: keep block 4's outputs for the backward pass (bands.KEEP, as the planner does "
                        "when memory allows) or recompute them")
    p.add_argument("--repeats", type=int, default=2,
                   help="timed evaluations per row after the first (0: only the first, compilation included)")
    p.add_argument("--one", nargs=2, metavar=("SIZE", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(int(args.one[0]), args.one[1], args.tile, args.band, args.repeats, args.keep)))
        return 0
    from jaxstyle.evaluate import memory

    header = f"{'size':>10} {'mode':<20} {'tile':>5} {'tiles':>5} {'eval_s':>8} {'first_s':>8} {'peak_GB':>8} {'bytes/px':>8}"
    print(header)
    print("-" * len(header), flush=True)
    device = "?"
    for size in args.sizes:
        for mode in args.modes:
            h, w = size * 3 // 4, size
            if mode in ("untiled", "remat") and memory.untiled_bytes(h, w) > memory.memory_limit().available:
                print(f"{w:>5}x{h:<4} {mode:<20} skipped: needs about {memory.untiled_bytes(h, w) / 2**30:.0f} GB "
                      f"untiled, {memory.memory_limit().available / 2**30:.0f} GB free", flush=True)
                continue
            out = subprocess.run([sys.executable, __file__, "--one", str(size), mode, "--tile", str(args.tile),
                                  "--band", str(args.band), "--repeats", str(args.repeats), "--keep", args.keep], capture_output=True, text=True, env=os.environ)
            if out.returncode != 0:
                last = (out.stderr.strip().splitlines() or ["?"])[-1][:150]
                print(f"{w:>5}x{h:<4} {mode:<20} failed: {last}", flush=True)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            device = r["device"]
            print(f"{r['size']:>10} {r['mode']:<20} {r['tile'] or '-':>5} {r['tiles']:>5} {r['eval_s']:8.3f} "
                  f"{r['first_s']:8.1f} {r['peak_bytes'] / 2**30:8.2f} {r['bytes_per_px']:8.0f}", flush=True)
    print(f"device: {device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
