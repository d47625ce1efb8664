"""Every registered style loss on the same pairs, stopped at the same wall time, judged by one fixed VGG.

    python bench/losses.py                                  # 3 classic pairs at 256 px, 60 s a run
    python bench/losses.py --size 128 --seconds 20 --pairs chelsea:starry_night

Each loss optimises its own objective from the photo with jaxstyle's defaults; each run is stopped
at the first reported step past ``--seconds`` (compilation not counted). The judge is neutral to
the losses: the bundled VGG-19's content error at relu4_2 (squared error over the photo's squared
norm) and its Gram-style error averaged over relu1_1 … relu5_1 (the same, of Gram matrices). Prints a
table; ``--sheet PNG`` also draws the images (pairs by rows, losses by columns).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from time_to_loss import DEFAULT_PAIRS, find  # noqa: E402

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


class _Enough(Exception):
    """Raised by the progress callback to end a run at its time budget."""


def judge(weights, image, photo, painting) -> tuple[float, float]:
    """(content error at relu4_2, mean Gram error over relu1_1 … relu5_1), each relative to the target."""
    import jax.numpy as jnp

    import jaxstyle
    from jaxstyle import losses

    fx = jaxstyle.features(weights, jnp.asarray(image), ("relu4_2",) + STYLE_LAYERS)
    fp = jaxstyle.features(weights, jnp.asarray(photo), ("relu4_2",))
    fa = jaxstyle.features(weights, jnp.asarray(painting), STYLE_LAYERS)
    content = float(jnp.sum(jnp.square(fx["relu4_2"] - fp["relu4_2"])) / jnp.sum(jnp.square(fp["relu4_2"])))
    style = [float(jnp.sum(jnp.square(losses.gram(fx[k]) - losses.gram(fa[k]))) / jnp.sum(jnp.square(losses.gram(fa[k]))))
             for k in STYLE_LAYERS]
    return content, sum(style) / len(style)


def run(pair: str, name: str, size: int, seconds: float, weights):
    import jaxstyle
    from jaxstyle.io.image import load_image

    content, style = (find(n) for n in pair.split(":"))
    config = jaxstyle.StyleConfig(size=size, steps=100000, style_loss=name, chunk=5)
    jaxstyle.stylize(content, style, config.replace(steps=5), weights=weights)  # compile outside the clock
    kept = {}

    def callback(p):
        if p.elapsed >= seconds:
            kept.update(image=p.image(), step=p.step, elapsed=p.elapsed)
            raise _Enough

    try:
        jaxstyle.stylize(content, style, config, weights=weights, callback=callback)
    except _Enough:
        pass
    photo = load_image(content, size)
    painting = load_image(style, size)
    return kept, judge(weights, kept["image"], photo, painting)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--pairs", nargs="+", default=list(DEFAULT_PAIRS))
    parser.add_argument("--losses", nargs="+", default=None, help="default: every registered loss")
    parser.add_argument("--sheet", default=None, help="also write the images as a contact sheet (PNG)")
    args = parser.parse_args()

    import jaxstyle
    from jaxstyle import losses
    from jaxstyle.io.image import save_pil
    from jaxstyle.io.sheet import contact_sheet

    weights = jaxstyle.load_bundled()
    names = args.losses or list(losses.names())
    print(f"{'pair':<26} {'loss':<12} {'steps':>6} {'s':>6} {'content err':>12} {'Gram err':>10}", flush=True)
    rows = []
    for pair in args.pairs:
        row = []
        for name in names:
            kept, (content, style) = run(pair, name, args.size, args.seconds, weights)
            print(f"{pair:<26} {name:<12} {kept['step']:>6} {kept['elapsed']:>6.1f} {content:>12.4f} {style:>10.4f}",
                  flush=True)
            row.append(kept["image"])
        rows.append(row)
    if args.sheet:
        save_pil(contact_sheet(rows, args.pairs, names, title=f"{args.size} px, {args.seconds:g} s each"), args.sheet)
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
