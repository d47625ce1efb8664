"""Training photos: a folder scanned once, and the batch of every step as a pure function of (seed, step).

Batch ``t`` holds samples ``t * B … t * B + B - 1``; sample ``i`` is photo ``order_e[i mod N]`` of
epoch ``e = i // N`` (a permutation drawn from the seed and the epoch), resized so its short side is
``crop`` times a random factor in [1, 1.5), randomly cropped to ``crop`` x ``crop`` and flipped.
Nothing depends on what ran before, so a resumed run sees exactly the batches an uninterrupted one
would. :class:`Prefetch` decodes the next batches in a background thread while the device trains.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import JaxstyleError
from ..io.image import to_rgb, to_srgb

MAX_ZOOM = 1.5  # a photo's short side is resized to crop * U(1, MAX_ZOOM) before cropping
TINY = 0.5  # photos whose short side is under TINY * crop are skipped (they would be blown up)
_BAD = (OSError, SyntaxError, ValueError, EOFError, UnidentifiedImageError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Photos:
    """The usable photos of a folder, sorted, and what was skipped (``{"unreadable": n, "tiny": m}``)."""

    paths: tuple[Path, ...]
    skipped: dict = field(default_factory=dict)
    sizes: tuple[int, ...] = ()  # each file's size in bytes (part of a training's identity)
    names: tuple[str, ...] = ()  # each file's path relative to the folder (as given, for a list of files)

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in self.skipped.items() if n)
        return f"{len(self.paths)} photo(s)" + (f" ({skipped} skipped)" if skipped else "")


def _header(path: Path) -> tuple[int, int] | None:
    """The (width, height) of an image file as displayed (EXIF rotation applied), from its header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                w, h = h, w
            return w, h
    except _BAD:
        return None


def scan(source, crop: int) -> Photos:
    """The photos of ``source`` (a folder, searched recursively, any format Pillow reads; or a list of
    files) usable at ``crop`` px; unreadable and tiny files are skipped and counted, never fatal. Raises
    :class:`jaxstyle.errors.JaxstyleError` if the folder does not exist or holds no usable photo.
    """
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.exists():
            raise JaxstyleError(f"--photos {str(folder)!r} does not exist; give a folder of photos")
        if not folder.is_dir():
            raise JaxstyleError(f"--photos {str(folder)!r} is a file, not a folder; give a folder of photos")
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(folder).parts))
        where = f"the folder {str(folder)!r}"

        def name(path):
            return path.relative_to(folder).as_posix()
    else:
        files, where = [Path(p) for p in source], "the photos given"
        name = str
    with ThreadPoolExecutor(8) as pool:
        headers = list(pool.map(_header, files))
    usable, sizes, skipped = [], [], {"unreadable": 0, "tiny": 0}
    for path, size in zip(files, headers):
        if size is None:
            skipped["unreadable"] += 1
        elif min(size) < TINY * crop:
            skipped["tiny"] += 1
        else:
            usable.append(path)
            sizes.append(path.stat().st_size)
    if not usable:
        found = f"{len(files)} file(s), {skipped['unreadable']} unreadable, {skipped['tiny']} smaller than " \
                f"{int(TINY * crop)} px" if files else "no files"
        raise JaxstyleError(f"{where} holds no usable photo ({found}); give a folder of photos at least "
                            f"{int(TINY * crop)} px on their short side")
    return Photos(tuple(usable), skipped, tuple(sizes), tuple(name(p) for p in usable))


@functools.lru_cache(maxsize=256)
def _decoded(path: Path, short: int) -> np.ndarray:
    """The photo as uint8 RGB with its short side at most ``short`` px (JPEG decoded at reduced scale)."""
    with Image.open(path) as im:
        im.draft("RGB", (short, short))  # JPEG: decoded at the smallest scale that keeps `short`
        im = to_srgb(ImageOps.exif_transpose(im))
        im.load()
    rgb = Image.fromarray((to_rgb(im) * 255 + 0.5).astype(np.uint8))
    w, h = rgb.size
    if min(w, h) > short:
        k = short / min(w, h)
        rgb = rgb.resize((max(short, round(w * k)), max(short, round(h * k))), Image.LANCZOS)
    return np.asarray(rgb)


def sample(path: Path, crop: int, rng: np.random.Generator) -> np.ndarray:
    """One random (crop, crop, 3) float32 crop of the photo at ``path`` (random zoom, offset and flip)."""
    zoom, fy, fx, flip = rng.uniform(1.0, MAX_ZOOM), rng.uniform(), rng.uniform(), rng.uniform() < 0.5
    photo = _decoded(path, int(crop * MAX_ZOOM) + 1)
    h, w = photo.shape[:2]
    k = crop * zoom / min(h, w)
    size = (max(crop, round(w * k)), max(crop, round(h * k)))
    im = Image.fromarray(photo).resize(size, Image.BILINEAR, reducing_gap=2.0)
    x, y = int(fx * (size[0] - crop + 1)), int(fy * (size[1] - crop + 1))
    out = np.asarray(im, np.float32)[y:y + crop, x:x + crop] / 255.0
    return out[:, ::-1] if flip else out


def batch(photos: Photos, step: int, size: int, crop: int, seed: int, broken: set | None = None) -> np.ndarray:
    """The batch of step ``step``: (size, crop, crop, 3) float32 in [0, 1]. A photo that fails to
    decode (its header was fine) is added to ``broken`` and replaced by the next one of its epoch."""
    n = len(photos.paths)
    out = np.empty((size, crop, crop, 3), np.float32)
    for j in range(size):
        i = step * size + j
        epoch, pos = divmod(i, n)
        order = np.random.default_rng([seed, epoch, 1]).permutation(n)
        rng = np.random.default_rng([seed, i, 2])
        for tries in range(n):
            path = photos.paths[order[(pos + tries) % n]]
            try:
                out[j] = sample(path, crop, rng)
                break
            except _BAD:
                if broken is not None:
                    broken.add(path)
        else:
            raise JaxstyleError(f"none of the {n} photos could be decoded; check the files")
    return out


class Prefetch:
    """Batches ``start, start + 1, …, stop - 1`` decoded ahead in a background thread (``ahead`` queued).

    Iterate to receive ``(step, batch)``; :attr:`waited` is the time the consumer spent waiting.
    """

    def __init__(self, photos: Photos, start: int, stop: int, size: int, crop: int, seed: int, ahead: int = 4):
        self.broken: set = set()
        self.waited = 0.0
        self._queue: queue.Queue = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._next, self._end = start, stop
        self._args = (photos, size, crop, seed)
        self._thread = threading.Thread(target=self._fill, args=(start, stop), daemon=True, name="jaxstyle-photos")
        self._thread.start()

    def _fill(self, start: int, stop: int) -> None:
        photos, size, crop, seed = self._args
        for step in range(start, stop):
            try:
                item = (step, batch(photos, step, size, crop, seed, self.broken))
            except BaseException as e:  # handed to the consumer, raised there
                item = (step, e)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set() or isinstance(item[1], BaseException):
                return

    def __iter__(self):
        return self

    def __next__(self) -> tuple[int, np.ndarray]:
        if self._next >= self._end:
            raise StopIteration
        self._next += 1
        t = time.perf_counter()
        step, value = self._queue.get()
        self.waited += time.perf_counter() - t
        if isinstance(value, BaseException):
            raise value
        return step, value

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
