"""Decoding uploaded image bytes into the pixels the backbone reads, safely.

Every image, whatever its file, becomes 8-bit RGB, upright:

* EXIF orientation is applied (phones and some cameras store pixels sideways);
* palette (``P``) and grey with alpha are converted; alpha is composited on white (a
  transparent background is not black);
* 16-bit and 32-bit grey (``I;16``, ``I``) and float (``F``) are rescaled from their own
  range to 0-255 (a plain convert would clip everything above 255 to white);
* CMYK and other modes are converted by Pillow.

Decompression bombs: Pillow refuses images of more than :data:`MAX_PIXELS` pixels (it warns
at half of Pillow's own limit and raises at twice it; here the limit is set explicitly and
anything above it is an error). Truncated or corrupt files raise :class:`ImageDecodeError`
with Pillow's reason.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch

from ml_core.families.image.backbone import IMAGE_SIZE, PIXEL_MEAN, PIXEL_SCALE

# 40 megapixels: an 8K inspection camera frame is 33 MP; a 1 kB PNG that claims 100k x 100k
# pixels is a bomb. Pillow raises DecompressionBombError above twice this.
MAX_PIXELS = 40_000_000


class ImageDecodeError(ValueError):
    """An image that cannot be read: corrupt, truncated, too large, or not an image."""


def _pillow():
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2  # Pillow raises above 2 x MAX_IMAGE_PIXELS
    return Image


def open_image(data: bytes):
    """The image in ``data`` as a Pillow image in 8-bit RGB, upright (see the module
    docstring). Raises :class:`ImageDecodeError` for anything that cannot be read."""
    image_module = _pillow()
    from PIL import ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", image_module.DecompressionBombWarning)
            image = image_module.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(f"{width} x {height} pixels is over the limit of "
                                       f"{MAX_PIXELS:,} (a decompression bomb?)")
            image.load()  # decode now: a truncated file fails here, not later
            image = ImageOps.exif_transpose(image)
    except ImageDecodeError:
        raise
    except image_module.DecompressionBombError as exc:
        raise ImageDecodeError(f"too many pixels (a decompression bomb?): {exc}") from None
    except image_module.DecompressionBombWarning as exc:
        raise ImageDecodeError(f"too many pixels (a decompression bomb?): {exc}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from None
    return to_rgb(image)


def to_rgb(image):
    """8-bit RGB from any Pillow mode (see the module docstring)."""
    image_module = _pillow()
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255.0 if high > low else values * 0.0
        image = image_module.fromarray(scaled.round().astype(np.uint8), mode="L")
        mode = "L"
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("LA", "La", "RGBa", "PA"):
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        background = image_module.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    if mode != "RGB":
        image = image.convert("RGB")
    return image


def pixels(image, *, size: int = IMAGE_SIZE) -> torch.Tensor:
    """(3, size, size) float tensor scaled as the backbone was trained ((x - 127) / 128),
    resized with bilinear filtering (aspect ratio not kept: defect images are near square and
    cropping could cut off a defect at the border)."""
    image_module = _pillow()
    resized = image.resize((size, size), image_module.Resampling.BILINEAR)
    array = np.asarray(resized, dtype=np.float32)
    return torch.from_numpy((array - PIXEL_MEAN) / PIXEL_SCALE).permute(2, 0, 1).contiguous()


def thumbnail_png(image, *, size: int = 96) -> bytes:
    """A small PNG of ``image`` for reports (longest side ``size``)."""
    copy = image.copy()
    copy.thumbnail((size, size))
    buffer = io.BytesIO()
    copy.save(buffer, format="PNG")
    return buffer.getvalue()
