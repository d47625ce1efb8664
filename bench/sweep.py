"""Throughput of a batched sweep group against the same jobs run one after another.

    python bench/sweep.py --size 256 --jobs 8 --steps 10

Both sides use the same jobs (one content, one style, different style weights and seeds) and are
timed after their compilation; the compile count of the batched step is printed too.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import images  # noqa: E402

import jaxstyle  # noqa: E402
from jaxstyle.batch import Job, stylize_batch  # noqa: E402


class _Count(logging.Handler):
    def __init__(self):
        super().__init__()
        self.steps = 0

    def emit(self, record):
        self.steps += record.getMessage().startswith("Compiling jit(step)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    content, style = images()
    base = jaxstyle.StyleConfig(size=args.size, steps=args.steps)
    configs = [base.replace(style_weight=10.0 * (1 + i % 4), seed=i) for i in range(args.jobs)]
    jobs = [Job(content, (style,), c) for c in configs]

    counter = _Count()
    logging.getLogger("jax").addHandler(counter)
    with jax.log_compiles(True):
        t = time.perf_counter()
        stylize_batch(jobs[:1] * args.jobs, batch_size=args.jobs, on_result=None)  # compile + warm
        warm_batch = time.perf_counter() - t
        t = time.perf_counter()
        stylize_batch(jobs, batch_size=args.jobs)
        batched = time.perf_counter() - t
    logging.getLogger("jax").removeHandler(counter)

    jaxstyle.stylize(content, style, configs[0].replace(steps=1))  # compile + warm
    t = time.perf_counter()
    for c in configs:
        jaxstyle.stylize(content, style, c)
    sequential = time.perf_counter() - t
    print(f"device: {jax.devices()[0].device_kind} x{jax.local_device_count()}, {args.jobs} jobs at {args.size} px, {args.steps} steps")
    print(f"batched    {batched:8.1f} s  ({args.jobs * args.steps / batched:.2f} image-steps/s; first call incl. compile {warm_batch:.1f} s)")
    print(f"sequential {sequential:8.1f} s  ({args.jobs * args.steps / sequential:.2f} image-steps/s)")
    print(f"speed-up   {sequential / batched:8.2f}x   compilations of the batched step: {counter.steps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
