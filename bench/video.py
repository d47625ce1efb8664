"""Video: seconds per frame and flicker, with and without the temporal loss. Prints a table.

    python bench/video.py                          # 8 frames of a pan across the bundled photo, 256 px
    python bench/video.py --frames 6 --size 128 --steps 30 --gif side_by_side.gif

The clip is made here (``jaxstyle.examples.pan``: a camera pan across the bundled photo, 3 px a
frame at the output size), nothing is downloaded. Runs of the same settings:

  independent   every frame from the photo (--init content), no temporal loss: per-frame stylisation
  warp start    every frame from the previous output warped by the flow, no temporal loss
  temporal      warp start and the temporal loss (--temporal-weight, Ruder et al. 2016)
  temporal/N    the same with N steps for every frame after the first (--frame-steps N)
  temporal~T    the same, every frame stopping once its loss settled (--tolerance T)

Columns:
  s/frame    median seconds of a frame's optimisation (frames after the first: no compilation)
  flow_s     seconds of the forward and backward optical flow of one frame pair
  flicker    mean over frames of the squared difference between output t and output t-1 warped into
             it, where the flow between the input frames is trusted (x 1e4)
  vs indep.  flicker of the independent run / this run's
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=256, help="long side of the frames")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--steps", type=int, default=50, help="L-BFGS steps per frame")
    p.add_argument("--temporal-weight", type=float, default=None, help="default: jaxstyle's")
    p.add_argument("--gif", default=None, help="also write input | independent | temporal side by side as a GIF")
    p.add_argument("--frame-steps", type=int, default=None,
                   help="also time the temporal run with this many steps for the frames after the first")
    p.add_argument("--tolerance", type=float, default=None,
                   help="also time the temporal run with every frame stopping once its loss settled (--tolerance)")
    args = p.parse_args()

    import jax

    from jaxstyle import StyleConfig
    from jaxstyle.io import flow, frames, image
    from jaxstyle.run import video
    from jaxstyle.examples import CONTENT, STYLE, pan

    height = round(args.size * 3 / 4) // 2 * 2
    photo = image.load_image(CONTENT, args.size + 3 * args.frames)
    shots = pan(photo, args.frames, height, args.size, step=3)
    work = Path(tempfile.mkdtemp(prefix="jaxstyle-bench-video-"))
    (work / "in").mkdir()
    for t, shot in enumerate(shots):
        image.save_image(shot, work / "in" / f"{t:04d}.png")
    t0 = time.perf_counter()
    for t in range(1, len(shots)):
        flow.flow(shots[t - 1], shots[t]), flow.flow(shots[t], shots[t - 1])
    flow_s = (time.perf_counter() - t0) / (len(shots) - 1)

    config = StyleConfig(size=args.size, steps=args.steps)
    default = video.VideoOptions()
    weight = default.temporal_weight if args.temporal_weight is None else args.temporal_weight
    runs = {"independent": (video.VideoOptions(temporal_weight=0.0, warp_start=False), config),
            "warp start": (video.VideoOptions(temporal_weight=0.0), config),
            "temporal": (video.VideoOptions(temporal_weight=weight), config)}
    if args.frame_steps:
        runs[f"temporal/{args.frame_steps}"] = (video.VideoOptions(temporal_weight=weight, frame_steps=args.frame_steps),
                                                config)
    if args.tolerance:
        runs[f"temporal~{args.tolerance:g}"] = (video.VideoOptions(temporal_weight=weight),
                                                config.replace(tolerance=args.tolerance))
    outputs, rows = {}, []
    for name, (options, run_config) in runs.items():
        seconds, steps = [], []
        folder = work / "".join(c if c.isalnum() else "_" for c in name)
        video.stylize_video(work / "in", [str(STYLE)], folder, run_config, options,
                            progress=lambda done: (seconds.append(done.seconds), steps.append(done.steps)))
        outputs[name] = [image.load_image(folder / video.frame_name(t)) for t in range(len(shots))]
        rows.append((name, statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0],
                     flow.flicker(shots, outputs[name]), steps))
    print(f"{len(shots)} frames of {shots[0].shape[1]}x{shots[0].shape[0]}, {args.steps} L-BFGS steps a frame, "
          f"temporal weight {weight:g}, flow {default.flow} ({flow_s:.3f} s a frame pair), "
          f"device {jax.devices()[0].device_kind}")
    header = f"{'run':<14} {'s/frame':>8} {'flicker':>9} {'vs indep.':>9}  steps per frame"
    print(header)
    print("-" * len(header))
    for name, per_frame, value, steps in rows:
        print(f"{name:<14} {per_frame:8.2f} {1e4 * value:9.2f} {rows[0][2] / value:8.1f}x  {' '.join(map(str, steps))}")
    if args.gif:
        side = [np.concatenate([shots[t], outputs["independent"][t], outputs["temporal"][t]], axis=1)
                for t in range(len(shots))]
        paths = [image.save_image(frame, work / f"side_{t:04d}.png") for t, frame in enumerate(side)]
        frames.write(paths, args.gif, 6)
        print(f"wrote {args.gif} (input | independent | temporal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
