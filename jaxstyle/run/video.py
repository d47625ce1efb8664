"""Temporally consistent video style transfer (Ruder, Dosovitskiy & Brox, "Artistic style transfer for
videos", GCPR 2016), frame after frame, resumable.

Frame t starts from the previous *output* warped into it by the optical flow (``jaxstyle.io.flow``)
and adds a temporal term ``weight * 1/D sum c (x - warped)^2`` that keeps it close to that warped
frame wherever the flow is trusted (c, the forward-backward consistency mask). The first frame runs
with the image defaults (``config.init``) and a temporal weight of 0, so every frame runs the same
compiled program (:class:`problem.Temporal` is a traced part of the objective).

Every finished frame is written atomically and recorded in a manifest (``manifest.jsonl`` in the
frames folder, one line per frame, fsynced), under a key of the settings. A rerun with the same
settings resumes at the first missing frame (a killed run loses at most the frame in progress);
other settings are refused rather than mixed. The output video is assembled from the frames at the
end, and again on every rerun.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..io import color, flow, frames
from ..io import image as image_io
from ..io.files import atomic_write
from ..config import StyleConfig
from ..errors import JaxstyleError
from .problem import Prepared, Temporal, load_regions, prepare, prepare_colour
from .transfer import run
from ..model.weights import VGGWeights, load_bundled
from ..net.inference import apply as apply_network
from ..net.store import Network

MANIFEST = "manifest.jsonl"
SETTINGS = "settings.json"
TEMPORAL_WEIGHT = 200.0  # Ruder et al.'s lambda_temporal = 200 (see VideoOptions)


@dataclass(frozen=True)
class VideoOptions:
    """What a video adds to a :class:`StyleConfig`.

    Attributes:
      temporal_weight: weight of the temporal term (0: frames are independent, except that each
        still starts from the warped previous output). Ruder et al. use 200 with their content and
        style weights; with jaxstyle's relative normalisation (each term near one at the start) 200
        also cuts the flicker several times (``bench/video.py``).
      flow: ``"dis"`` (default; fast) or ``"farneback"``, from OpenCV.
      frames: ``(first, stop)``, 0-based, stop excluded (``None``: to the end).
      fps: frame rate of the output video; ``None``: the input's (24 for a folder of frames).
      warp_start: start each frame from the previous output warped into it (Ruder et al.'s best
        initialisation); ``False``: from ``config.init``, like independent images (with
        ``temporal_weight=0``: per-frame stylisation, the flickering baseline).
      frame_steps: iterations for every frame after the first (which runs ``config.steps``): a
        frame that starts from the warped previous output needs fewer (Ruder et al. also spend
        fewer on them); ``None``: ``config.steps``. The step program is the same: no recompilation.
    """

    temporal_weight: float = TEMPORAL_WEIGHT
    flow: str = "dis"
    frames: tuple[int, int | None] = (0, None)
    fps: float | None = None
    warp_start: bool = True
    frame_steps: int | None = None

    def validate(self) -> "VideoOptions":
        if self.frame_steps is not None and (isinstance(self.frame_steps, bool) or not isinstance(self.frame_steps, int)
                                             or self.frame_steps < 1):
            raise JaxstyleError(f"--frame-steps (={self.frame_steps!r}) must be a positive number of iterations")
        if not (isinstance(self.temporal_weight, (int, float)) and np.isfinite(self.temporal_weight)
                and self.temporal_weight >= 0):
            raise JaxstyleError(f"--temporal-weight (={self.temporal_weight!r}) must be a finite number >= 0, e.g. 200")
        if self.flow not in flow.FLOWS:
            raise JaxstyleError(f"--flow (={self.flow!r}) must be one of {', '.join(flow.FLOWS)}")
        if self.fps is not None and not (np.isfinite(self.fps) and 0 < self.fps <= 1000):
            raise JaxstyleError(f"--fps (={self.fps!r}) must be a frame rate in (0, 1000], e.g. 24")
        return self


@dataclass(frozen=True)
class FrameDone:
    """What the progress callback receives after each frame."""

    frame: int  # the frame's number in the input
    done: int  # frames of the selection finished so far (resumed ones included)
    total: int  # frames in the selection
    seconds: float  # this frame's optimisation
    loss: float
    path: Path  # the frame's image
    steps: int  # iterations it ran: fewer than asked where its loss settled first (tolerance)


def require_extra() -> None:
    """Refuse, in one line naming the fix, when the video extra (PyAV, OpenCV) is not installed."""
    for name in ("av", "cv2"):
        flow.video_extra(name)


def frames_folder(output: str | os.PathLike) -> Path:
    """Where the frames of ``output`` go: beside a video file (``OUT.mp4.frames/``), or the folder itself."""
    output = Path(output)
    return output.with_name(output.name + ".frames") if frames.is_video_file(output) else output


def check_owned(folder: Path) -> None:
    """Refuse a frames folder holding files of the names this module writes (``settings.json``,
    ``manifest.jsonl``, ``frame_*.png``) that an earlier ``jaxstyle video`` did not write: they
    would be overwritten. A folder of ours carries our settings file, written before anything else."""
    if not folder.is_dir():
        return
    try:
        ours = isinstance(json.loads((folder / SETTINGS).read_text()).get("key"), str)
    except (OSError, ValueError, AttributeError):
        ours = False
    if ours:
        return
    theirs = sorted(p.name for p in folder.iterdir() if p.name in (SETTINGS, MANIFEST)
                    or (p.name.startswith("frame_") and p.suffix == ".png"))
    if theirs:
        shown = ", ".join(theirs[:3]) + (f" and {len(theirs) - 3} more" if len(theirs) > 3 else "")
        raise JaxstyleError(f"the frames folder {str(folder)!r} holds files jaxstyle video did not write ({shown}), "
                            "which it would overwrite; choose a new or empty folder")


def frame_name(index: int) -> str:
    """File name of the finished frame ``index`` in the frames folder."""
    return f"frame_{index:06d}.png"


def settings_key(source: frames.Source, styles: Sequence[str], config: StyleConfig, options: VideoOptions,
                 weights_sha256: str) -> tuple[str, dict]:
    """A key of everything a frame depends on (not the output frame rate), and the settings it hashes."""
    settings = {"video": str(Path(source.path).resolve()), "first_frame": source.start,
                "styles": [str(Path(s).resolve()) for s in styles], "config": dataclasses.asdict(config),
                "temporal_weight": float(options.temporal_weight), "flow": options.flow, "warp_start": options.warp_start,
                "frame_steps": options.frame_steps,
                "weights_sha256": weights_sha256}
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16], settings


def finished(folder: Path, key: str, first: int, stop: int | None = None) -> dict[int, dict]:
    """The frames already done under ``key``, from ``first`` on without a gap (and before ``stop``):
    ``{frame: entry}``.

    A torn last line (a kill mid-write) is ignored; entries under another key mean the folder holds
    another video's frames, which are refused, not mixed in.
    """
    path = folder / MANIFEST
    if not path.is_file():  # a folder of someone else's frames was refused before (check_owned)
        return {}
    entries = {}
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("key") != key:
            raise JaxstyleError(f"{folder} holds frames made with other settings; delete the folder or choose "
                                "another -o (a rerun resumes only with the same input, paintings and options)")
        if (folder / entry["file"]).is_file():
            entries[entry["frame"]] = entry
    done, index = {}, first
    while index in entries and (stop is None or index < stop):
        done[index] = entries[index]
        index += 1
    return done


def _record(folder: Path, entry: dict) -> None:
    with open(folder / MANIFEST, "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _link(previous: np.ndarray, previous_output: np.ndarray, frame: np.ndarray, options: VideoOptions,
          config: StyleConfig) -> Temporal:
    """Frame t's temporal term: the previous output warped by the flow from frame t to frame t-1,
    weighted by the consistency of the forward and backward flows."""
    forward = flow.flow(previous, frame, options.flow)
    backward = flow.flow(frame, previous, options.flow)
    warped = np.clip(flow.warp(previous_output, backward), 0.0, 1.0)
    if config.color == "luminance":  # the optimisation runs on luminance; colour comes back at the end
        warped = color.luminance_image(warped)
    return Temporal(warped.astype(np.float32), flow.consistency(forward, backward), float(options.temporal_weight))


def stylize_video(video: str | os.PathLike, styles: Sequence[str], output: str | os.PathLike,
                  config: StyleConfig = StyleConfig(), options: VideoOptions = VideoOptions(), *,
                  weights: VGGWeights | None = None, progress: Callable[[FrameDone], None] | None = None,
                  network: Network | None = None) -> dict:
    """Stylise the frames of ``video`` (a file or a folder of frames) into ``output`` (a video file,
    or a folder for the frames), resuming where a previous run with the same settings stopped.

    With ``network`` (``jaxstyle.net``; ``styles`` then empty), each frame is the network's output at
    ``config.size`` (and ``config.color``), one forward pass, instead of an optimisation.

    Returns:
      A dict: ``"frames"`` (how many were selected), ``"done"`` (stylised now), ``"skipped"``
      (already done), ``"seconds_per_frame"``, ``"output"`` (the path) and ``"folder"`` (the frames'
      folder).
    """
    require_extra()
    options.validate()
    config.validate()
    if network is not None and styles:
        raise JaxstyleError("give either paintings or a network (--net), not both")
    weights = load_bundled() if weights is None and network is None else weights
    source = frames.open_source(video, options.frames)
    folder = frames_folder(output)
    key, settings = settings_key(source, styles, config, options,
                                 weights.sha256 if network is None else f"net:{network.fingerprint()}")
    reader = frames.read(source, config.size)
    first = next(reader)
    if network is None:
        # The paintings (colour-controlled once, on the first frame) and regions of every frame, checked
        # before anything is written.
        content, paintings = prepare(first[1], list(styles), config)
        _, paintings = prepare_colour(content, paintings, config)
        regions = load_regions(config, content, paintings)
    check_owned(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done = finished(folder, key, source.start, source.stop)
    text = json.dumps({"key": key, **settings}, indent=2, default=str)
    atomic_write(folder / SETTINGS, lambda tmp: Path(tmp).write_text(text + "\n"))
    previous = previous_output = None
    stylised, seconds = 0, 0.0
    for index, frame in itertools.chain([first], reader):
        path = folder / frame_name(index)
        if index in done:
            previous, previous_output = frame, image_io.load_image(path)
            continue
        if network is not None:
            t0 = time.perf_counter()
            image_io.save_image(apply_network(network, frame, color_mode=None if config.color == "none" else config.color,
                                              max_memory=config.max_memory), path)
            elapsed = time.perf_counter() - t0
            _record(folder, {"frame": index, "file": path.name, "key": key, "seconds": round(elapsed, 3)})
            stylised, seconds = stylised + 1, seconds + elapsed
            if progress is not None:
                progress(FrameDone(index, len(done) + stylised, source.count, elapsed, float("nan"), path, 1))
            continue
        frame_config = config
        if previous is None:  # the first frame: the image defaults, temporal weight 0 (same program)
            start, temporal = None, Temporal(np.zeros_like(frame), np.zeros(frame.shape[:2], np.float32), 0.0)
        else:
            temporal = _link(previous, previous_output, frame, options, config)
            start = temporal.target if options.warp_start else None
            if options.frame_steps is not None:
                frame_config = config.replace(steps=options.frame_steps)
        t0 = time.perf_counter()
        (result,) = run([Prepared(frame, paintings, start, frame_config, regions, temporal)], weights=weights,
                        strict=True)
        image_io.save_image(result.image, path)
        elapsed = time.perf_counter() - t0
        _record(folder, {"frame": index, "file": path.name, "key": key, "seconds": round(elapsed, 3),
                         "steps": len(result.history),
                         "terms": {k: float(v) for k, v in result.terms.items()}})
        previous, previous_output = frame, image_io.load_image(path)  # as a resumed run would read it back
        stylised, seconds = stylised + 1, seconds + elapsed
        if progress is not None:
            progress(FrameDone(index, len(done) + stylised, source.count, elapsed, result.terms["total"], path,
                               len(result.history)))
    if frames.is_video_file(output):
        frames.write([folder / frame_name(i) for i in range(source.start, source.stop)], output,
                     options.fps or source.fps)
    return {"frames": source.count, "done": stylised, "skipped": len(done),
            "seconds_per_frame": seconds / stylised if stylised else None, "output": Path(output), "folder": folder}
