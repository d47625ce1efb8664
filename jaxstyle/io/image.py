"""Image input and output: decode any Pillow mode to sRGB float32 in [0, 1], resize once, save atomically.

Outputs: PNG (8 or 16 bits per channel), JPEG (8), TIFF (8 or 16), chosen by extension.
"""

from __future__ import annotations

import errno
import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from ..errors import JaxstyleError
from .files import NAME_MAX, atomic_write

OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
BIT_DEPTHS = {"PNG": (8, 16), "JPEG": (8,), "TIFF": (8, 16)}


def to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow mode → (H, W, 3) float32 in [0, 1]. Transparency is composited onto white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float32)
        a = a / 65535.0 if im.mode.startswith("I;16") else a / max(float(a.max()), 1.0)
        return np.repeat(np.clip(a, 0, 1)[..., None], 3, axis=-1)
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def long_side_shape(shape: tuple[int, ...], size: int) -> tuple[int, int]:
    """(height, width) of an image of ``shape`` resized so its longer side is ``size`` px."""
    h, w = shape[:2]
    scale = size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize_long_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side is ``size`` px, with Lanczos (antialiased: keeps style statistics)."""
    return resize_exact(image, long_side_shape(image.shape, size))


def to_srgb(im: Image.Image) -> Image.Image:
    """Convert an image with an embedded ICC profile to sRGB (RGB images; others pass through)."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA"):
        return im
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode=im.mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return im  # a broken profile: keep the pixel values as they are


def resize_exact(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, C) image to ``shape`` = (height, width) with Lanczos."""
    h, w = shape
    if image.shape[:2] == (h, w):
        return image
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32)).resize((w, h), Image.Resampling.LANCZOS))
        for c in range(image.shape[-1])
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def resize_nearest(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize the first two axes of ``values`` to ``shape`` = (height, width) with nearest neighbour:
    for label images and masks, whose values must never be blended."""
    h, w = shape
    rows = np.minimum(((np.arange(h) + 0.5) * values.shape[0] / h).astype(np.int64), values.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * values.shape[1] / w).astype(np.int64), values.shape[1] - 1)
    return values[rows[:, None], cols[None, :]]


def as_path(path, what: str = "path") -> Path:
    """A str, bytes or os.PathLike path as a Path; a JaxstyleError for anything else."""
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise JaxstyleError(f"{what} must be a file path (str or pathlib.Path), not {path!r}")
    return Path(path)


_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """A :class:`JaxstyleWarning` with ``message``, once per process."""
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, JaxstyleWarning, stacklevel=3)


class JaxstyleWarning(UserWarning):
    """Something worth knowing that does not stop the run (the CLI prints it as one line)."""


def load_image(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """Read an image file as (H, W, 3) float32 RGB in [0, 1], EXIF-rotated, long side ``size``.

    Images over Pillow's decompression-bomb limit (about 179 megapixels) are refused; those over
    half of it are read with one warning.
    """
    path = as_path(path, "image path")
    try:
        path.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise JaxstyleError(f"image path {str(path)!r} is a loop of symbolic links; point it at an image file") from None
        if e.errno == errno.ENAMETOOLONG:
            raise JaxstyleError(f"image path {str(path)!r} is longer than a path may be; check the path") from None
    if not path.exists():
        raise JaxstyleError(f"image file {str(path)!r} does not exist; check the path")
    if path.is_dir():
        raise JaxstyleError(f"{str(path)!r} is a folder, not an image file; name an image file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im)
                im.load()
                im = to_srgb(im)
                array = to_rgb(im)
    except Image.DecompressionBombError:
        raise JaxstyleError(
            f"{str(path)!r} has more pixels than Pillow decodes safely ({2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} "
            "megapixels; a guard against decompression bombs): downscale the file first") from None
    except UnidentifiedImageError:
        raise JaxstyleError(f"{str(path)!r} is not an image Pillow can read; give a PNG, JPEG or similar file") from None
    except MemoryError:
        raise JaxstyleError(f"not enough memory to decode {str(path)!r}; downscale the file first") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise JaxstyleError(f"cannot read image {str(path)!r} ({e}); check the file is complete and readable") from None
    for w in caught:
        if issubclass(w.category, Image.DecompressionBombWarning):
            warn_once(f"{str(path)!r} is {array.shape[1]}x{array.shape[0]} px ({array.shape[0] * array.shape[1] / 1e6:.0f} "
                      "megapixels): decoding it takes a lot of memory; a smaller file gives the same result")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if size is not None:
        array = resize_long_side(array, size)
    return array


def check_output_path(path: str | os.PathLike, bit_depth: int = 8) -> Path:
    """Raise before any work if ``path`` cannot receive an image: unknown extension, missing or
    read-only folder, or a folder in the way."""
    path = as_path(path, "output path")
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise JaxstyleError(
            f"output {str(path)!r} has an unsupported extension; use one of {', '.join(OUTPUT_FORMATS)}"
        )
    if bit_depth not in BIT_DEPTHS[fmt]:
        raise JaxstyleError(
            f"{fmt} output cannot hold {bit_depth} bits per channel; use "
            + " or ".join(f"{d}" for d in BIT_DEPTHS[fmt]) + (" (16 bits: write .png or .tif)" if fmt == "JPEG" else "")
        )
    check_writable(path)
    return path


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Raise unless a file can be written (atomically) at ``path``: its folder exists and is
    writable, and ``path`` is not a folder."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if len(path.name.encode()) > NAME_MAX:
        raise JaxstyleError(f"{what} file name is {len(path.name.encode())} bytes long, more than the {NAME_MAX} a "
                            f"file name may have; choose a shorter name")
    if not parent.is_dir():
        raise JaxstyleError(f"{what} folder {str(parent)!r} does not exist; create it first")
    if path.is_dir():
        raise JaxstyleError(f"{what} {str(path)!r} is an existing folder; name a file (or remove the folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise JaxstyleError(f"{what} folder {str(parent)!r} is not writable; choose another folder or fix its permissions")
    if path.is_file():
        try:
            with open(path, "ab"):  # writes nothing; refused only for an immutable or append-only file
                pass
        except PermissionError as e:
            if e.errno == errno.EPERM:
                raise JaxstyleError(f"{what} {str(path)!r} cannot be replaced (it is immutable or append-only: "
                                    "chattr -i); choose another name or lift the flag") from None
    return path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (or would, once written)."""
    return file_identity(a) == file_identity(b)


def file_identity(path: str | os.PathLike) -> tuple:
    """What names a file: (device, inode) when it exists (hard and symbolic links alike), else its
    resolved path."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except (OSError, ValueError):
        pass
    try:
        return ("path", str(Path(path).resolve()))
    except (OSError, RuntimeError):  # a symbolic-link loop, a name too long: checked where it is used
        return ("path", os.path.abspath(path))


def image_array(value, what: str = "image") -> np.ndarray:
    """An array-like image as (H, W, 3) float32 in [0, 1]: uint8 and uint16 are scaled, greyscale
    (H, W) is repeated to RGB; NaN, out-of-range floats, empty or non-RGB shapes are refused."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise JaxstyleError(f"{what} is not an array ({e}); give an (H, W, 3) RGB array in [0, 1]") from None
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3 or 0 in array.shape:
        raise JaxstyleError(f"{what} array has shape {array.shape}; give an (H, W, 3) RGB array in [0, 1]")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise JaxstyleError(f"{what} array has dtype {array.dtype}; give floats in [0, 1] (or uint8 0-255)")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise JaxstyleError(f"{what} array contains NaN or infinite values; give finite values in [0, 1]")
    low, high = float(array.min()), float(array.max())
    if low < -1e-3 or high > 1 + 1e-3:
        hint = " (it looks like 0-255: divide by 255)" if high > 1.5 else ""
        raise JaxstyleError(f"{what} array has values in [{low:g}, {high:g}]; give values in [0, 1]{hint}")
    return np.clip(array, 0.0, 1.0)



def as_image(value, what: str = "image") -> np.ndarray:
    """An image given as a path (read with :func:`load_image`) or an array (checked with
    :func:`image_array`), as (H, W, 3) float32 RGB in [0, 1]."""
    if isinstance(value, (str, bytes, os.PathLike)):
        return load_image(value)
    return image_array(value, what)


def to_uint8(image) -> np.ndarray:
    """An image in [0, 1] (clipped) as uint8, rounded to nearest."""
    return (np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_uint16(image) -> np.ndarray:
    """An image in [0, 1] (clipped) as uint16, rounded to nearest."""
    return (np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)


def png16_bytes(rgb16: np.ndarray) -> bytes:
    """Encode (H, W, 3) uint16 as a 16-bit RGB PNG (Pillow cannot write 48-bit RGB)."""
    h, w, _ = rgb16.shape
    rows = np.ascontiguousarray(rgb16.astype(">u2")).view(np.uint8).reshape(h, w * 6)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)  # 16 bits, truecolour
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def save_pil(im: Image.Image, path: str | os.PathLike) -> Path:
    """Write a Pillow image (a contact sheet, a plot) atomically, in the format its extension names."""
    path = check_output_path(path)
    fmt = OUTPUT_FORMATS[path.suffix.lower()]
    atomic_write(path, lambda tmp: im.convert("RGB").save(tmp, format=fmt))
    return path


def image_writer(image, path: str | os.PathLike, bit_depth: int = 8):
    """A ``write(tmp_path)`` for :func:`atomic_write` that writes an (H, W, 3) image in [0, 1] (or uint8)
    as PNG, JPEG or TIFF (by ``path``'s extension), 8 or 16 bits. Checks everything first."""
    path = check_output_path(path, bit_depth)
    image = image_array(image, "the image to save")
    fmt = OUTPUT_FORMATS[path.suffix.lower()]
    if bit_depth == 16 and fmt == "PNG":
        data = png16_bytes(to_uint16(image))
        return lambda tmp: Path(tmp).write_bytes(data)
    if fmt == "TIFF":
        import tifffile

        pixels = to_uint16(image) if bit_depth == 16 else to_uint8(image)
        return lambda tmp: tifffile.imwrite(tmp, pixels, photometric="rgb")
    pil = Image.fromarray(to_uint8(image))
    options = {"quality": 95} if fmt == "JPEG" else {}
    return lambda tmp: pil.save(tmp, format=fmt, **options)


def save_image(image, path: str | os.PathLike, bit_depth: int = 8) -> Path:
    """Write an (H, W, 3) image in [0, 1] (or uint8) as PNG, JPEG or TIFF (by extension), 8 or 16
    bits, atomically."""
    atomic_write(path, image_writer(image, path, bit_depth))
    return Path(path)
