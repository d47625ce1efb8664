"""How much sooner ``--tolerance`` ends a default run, and what it leaves undone. Prints a table.

    python bench/tolerance.py                          # 512 px, 300 steps, the pairs of time_to_loss.py
    python bench/tolerance.py --size 256 --pairs chelsea:starry_night --tolerances 0.01 0.003

One run per pair at default settings otherwise (``--steps`` steps, never stopped early), its image
kept at every check (every ``chunk`` = 10 steps). Stopping changes nothing before the stop
(``tests/test_transfer.py``), so each tolerance's run is this run's prefix: where it would stop
(``transfer.settled`` on the losses so far, at each check), is read off the one run. Columns:
  stop       the step it stops at (of --steps), and that as a fraction of the steps
  loss       best loss by then / the full run's best loss
  mean|d|    mean absolute difference from the full run's image, in 8-bit levels (p99: 99th percentile)
The time saved is the steps saved: every step costs the same.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.time_to_loss import DEFAULT_PAIRS, find  # noqa: E402

TOLERANCES = (0.01, 0.005, 0.003, 0.002, 0.001)


def stop_step(history: np.ndarray, tolerance: float, chunk: int) -> int:
    """The step a run with ``tolerance`` stops at: the first check where its losses have settled."""
    from jaxstyle.transfer import settled

    checks = list(range(chunk, len(history), chunk))
    return next((n for n in checks if settled(list(history[:n]), tolerance)), len(history))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--pairs", nargs="+", default=list(DEFAULT_PAIRS), metavar="CONTENT:STYLE")
    ap.add_argument("--tolerances", nargs="+", type=float, default=list(TOLERANCES))
    args = ap.parse_args()

    import jaxstyle

    for pair in args.pairs:
        content, style = (find(name) for name in pair.split(":"))
        config = jaxstyle.StyleConfig(size=args.size, steps=args.steps)
        images = {}
        t0 = time.perf_counter()
        result = jaxstyle.stylize(str(content), str(style), config,
                                  callback=lambda p: images.__setitem__(p.step, np.clip(p.image(), 0, 1)))
        seconds = time.perf_counter() - t0
        full = np.round(images[args.steps] * 255)
        best = np.minimum.accumulate(result.history.astype(np.float64))
        h, w = full.shape[:2]
        print(f"\n{pair}, {w}x{h}, {args.steps} steps in {seconds:.0f} s ({seconds / args.steps:.2f} s/step), "
              f"loss {best[-1]:.4g}", flush=True)
        print("| --tolerance | stop | loss / full run's | mean abs difference, 8-bit levels (p99) |")
        print("|---|---|---|---|")
        for tolerance in args.tolerances:
            n = stop_step(result.history, tolerance, config.chunk)
            diff = np.abs(np.round(images[n] * 255) - full)
            print(f"| {tolerance:g} | {n} ({n / args.steps:.2f}) | {best[n - 1] / best[-1]:.3f} | "
                  f"{diff.mean():.1f} ({np.percentile(diff, 99):.0f}) |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
