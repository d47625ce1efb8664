"""How much sooner ``--tolerance`` ends a default run, and what it leaves undone. Prints a table.

    python bench/tolerance.py                          # 512 px, 300 steps, the pairs of time_to_loss.py
    python bench/tolerance.py --size 256 --pairs chelsea:starry_night --tolerances 0.01 0.003
    python bench/tolerance.py --pairs tubingen:the_scream --figure tolerance.jpg   # + crops side by side

One run per pair at default settings otherwise (``--steps`` steps, never stopped early), its image
kept at every check (every ``chunk`` = 10 steps). Stopping changes nothing before the stop
(``tests/test_transfer.py``), so each tolerance's run is this run's prefix: where it would stop
(``transfer.settled`` on the losses so far, at each check), is read off the one run. Columns:
  stop       the step it stops at (of --steps), and that as a fraction of the steps
  loss       best loss by then / the full run's best loss
  mean|d|    mean absolute difference from the full run's image, in 8-bit levels (p99: 99th percentile)
The time saved is the steps saved: every step costs the same. ``--figure`` also saves, for the first
pair, the middle 256x256 pixels of each tolerance's image beside the full run's, at full resolution.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # jaxstyle, from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks beside this one
from time_to_loss import DEFAULT_PAIRS, find  # noqa: E402

TOLERANCES = (0.01, 0.005, 0.003, 0.002, 0.001)


def stop_step(history: np.ndarray, tolerance: float, chunk: int) -> int:
    """The step a run with ``tolerance`` stops at: the first check where its losses have settled."""
    from jaxstyle.run.transfer import settled

    checks = list(range(chunk, len(history), chunk))
    return next((n for n in checks if settled(list(history[:n]), tolerance)), len(history))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--pairs", nargs="+", default=list(DEFAULT_PAIRS), metavar="CONTENT:STYLE")
    ap.add_argument("--tolerances", nargs="+", type=float, default=list(TOLERANCES))
    ap.add_argument("--figure", type=Path, help="save the first pair's crops side by side to this image")
    args = ap.parse_args()

    import jaxstyle
    from jaxstyle.io.image import save_pil
    from jaxstyle.io.sheet import contact_sheet

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
        crops, labels = [], []
        for tolerance in args.tolerances:
            n = stop_step(result.history, tolerance, config.chunk)
            diff = np.abs(np.round(images[n] * 255) - full)
            print(f"| {tolerance:g} | {n} ({n / args.steps:.2f}) | {best[n - 1] / best[-1]:.3f} | "
                  f"{diff.mean():.1f} ({np.percentile(diff, 99):.0f}) |", flush=True)
            crops.append(middle(images[n]))
            labels.append(f"{tolerance:g}: {n} steps")
        if args.figure is not None and pair == args.pairs[0]:
            sheet = contact_sheet([crops + [middle(images[args.steps])]], col_labels=labels + [f"{args.steps} steps"],
                                  title=f"{pair}, {w}x{h}, middle 256x256 px: --tolerance, steps run", cell=256)
            save_pil(sheet, args.figure)
            print(f"wrote {args.figure}")
    return 0


def middle(image: np.ndarray, side: int = 256) -> np.ndarray:
    h, w = image.shape[:2]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return image[top:top + side, left:left + side]


if __name__ == "__main__":
    raise SystemExit(main())
