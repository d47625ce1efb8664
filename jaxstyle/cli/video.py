"""``jaxstyle video``: a video or a folder of frames, stylised frame after frame, resumable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import JaxstyleError
from ..io.flow import FLOWS
from ..io.frames import VIDEO_SUFFIXES, is_video_file, parse_frames
from ..io.image import OUTPUT_FORMATS, check_writable, same_file
from ..model.hub import DEFAULT as DEFAULT_WEIGHTS
from ..model.hub import load as load_weights
from ..net.store import load as load_network
from ..run.video import VideoOptions, frames_folder, stylize_video
from .endings import Bar, resumable
from .options import DEVICES, PRESETS, add, add_config_options, check_outputs, config_from_args, device, given_options


def add_parsers(sub) -> None:
    """The ``video`` command."""
    default = VideoOptions()
    v = sub.add_parser("video", prog="jaxstyle video", help="stylise a video, frame after frame, temporally consistent",
                       description="Stylise a video (a file, or a folder of frames) frame after frame, each frame started "
                                   "from the previous output warped by the optical flow and held close to it by a "
                                   "temporal loss (Ruder, Dosovitskiy & Brox 2016). Finished frames are kept in "
                                   "OUT.frames/ (or the output folder) with a manifest: rerunning the same command "
                                   "resumes at the first missing frame. Needs the video extra: pip install 'jaxstyle[video]'.")
    v.add_argument("video", help="input video file or folder of frames (sorted by name)")
    v.add_argument("styles", nargs="*", metavar="style", help="style image(s); several are blended equally")
    add(v, "--net", default=None, metavar="NET", help="stylise each frame with this network (jaxstyle train) "
        "instead of paintings: one forward pass per frame")
    add(v, "-o", "--output", required=True,
         help=f"output video ({', '.join(VIDEO_SUFFIXES)}) or a folder for the frames")
    add_config_options(v)
    add(v, "--temporal-weight", type=float, default=default.temporal_weight,
         help="weight of the temporal loss (0: none)")
    add(v, "--flow", choices=FLOWS, default=default.flow, help="optical flow (OpenCV)")
    add(v, "--frames", default=None, metavar="A:B", shown="all", help="frames A to B-1 only (0-based)")
    add(v, "--fps", type=float, default=None, shown="the input's", help="frame rate of the output video")
    add(v, "--warp-start", action=argparse.BooleanOptionalAction, default=default.warp_start,
         help="start each frame from the warped previous output (else from --init)")
    add(v, "--frame-steps", type=int, default=None, metavar="N", shown="--steps",
         help="iterations for each frame after the first (it starts near its result)")
    add(v, "--weights", default=DEFAULT_WEIGHTS, help="as for the main command")
    add(v, "--preset", choices=tuple(PRESETS), default="default", help="as for the main command")
    add(v, "--device", choices=DEVICES, default=None, shown="JAX's default", help="run on this kind of device")
    add(v, "--quiet", action="store_true", shown="off", help="no progress bar")
    v.set_defaults(run=run_video, save_every=None)


def run_video(args: argparse.Namespace, argv) -> int:
    """``jaxstyle video``: stylise a video or a folder of frames, resumably."""
    config = config_from_args(args, given_options(argv))
    options = VideoOptions(args.temporal_weight, args.flow, parse_frames(args.frames), args.fps, args.warp_start,
                           args.frame_steps).validate()
    output = Path(args.output)
    if output.suffix.lower() in OUTPUT_FORMATS:
        raise JaxstyleError(f"-o {args.output!r} is an image; give a video file (.mp4, …) or a folder for the frames")
    if bool(args.styles) == bool(args.net):
        raise JaxstyleError("give the style image(s), or a network with --net (one of the two)")
    network = load_network(args.net) if args.net else None
    inputs = {"input video": args.video, **{f"style image {i + 1}": s for i, s in enumerate(args.styles)}}
    if is_video_file(output):
        check_outputs({"-o": output}, inputs)
    folder = frames_folder(output)
    if folder.exists() and not folder.is_dir():
        raise JaxstyleError(f"{str(folder)!r} is a file, not a folder for the frames; choose another -o")
    if folder.is_dir() and Path(args.video).is_dir() and same_file(folder, args.video):
        raise JaxstyleError(f"-o {args.output!r} is the input folder: its frames would be overwritten; choose another -o")
    # the frames are written into the folder (or the folder made beside them): refused now, not after the first frame
    check_writable(folder / "frame_000000.png" if folder.is_dir() else folder, "the frames")
    weights = load_weights(args.weights) if network is None else None
    bar = Bar(args.quiet, unit="frame", desc="video")

    def progress(p):
        loss = {} if network is not None else {"loss": f"{p.loss:.4g}"}
        bar.show(p.done, p.total, s_per_frame=f"{p.seconds:.2f}", **loss)

    with bar, resumable(lambda: len(list(folder.glob("frame_*.png"))) if folder.is_dir() else 0, "frame", folder), \
            device(args.device):
        summary = stylize_video(args.video, args.styles, output, config, options, weights=weights, progress=progress,
                                network=network)
    per_frame = f", {summary['seconds_per_frame']:.1f} s per frame" if summary["seconds_per_frame"] else ""
    print(f"wrote {args.output} ({summary['frames']} frame(s): {summary['done']} stylised now, {summary['skipped']} "
          f"already done{per_frame}; frames in {summary['folder']})", file=sys.stderr)
    return 0
