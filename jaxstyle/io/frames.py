"""Video in and out: a video file or a folder of frames, decoded frame by frame; frames encoded into
a video file, atomically.

Decoding and encoding use PyAV (``av``, the ``video`` extra): its wheels ship their own FFmpeg
libraries, so nothing needs installing on the system, and it runs in-process (frames arrive as
NumPy arrays, errors as exceptions with the file's name) where imageio-ffmpeg pipes raw bytes
through an ``ffmpeg`` subprocess. Output videos are H.264 (``libx264``, yuv420p, which needs even
sides: :func:`frame_shape` rounds them down) in ``.mp4``/``.mov``/``.mkv``, VP9 in ``.webm``, GIF
in ``.gif``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from . import image as image_io
from .files import atomic_write
from ..errors import JaxstyleError
from .flow import video_extra

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif", ".m4v")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
CODECS = {".webm": ("libvpx-vp9", "yuv420p"), ".gif": ("gif", "rgb8")}  # others: H.264
FORMATS = {".m4v": "mp4", ".mkv": "matroska"}  # container by suffix (others: the suffix itself)
FOLDER_FPS = 24.0  # frame rate of a folder of frames, unless --fps says otherwise


def _av():
    return video_extra("av")


def is_video_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a video file (by its suffix, one of ``VIDEO_SUFFIXES``)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class Source:
    """A video file or a folder of frames, and the frames ``start`` … ``stop - 1`` of it."""

    path: Path
    start: int
    stop: int  # one past the last frame used
    fps: float  # the input's frame rate (FOLDER_FPS for a folder)
    files: tuple[Path, ...] = ()  # a folder's frame files, sorted by name

    @property
    def count(self) -> int:
        return self.stop - self.start


def parse_frames(text: str | None) -> tuple[int, int | None]:
    """``--frames A:B`` (0-based, B excluded; either may be left out) → ``(A, B or None)``."""
    if text is None:
        return 0, None
    parts = str(text).split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0].strip() else 0
        stop = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise JaxstyleError(f"--frames {text!r} is not a range A:B of frame numbers, e.g. 0:48 or 10: (0-based, B excluded)") from None
    if start < 0 or (stop is not None and stop <= start):
        raise JaxstyleError(f"--frames {text!r} selects no frame: give 0 <= A < B")
    return start, stop


def open_source(path: str | os.PathLike, frames: tuple[int, int | None] = (0, None)) -> Source:
    """Check the input and count its frames (a video is demuxed, not decoded, to count them)."""
    path = Path(path)
    if path.is_dir():
        files = tuple(sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()))
        total, fps = len(files), FOLDER_FPS
    elif path.is_file():
        files = ()
        total, fps = _probe(path)
    else:
        raise JaxstyleError(f"video {str(path)!r} does not exist; give a video file or a folder of frames")
    if total == 0:
        raise JaxstyleError(f"{str(path)!r} has no frames" + (f" (no {', '.join(FRAME_SUFFIXES)} files)" if path.is_dir() else ""))
    start, stop = frames
    stop = total if stop is None else min(stop, total)
    if start >= stop:
        raise JaxstyleError(f"--frames {start}:{frames[1] if frames[1] is not None else ''} selects no frame of "
                            f"{str(path)!r}, which has {total}")
    _check_one_size(files[start:stop])
    return Source(path, start, stop, fps, files)


def _check_one_size(files) -> None:
    """Refuse a folder whose frames differ in size (read from their headers, EXIF rotation counted):
    the optical flow between two frames needs one shape."""
    from PIL import Image

    first = None
    for file in files:
        try:
            with Image.open(file) as im:
                w, h = im.size
                if im.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated by a quarter turn
                    w, h = h, w
        except Exception:  # noqa: BLE001 - an unreadable frame is reported, with its name, where it is read
            continue
        if first is None:
            first = (file, w, h)
        elif (w, h) != first[1:]:
            raise JaxstyleError(f"frame {file.name!r} is {w}x{h} px but {first[0].name!r} is {first[1]}x{first[2]}: "
                                "a video's frames must share one size; resize them to one first")


def _probe(path: Path) -> tuple[int, float]:
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 0, FOLDER_FPS
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or FOLDER_FPS)
            count = sum(1 for packet in container.demux(stream) if packet.size)
    except (av.error.FFmpegError, OSError) as e:
        raise JaxstyleError(f"cannot read video {str(path)!r}: {e}; is it a video file?") from None
    return count, fps


def frame_shape(shape: tuple[int, ...], size: int) -> tuple[int, int]:
    """A frame's (height, width) at long side ``size``, each side rounded down to even (H.264's
    4:2:0 chroma needs even sides; the aspect ratio moves by at most one pixel)."""
    h, w = image_io.long_side_shape(shape, size)
    return max(2, h - h % 2), max(2, w - w % 2)


def read(source: Source, size: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame number, (H, W, 3) float32 RGB in [0, 1] at :func:`frame_shape`)`` for each frame used."""
    def resized(frame):
        return image_io.resize_exact(frame, frame_shape(frame.shape, size))

    if source.files:
        for index in range(source.start, source.stop):
            yield index, resized(image_io.load_image(source.files[index]))
        return
    av = _av()
    try:
        with av.open(str(source.path)) as container:
            stream = container.streams.video[0]
            for index, frame in enumerate(container.decode(stream)):
                if index >= source.stop:
                    break
                if index >= source.start:
                    yield index, resized(frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0)
    except av.error.FFmpegError as e:
        raise JaxstyleError(f"cannot decode video {str(source.path)!r}: {e}") from None


def write(frames: list[Path], output: str | os.PathLike, fps: float) -> Path:
    """Encode image files into the video ``output``, atomically (``files.atomic_write``)."""
    output = Path(output)
    atomic_write(output, lambda tmp: _encode(frames, tmp, output.suffix.lower(), fps))
    return output


def _encode(frames: list[Path], path: str, suffix: str, fps: float) -> None:
    av = _av()
    codec, pixel_format = CODECS.get(suffix, ("libx264", "yuv420p"))
    h, w = image_io.load_image(frames[0]).shape[:2]
    if pixel_format == "yuv420p" and (h % 2 or w % 2):
        raise JaxstyleError(f"frames of {w}x{h} px cannot be encoded as {suffix}: both sides must be even")
    with av.open(path, "w", format=FORMATS.get(suffix, suffix[1:])) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, pixel_format
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "medium"}
        for frame_path in frames:
            pixels = image_io.to_uint8(image_io.load_image(frame_path))
            if pixels.shape[:2] != (h, w):
                raise JaxstyleError(f"frame {frame_path} is {pixels.shape[1]}x{pixels.shape[0]}, the first {w}x{h}")
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
