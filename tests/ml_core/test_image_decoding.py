"""Every image mode becomes upright 8-bit RGB: 16-bit, CMYK, palette, alpha, EXIF rotation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ml_core.families.image.decoding import ImageDecodeError, open_image, pixels


def _bytes(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_sixteen_bit_grey_is_rescaled_not_clipped() -> None:
    values = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    source = Image.fromarray(values)
    assert source.mode == "I;16"
    image = open_image(_bytes(source))
    array = np.asarray(image)
    assert image.mode == "RGB"
    assert array.min() == 0 and array.max() == 255
    assert 100 < array[32, 32, 0] < 160  # the middle of the range stays grey, not white


def test_cmyk_palette_and_alpha_become_rgb() -> None:
    cmyk = open_image(_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))
    assert cmyk.mode == "RGB" and np.asarray(cmyk)[4, 4, 0] > 200  # red
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    assert np.asarray(open_image(_bytes(palette)))[0, 0].tolist() == [0, 0, 255]
    transparent = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    # A fully transparent pixel shows the white background, not black.
    assert np.asarray(open_image(_bytes(transparent)))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), (10, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    upright = open_image(_bytes(image, "JPEG", exif=exif.tobytes()))
    assert upright.size == (20, 40)


def test_pixels_have_the_backbone_shape_and_scale() -> None:
    tensor = pixels(Image.new("RGB", (50, 30), (255, 127, 0)))
    assert tuple(tensor.shape) == (3, 224, 224)
    assert tensor[0].mean().item() == pytest.approx(128 / 128)
    assert tensor[1].mean().item() == pytest.approx(0.0)


def test_unreadable_bytes_raise_a_decode_error() -> None:
    with pytest.raises(ImageDecodeError, match="not an image"):
        open_image(b"not an image")
