"""Throughput of a batched sweep group against the same jobs run one after another, and of a whole
sweep on N local processes against one.

    python bench/sweep.py --size 256 --jobs 8 --steps 10
    python bench/sweep.py --size 128 --jobs 8 --steps 30 --processes 2

Batched vs sequential: the same jobs (one content, one style, different style weights and seeds),
timed after their compilation; the compile count of the batched step is printed too.
``--processes N``: `jaxstyle sweep` on a spec of those jobs, once alone and once as N processes
(`--distributed`, loopback coordinator) writing one shared folder; wall time of each whole
command, start-up and compilation included, as a user waits for it.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import images  # noqa: E402

import jaxstyle  # noqa: E402
from jaxstyle.run.batch import Job, stylize_batch  # noqa: E402


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
    p.add_argument("--processes", type=int, default=None, help="compare a whole sweep on N local processes with one")
    args = p.parse_args()
    if args.processes:
        return processes(args)
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


def _sweep(spec: Path, out: Path, n: int) -> float:
    command = [sys.executable, "-m", "jaxstyle", "sweep", str(spec), "-o", str(out), "--quiet"]
    t = time.perf_counter()
    if n == 1:
        subprocess.run(command, check=True)
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = [subprocess.Popen(command + ["--distributed", "--coordinator", f"127.0.0.1:{port}",
                                             "--num-processes", str(n), "--process-id", str(i)]) for i in range(n)]
        if any(p.wait() for p in procs):
            raise SystemExit("a process failed")
    return time.perf_counter() - t


def processes(args) -> int:
    content, style = images()
    spec = {"base": {"size": args.size, "steps": args.steps, "content": str(content), "style": str(style)},
            "zip": {"style_weight": [10.0 * (1 + i % 4) for i in range(args.jobs)], "seed": list(range(args.jobs))}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec))
        alone = _sweep(path, Path(tmp) / "one", 1)
        several = _sweep(path, Path(tmp) / "many", args.processes)
    print(f"{args.jobs} jobs at {args.size} px, {args.steps} steps, one compiled group")
    print(f"1 process     {alone:8.1f} s  ({60 * args.jobs / alone:.2f} jobs/min)")
    print(f"{args.processes} processes   {several:8.1f} s  ({60 * args.jobs / several:.2f} jobs/min)   "
          f"ratio {alone / several:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
