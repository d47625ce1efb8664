"""Image decoding (modes, EXIF), resizing and atomic saving."""

import numpy as np
import pytest
from PIL import Image

from jaxstyle import JaxstyleError
from jaxstyle.io import files, image


@pytest.mark.parametrize(
    "mode, value, expected",
    [
        ("L", 128, (128, 128, 128)),
        ("RGBA", (255, 0, 0, 0), (255, 255, 255)),  # fully transparent → white background
        ("RGBA", (255, 0, 0, 255), (255, 0, 0)),
        ("LA", (0, 255), (0, 0, 0)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
        ("I;16", 65535, (255, 255, 255)),
        ("I;16", 0, (0, 0, 0)),
    ],
)
def test_every_mode_becomes_rgb(tmp_path, mode, value, expected):
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "I;16") else "x.png")
    Image.new(mode, (20, 10), value).save(path)
    out = image.load_image(path)
    assert out.shape == (10, 20, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[5, 5] * 255, expected, atol=1.0)


def test_palette_image(tmp_path):
    im = Image.new("P", (8, 8))
    im.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    im.paste(1, (0, 0, 8, 8))
    im.save(tmp_path / "p.png")
    np.testing.assert_allclose(image.load_image(tmp_path / "p.png")[0, 0] * 255, (10, 200, 30), atol=0.5)


def test_exif_orientation_is_honoured(tmp_path):
    im = Image.new("RGB", (30, 10), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 5, 10))  # white strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "r.jpg", exif=exif, quality=100)
    out = image.load_image(tmp_path / "r.jpg")
    assert out.shape == (30, 10, 3)  # displayed upright: portrait
    assert out[:4].mean() > 0.9 and out[-4:].mean() < 0.1  # the strip is now at the top


def test_size_is_the_long_side_and_lanczos_keeps_the_mean(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.uniform(size=(60, 90, 3)).astype(np.float32)
    out = image.resize_long_side(arr, 45)
    assert out.shape == (30, 45, 3)
    np.testing.assert_allclose(out.mean(), arr.mean(), atol=0.01)
    tall = image.resize_long_side(arr.transpose(1, 0, 2), 45)
    assert tall.shape == (45, 30, 3)


@pytest.mark.parametrize("suffix, atol", [(".png", 0.5 / 255 + 1e-6), (".jpg", 0.08)])
def test_save_round_trip(tmp_path, suffix, atol):
    from .conftest import smooth_image

    arr = smooth_image(24, 32)
    path = image.save_image(arr, tmp_path / f"out{suffix}")
    back = image.load_image(path)
    np.testing.assert_allclose(back, arr, atol=atol)
    assert [p.name for p in tmp_path.iterdir()] == [f"out{suffix}"]  # no temporary left behind


def test_failed_write_leaves_no_file(tmp_path):
    def boom(tmp):
        open(tmp, "wb").write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        files.atomic_write(tmp_path / "out.png", boom)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p / "missing.png", "does not exist"),
        (lambda p: p, "is a folder"),
        (lambda p: (p / "t.png").write_text("not an image") and p / "t.png", "not an image"),
        (lambda p: (p / "cut.png").write_bytes(_truncated_png()) and p / "cut.png", "cannot read image"),
    ],
)
def test_bad_inputs_raise_one_clear_error(tmp_path, make, match):
    with pytest.raises(JaxstyleError, match=match):
        image.load_image(make(tmp_path))


def _truncated_png() -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()[:60]


def test_output_path_checks(tmp_path):
    with pytest.raises(JaxstyleError, match="extension"):
        image.check_output_path(tmp_path / "x.gif")
    with pytest.raises(JaxstyleError, match="does not exist"):
        image.check_output_path(tmp_path / "no" / "x.png")
