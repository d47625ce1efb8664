"""Image quality per second: coarse-to-fine multi-scale against a single-scale run at the final size.

    python bench/multiscale.py --size 384 --steps 60 --scales 3 --scale-steps 40 --final-steps 30

Quality is the objective at the final size (the same loss for both, evaluated on each result).
The single-scale run's loss is also read at the wall time the multi-scale run took, from its
per-step history, so the two are compared at equal time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import images  # noqa: E402

import jaxstyle  # noqa: E402
from jaxstyle.run import problem, transfer  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--steps", type=int, default=60, help="single-scale iterations")
    p.add_argument("--scales", type=int, default=3)
    p.add_argument("--scale-steps", type=int, default=40)
    p.add_argument("--final-steps", type=int, default=30)
    p.add_argument("--init", default="noise")
    args = p.parse_args()
    content, style = images()
    base = jaxstyle.StyleConfig(size=args.size, init=args.init)
    jaxstyle.stylize(content, style, base.replace(steps=1))  # warm the final-size compilation

    t = time.perf_counter()
    single = jaxstyle.stylize(content, style, base.replace(steps=args.steps))
    single_s = time.perf_counter() - t
    t = time.perf_counter()
    multi = jaxstyle.stylize(content, style, base.replace(steps=args.final_steps, scales=args.scales,
                                                          scale_steps=args.scale_steps))
    multi_s = time.perf_counter() - t

    c, styles = problem.prepare(content, style, base)
    weights = problem.network(base, jaxstyle.load_bundled())  # as a run uses them
    data = problem.make_problem(weights, c, problem.styles_at(styles, base.size, base), base)

    def loss(img):
        return float(transfer.loss_terms(jnp.asarray(img), data)["total"])

    per_step = single_s / args.steps
    equal_step = int(multi_s / per_step)
    at_equal_time = single.history[min(len(single.history) - 1, equal_step)]
    print(f"final size {c.shape[1]}x{c.shape[0]}, init {args.init}, sizes {base.replace(scales=args.scales).sizes()}")
    print(f"{'run':<34} {'wall_s':>7} {'loss@final size':>16}")
    print(f"{'single scale, %d steps' % args.steps:<34} {single_s:7.1f} {loss(single.image):16.4f}")
    print(f"{'multi-scale, %dx%d + %d steps' % (args.scales - 1, args.scale_steps, args.final_steps):<34} {multi_s:7.1f} {loss(multi.image):16.4f}")
    if equal_step < args.steps:
        print(f"single scale at the multi-scale's wall time (step {equal_step}): loss {at_equal_time:.4f}")
    else:
        print(f"the multi-scale run took longer than the single-scale run ({multi_s:.1f} s vs {single_s:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
