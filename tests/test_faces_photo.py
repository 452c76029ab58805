"""decode_photo / encode_photo: real photos of every common kind in, the input's format out."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data
from test_images import png_header_only

from veil.errors import InvalidArgument
from veil.faces.photo import decode_photo, encode_photo


def _saved(img: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_exif_orientation_is_applied() -> None:
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: the viewer turns it 90 degrees clockwise
    photo = decode_photo(_saved(Image.fromarray(pixels), "JPEG", exif=exif, quality=95))
    assert photo.pixels.shape == (40, 20, 3) and photo.format == "JPEG"
    assert photo.pixels[2, 10, 0] > 200 and photo.pixels[-3, 10, 2] > 200  # red on top, blue below


def test_grey_palette_cmyk_and_16_bit_become_rgb() -> None:
    astronaut = Image.fromarray(data.astronaut())
    grey = decode_photo(_saved(astronaut.convert("L"), "PNG")).pixels
    assert grey.shape == (512, 512, 3) and np.array_equal(grey[..., 0], grey[..., 2])
    assert np.array_equal(grey[..., 0], np.asarray(astronaut.convert("L")))
    palette = decode_photo(_saved(astronaut.convert("P"), "PNG")).pixels
    assert np.array_equal(palette, np.asarray(astronaut.convert("P").convert("RGB")))
    cmyk = decode_photo(_saved(astronaut.convert("CMYK"), "JPEG", quality=95))
    assert cmyk.format == "JPEG" and np.abs(cmyk.pixels.astype(int) - data.astronaut()).mean() < 6
    deep = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16
    photo = decode_photo(_saved(Image.fromarray(deep), "PNG"))
    assert photo.pixels.shape == (64, 64, 3) and np.array_equal(photo.pixels[..., 1], (deep >> 8).astype(np.uint8))


def test_alpha_is_kept_and_png_webp_round_trip_exactly() -> None:
    rgba = np.random.default_rng(0).integers(0, 256, (30, 50, 4), dtype=np.uint8)
    photo = decode_photo(_saved(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert np.array_equal(photo.pixels, rgba[..., :3]) and np.array_equal(photo.alpha, rgba[..., 3])
    back = Image.open(io.BytesIO(encode_photo(photo.pixels, "PNG", photo.alpha)))
    assert back.mode == "RGBA" and np.array_equal(np.asarray(back), rgba)
    webp = decode_photo(encode_photo(photo.pixels, "WEBP", photo.alpha))
    assert webp.format == "WEBP" and np.array_equal(webp.pixels, rgba[..., :3])
    jpeg = decode_photo(encode_photo(photo.pixels, "JPEG", photo.alpha))
    assert jpeg.format == "JPEG" and jpeg.alpha is None


@pytest.mark.parametrize(("data_", "kwargs", "message"), [
    (png_header_only(100_000, 100_000), {}, "photo: larger than 4096 px on its longest side"),
    (png_header_only(5000, 10), {}, "5000x10 is larger than 4096"),
    (png_header_only(600, 600), {"max_side": 512}, "600x600 is larger than 512"),
    (b"\x89PNG\r\n\x1a\n" + b"\xff" * 10_000, {}, "not a readable PNG, JPEG or WebP (UnidentifiedImageError)"),
    (b"", {}, "photo: empty"),
    (_saved(Image.new("RGB", (8, 8)), "GIF"), {}, "format GIF is not supported"),
    (_saved(Image.new("RGB", (8, 8)), "PNG"), {"content_type": "image/jpeg"}, "content type image/jpeg but the bytes are PNG"),
    (_saved(Image.new("RGB", (8, 8)), "PNG"), {"content_type": "x" * 10_000}, "is not supported"),
])
def test_refused_with_a_short_clear_message(data_: bytes, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_photo(data_, **kwargs)
    assert message in str(caught.value) and len(str(caught.value)) < 200 and " at 0x" not in str(caught.value)
