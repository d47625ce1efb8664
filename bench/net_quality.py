"""A trained network against ``stylize`` on held-out photos: time, and one fixed VGG judge; the README figure.

    python bench/net_quality.py NET.safetensors --style starry_night --photos chelsea golden_gate \
        --size 256 --figure notebooks/figures/fast.jpg

For each photo (found among the bundled examples and the classic images, ``timing.IMAGES``): the
network's output at ``--size`` (seconds of one forward pass after compilation) and ``stylize``'s
with its defaults (its own time, compilation excluded), judged by ``bench/losses.judge``: the
content error at relu4_2 and the mean Gram error over relu1_1 … relu5_1, both relative to the
target, with the painting at the same size; lower is closer. The figure: photo, network output,
stylize output, with the time each took.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from losses import judge  # noqa: E402
from time_to_loss import find  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("network")
    ap.add_argument("--style", default="starry_night")
    ap.add_argument("--photos", nargs="+", default=["chelsea", "golden_gate"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--figure", default=None, help="also write photo | network | stylize rows (an image file)")
    ap.add_argument("--figure-photos", nargs="+", default=["chelsea"],
                    help="the photos shown in the figure (default: the bundled one, CC0)")
    args = ap.parse_args()

    import jaxstyle
    from jaxstyle import net
    from jaxstyle.io.image import load_image, save_pil
    from jaxstyle.io.sheet import contact_sheet

    weights = jaxstyle.load_bundled()
    network = net.load(args.network)
    painting = load_image(find(args.style), args.size)
    config = jaxstyle.StyleConfig(size=args.size)
    print(f"network: {network.training.get('steps')} steps on {network.training.get('photos')} photos, "
          f"width {network.width}; stylize: {config.steps} steps, defaults")
    print("| photo | method | seconds | content error | Gram error |")
    print("|---|---|---|---|---|")
    rows, labels = [], []
    for name in args.photos:
        photo = load_image(find(name), args.size)
        net.apply(network, photo)  # compiles for this size
        t = time.perf_counter()
        fast = net.apply(network, photo)
        fast_s = time.perf_counter() - t
        result = jaxstyle.stylize(photo, painting, config, weights=weights)
        steps = len(result.history)  # its first step compiles: counted as the mean of the others
        slow_s = (result.timings["optimize"] - result.timings["first_step"]) * steps / (steps - 1)
        for method, image, seconds in (("network", fast, fast_s), ("stylize", result.image, slow_s)):
            content, style = judge(weights, image, photo, painting)
            print(f"| {name} | {method} | {seconds:.2f} | {content:.3f} | {style:.3f} |", flush=True)
        if name in args.figure_photos:
            rows.append([photo, fast, result.image])
            labels.append(f"network {fast_s:.2f} s, stylize {slow_s:.0f} s")
    if args.figure:
        sheet = contact_sheet(rows, labels, ["photo (held out)", "network", "stylize"],
                              title=f"{args.size} px, 2-core CPU; network trained {network.training.get('steps')} "
                                    f"steps on {network.training.get('photos')} photos", cell=args.size)
        save_pil(sheet.convert("RGB"), args.figure)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
