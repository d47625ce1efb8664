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
