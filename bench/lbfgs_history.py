"""L-BFGS memory in float32 or bfloat16: the loss reached after the same steps, and the update's memory.

    python bench/lbfgs_history.py --size 256 --steps 150

For each photo/painting pair (from the classic images' folder, timing.IMAGES, when present; else the bundled example), runs
the default L-BFGS set-up twice, with the memory of past steps held in float32 and in bfloat16
(``--lbfgs-history``), and prints the loss at a few steps and the bfloat16/float32 ratio. Then
compiles the optimizer update alone at 1024x768 and prints its bytes per pixel (arguments and
temporaries, from XLA's memory_analysis): what the memory costs whatever the loss's evaluation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import SHARED, images  # noqa: E402

import jaxstyle  # noqa: E402
from jaxstyle.optim import lbfgs, optimize  # noqa: E402

PAIRS = (("tubingen.jpg", "starry_night.jpg"), ("golden_gate.jpg", "the_scream.jpg"),
         ("tubingen.jpg", "shipwreck.jpg"))


def pairs() -> list:
    found = [(SHARED / c, SHARED / s) for c, s in PAIRS if (SHARED / c).is_file() and (SHARED / s).is_file()]
    return found or [images()]


def update_bytes(dtype: str, height: int = 768, width: int = 1024) -> dict:
    x = jnp.zeros((height, width, 3), jnp.float32)
    memory = lbfgs.Memory(optimize.LBFGS_MEMORY, dtype)
    state = optimize.init_state(x, kind="lbfgs", memory=memory)
    compiled = optimize.jitted_update.lower(x, state, jnp.float32(1), jnp.float32(1), x, kind="lbfgs",
                                           memory=memory).compile()
    m = compiled.memory_analysis()
    return {k: getattr(m, f"{k}_size_in_bytes") / (height * width) for k in ("argument", "temp")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=150)
    args = p.parse_args()
    marks = sorted({m for m in (10, 25, 50, 100, args.steps) if m <= args.steps})
    print(f"| pair | memory | " + " | ".join(f"loss @ {m}" for m in marks) + " |")
    print("|---|---|" + "---|" * len(marks))
    for content, style in pairs():
        losses = {}
        for dtype in ("float32", "bfloat16"):
            cfg = jaxstyle.StyleConfig(size=args.size, steps=args.steps, lbfgs_history=dtype)
            result = jaxstyle.stylize(content, style, cfg)
            at = [float(result.history[m]) if m < args.steps else float(result.terms["total"]) for m in marks]
            losses[dtype] = at
            print(f"| {Path(content).stem} × {Path(style).stem} | {dtype} | " + " | ".join(f"{v:.4g}" for v in at) + " |",
                  flush=True)
        ratio = [b / f for b, f in zip(losses["bfloat16"], losses["float32"])]
        print(f"| | bf16 / f32 | " + " | ".join(f"{r:.3f}" for r in ratio) + " |", flush=True)
    for dtype in ("float32", "bfloat16"):
        b = update_bytes(dtype)
        print(f"update at 1024x768, {dtype} memory: arguments {b['argument']:.0f} B/px, temporaries {b['temp']:.0f} B/px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
