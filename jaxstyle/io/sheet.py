"""Labelled contact sheets: a grid of images with row and column labels, for sweeps and figures."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .image import to_uint8


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def contact_sheet(cells: Sequence[Sequence[np.ndarray | None]], row_labels: Sequence[str] = (),
                  col_labels: Sequence[str] = (), title: str = "", cell: int = 192, pad: int = 6) -> Image.Image:
    """Grid of images (rows × columns; None leaves a blank) with labels, as a white-background RGB image.

    Each image is fitted into a ``cell``-pixel square (aspect kept; Lanczos down, nearest up so
    small results show their pixels).
    """
    rows, cols = len(cells), max(len(r) for r in cells)
    font = _font(max(12, cell // 12))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text):
        box = probe.textbbox((0, 0), text, font=font)
        return box[2] - box[0], box[3] - box[1]

    left = max([text_size(t)[0] for t in row_labels] + [0]) + (2 * pad if row_labels else 0)
    line = text_size("Ag")[1] + pad
    top = (line if col_labels else 0) + (line if title else 0) + pad
    width, height = left + cols * (cell + pad) + pad, top + rows * (cell + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), title, fill="black", font=font)
    for c, label in enumerate(col_labels):
        w, _ = text_size(label)
        draw.text((left + c * (cell + pad) + max(0, (cell - w) // 2), top - line), label, fill="black", font=font)
    for r, row in enumerate(cells):
        if r < len(row_labels):
            _, h = text_size(row_labels[r])
            draw.text((pad, top + r * (cell + pad) + (cell - h) // 2), row_labels[r], fill="black", font=font)
        for c, image in enumerate(row):
            if image is None:
                continue
            im = Image.fromarray(to_uint8(image))
            scale = min(cell / im.width, cell / im.height)
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                           Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST)
            x = left + c * (cell + pad) + (cell - im.width) // 2
            y = top + r * (cell + pad) + (cell - im.height) // 2
            sheet.paste(im, (x, y))
    return sheet


PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127))


def loss_plot(histories: dict, title: str = "loss", width: int = 640, height: int = 400) -> Image.Image:
    """Loss curves (log10 scale) as an RGB image: ``{label: (steps,) losses}``. No plotting library needed."""
    font = _font(14)
    left, right, top, bottom = 70, 20, 30, 40
    series = {k: np.asarray(v, np.float64) for k, v in histories.items() if len(v)}
    positive = np.concatenate([v[v > 0] for v in series.values()]) if series else np.array([1.0])
    lo, hi = np.floor(np.log10(positive.min())), np.ceil(np.log10(positive.max()))
    hi = max(hi, lo + 1)
    steps = max(len(v) for v in series.values()) if series else 1
    im = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(im)
    x0, x1, y0, y1 = left, width - right, height - bottom, top

    def to_xy(i, value):
        x = x0 + (x1 - x0) * i / max(steps - 1, 1)
        y = y0 + (y1 - y0) * (np.log10(max(value, 10**lo)) - lo) / (hi - lo)
        return x, y

    draw.rectangle((x0, y1, x1, y0), outline="black")
    for e in range(int(lo), int(hi) + 1):
        _, y = to_xy(0, 10.0**e)
        draw.line((x0 - 4, y, x0, y), fill="black")
        draw.text((5, y - 8), f"1e{e}", fill="black", font=font)
    for i in np.linspace(0, steps - 1, 5):
        x, _ = to_xy(i, 10**lo)
        draw.text((x - 10, y0 + 8), f"{int(i)}", fill="black", font=font)
    draw.text((x0, 6), title, fill="black", font=font)
    for n, (label, v) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        draw.line([to_xy(i, val) for i, val in enumerate(v)], fill=colour, width=2)
        draw.text((x1 - 150, y1 + 8 + 16 * n), label, fill=colour, font=font)
    return im
