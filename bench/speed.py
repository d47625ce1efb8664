"""Speed and memory of one style-transfer step, by size and optimizer. Prints a table.

    python bench/speed.py                 # 256 and 512 px, L-BFGS (three line searches) and Adam
    python bench/speed.py --sizes 512 --steps 10
    python bench/speed.py --configs lbfgs/none --layouts single batch1   # a batch of one vs one image
    python bench/speed.py --configs lbfgs/none --regions 0 2               # guided Grams: 2 regions vs none
    python bench/speed.py --configs lbfgs/none --style-losses gram mrf     # the MRF patch loss vs Gram

Each row runs in a fresh subprocess so its peak resident memory (ru_maxrss) is its own. Columns:
  eval_s     one loss-and-gradient evaluation (jitted value_and_grad), median
  iter_s     one optimizer iteration (the jitted step, queued as stylize() does), mean
  evals/it   loss evaluations per iteration (line searches may spend several)
  compile_s  first step minus a steady step: tracing + XLA compilation
  py_%       Python's share of an iteration: time to queue a step / iteration time
  peak_MB    peak resident memory of the process
Layouts: ``batch1`` is what stylize() runs (the one run loop: the step vmapped over a batch of one
job); ``single`` the same step without the batch axis (stylize()'s program before the loop was shared
with batches).
Images: tubingen + starry_night when present (4:3, so 512 px is 512x384), else
the bundled examples.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from timing import IMAGES as SHARED, seconds  # noqa: E402

CONFIGS = [("lbfgs", "none"), ("lbfgs", "backtracking"), ("lbfgs", "zoom"), ("adam", "none")]


def images():
    if (SHARED / "tubingen.jpg").is_file():
        return SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"
    from jaxstyle.examples import CONTENT, STYLE

    return CONTENT, STYLE


def one(size: int, optimizer: str, linesearch: str, steps: int, layout: str, regions: int = 0,
        style_loss: str = "gram") -> dict:
    import jax
    import jax.numpy as jnp

    from jaxstyle import StyleConfig, load_bundled
    from jaxstyle.evaluate import objective
    from jaxstyle.optim import optimize
    from jaxstyle.run import problem

    content, style = images()
    cfg = StyleConfig(size=size, optimizer=optimizer, linesearch=linesearch, style_loss=style_loss)
    found = None
    if regions:  # vertical bands of the photo, each styled by the whole painting (jaxstyle.masks)
        import tempfile

        import numpy as np

        from jaxstyle.io.image import save_image

        labels = np.repeat(np.linspace(0, 1, regions)[np.arange(64) * regions // 64], 3).reshape(1, 64, 3)
        path = os.path.join(tempfile.mkdtemp(), "bands.png")
        save_image(np.broadcast_to(labels, (48, 64, 3)).astype(np.float32), path)
        cfg = cfg.replace(content_mask=path)
    c, styles = problem.prepare(content, style, cfg)
    if regions:
        found = problem.load_regions(cfg, c, styles)
    data = problem.make_problem(problem.network(cfg, load_bundled()), c, problem.styles_at(styles, cfg.size, cfg), cfg,
                                regions=found)  # the weights as a run uses them

    vg = jax.jit(jax.value_and_grad(objective.total_loss))
    x0 = jnp.asarray(c)
    jax.block_until_ready(vg(x0, data))
    evals = seconds(lambda i: jax.block_until_ready(vg(x0 + 1e-3 * i, data)), max(3, steps // 3))

    batched = layout == "batch1"
    if batched:  # as transfer.run stacks one job
        data = objective.Problem(data.weights, objective.stack([data.targets]), objective.stack([data.coef]), data.spec,
                                 objective.stack([data.masks]))
        x0 = x0[None]
    lr = jnp.full(x0.shape[:1], cfg.learning_rate, jnp.float32) if batched else jnp.float32(cfg.learning_rate)
    axes = objective.batch_axes(data.spec) if batched else None

    def make_step(loss_fn):
        return lambda x, state, lr, data: optimize.step(x, state, lr, data, loss_fn=loss_fn, kind=optimizer,
                                                        linesearch=linesearch, axes=axes)

    def init(x):
        return optimize.init_state(x, kind=optimizer, linesearch=linesearch, batched=batched)

    step = make_step(objective.total_loss)
    state = init(x0)
    x = jnp.array(x0)
    t = time.perf_counter()
    x, state, loss, n = step(x, state, lr, data)
    jax.block_until_ready(x)
    first = time.perf_counter() - t
    queue = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        x, state, loss, n = step(x, state, lr, data)
        queue += time.perf_counter() - t
    jax.block_until_ready(x)
    iter_s = (time.perf_counter() - t0) / steps

    # Count real evaluations (line-search trials included) with a host callback in the loss; it
    # makes dispatch synchronous, so it runs apart from the timed loop above.
    calls = [0]

    def counted_loss(x, data):
        jax.debug.callback(lambda: calls.__setitem__(0, calls[0] + 1))
        return objective.total_loss(x, data)

    counted = make_step(counted_loss)
    x, cstate = jnp.array(x0), init(x0)
    x, cstate, _, _ = counted(x, cstate, lr, data)
    jax.effects_barrier()
    calls[0] = 0
    n_count = max(2, steps // 2)
    for _ in range(n_count):
        x, cstate, _, _ = counted(x, cstate, lr, data)
    jax.effects_barrier()
    return {
        "size": f"{c.shape[1]}x{c.shape[0]}",
        "optimizer": optimizer if optimizer == "adam" else f"lbfgs/{linesearch}",
        "layout": layout + (f"/{regions}r" if regions else "") + (f"/{style_loss}" if style_loss != "gram" else ""),
        "eval_s": statistics.median(evals),
        "iter_s": iter_s,
        "evals_per_iter": calls[0] / n_count,
        "compile_s": first - iter_s,
        "py_pct": 100 * queue / steps / iter_s,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": jax.devices()[0].device_kind,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--steps", type=int, default=10, help="timed iterations per row")
    p.add_argument("--configs", nargs="+", default=[f"{o}/{l}" for o, l in CONFIGS], help="optimizer/linesearch")
    p.add_argument("--layouts", nargs="+", default=["batch1"], choices=("batch1", "single"),
                   help="batch1: the step as stylize() runs it; single: without the batch axis")
    p.add_argument("--regions", type=int, nargs="+", default=[0], help="region-mask counts to time (0: plain Gram)")
    p.add_argument("--style-losses", nargs="+", default=["gram"], choices=("gram", "wasserstein", "mrf"),
                   help="style losses to time (mrf: at its default layers relu3_1, relu4_1)")
    p.add_argument("--one", nargs=6, metavar=("SIZE", "OPT", "LS", "LAYOUT", "REGIONS", "LOSS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1], args.one[2], args.steps, args.one[3], int(args.one[4]),
                             args.one[5])))
        return 0
    header = f"{'size':>8} {'optimizer':<18} {'layout':<14} {'eval_s':>7} {'iter_s':>7} {'evals/it':>8} {'compile_s':>9} {'py_%':>5} {'peak_MB':>8}"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        rows = [(c, l, r, k) for c in args.configs for l in args.layouts for r in args.regions for k in args.style_losses]
        for cfg, layout, regions, loss in rows:
            opt, ls = cfg.split("/")
            out = subprocess.run([sys.executable, __file__, "--one", str(size), opt, ls, layout, str(regions), loss,
                                  "--steps", str(args.steps)],
                                 capture_output=True, text=True, env=os.environ)
            if out.returncode != 0:
                print(f"{size:>8} {cfg:<18} {layout:<14} failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{r['size']:>8} {r['optimizer']:<18} {r['layout']:<14} {r['eval_s']:7.3f} {r['iter_s']:7.3f} {r['evals_per_iter']:8.2f} "
                  f"{r['compile_s']:9.2f} {r['py_pct']:5.1f} {r['peak_mb']:8.0f}", flush=True)
    print(f"device: {r['device'] if 'r' in dir() else '?'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
