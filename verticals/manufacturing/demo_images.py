"""Synthetic surface inspection images (Pillow, in memory), for the visual inspection demo
and the tests.

Three surface classes that keep their class under flips and 90-degree rotations (as real
surface defects do): ``ok`` (fine noise), ``spots`` (dark discs) and ``scratches`` (bright
lines in any direction). Each image has a production ``line`` (L1/L2, alternating) and a
``camera`` (C1/C2/C3).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from ml_core.families.image.columns import IMAGE_BYTES_COLUMN

CLASSES = ("ok", "scratches", "spots")


def surface(label: str, rng: np.random.Generator, *, size: int = 64):
    """One grey surface image of class ``label`` (a Pillow image, mode L)."""
    from PIL import Image, ImageDraw

    base = rng.normal(128, 12, (size, size)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(base, mode="L")
    draw = ImageDraw.Draw(image)
    if label == "spots":
        for _ in range(int(rng.integers(3, 6))):
            x, y = rng.integers(6, size - 6, 2)
            r = int(rng.integers(3, 6))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=int(rng.integers(10, 50)))
    elif label == "scratches":
        for _ in range(int(rng.integers(2, 4))):
            x0, y0, x1, y1 = rng.integers(0, size, 4)
            draw.line((x0, y0, x1, y1), fill=int(rng.integers(220, 255)), width=2)
    return image


def encoded(image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def image_frame(per_class: int | tuple[int, ...], *, seed: int = 0,
                lines: tuple[str, ...] = ("L1", "L2")) -> pd.DataFrame:
    """``per_class`` images of each class (one count, or one per class in ``CLASSES``
    order) as the table the family takes: ``file``, ``label``, ``line``, ``camera`` and the
    encoded bytes."""
    counts = per_class if isinstance(per_class, tuple) else (per_class,) * len(CLASSES)
    rng = np.random.default_rng(seed)
    rows = []
    for label, count in zip(CLASSES, counts, strict=True):
        for i in range(count):
            rows.append({"file": f"{label}/{label}_{i}.png", "label": label,
                         "line": lines[i % len(lines)], "camera": f"C{i % 3 + 1}",
                         IMAGE_BYTES_COLUMN: encoded(surface(label, rng))})
    return pd.DataFrame(rows)


def surface_images(n_rows: int, seed: int) -> pd.DataFrame:
    """``n_rows`` images, a third per class (the vertical's ``sample_data``)."""
    base, extra = divmod(n_rows, len(CLASSES))
    return image_frame(tuple(base + (k < extra) for k in range(len(CLASSES))), seed=seed)
