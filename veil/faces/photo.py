"""Real photos in and out: PNG / JPEG / WebP of any size up to a longest side, EXIF orientation
applied, every colour mode converted to RGB (alpha kept aside and put back), and the result
encoded in the input's format. Oversized images are refused from their header, before any pixel
is decoded, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from veil.errors import InvalidArgument, quoted

DEFAULT_MAX_SIDE = 4096
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_ALIASES = {"MPO": "JPEG"}  # phone cameras' multi-picture JPEGs: the first picture is the photo
JPEG_QUALITY = 95


@dataclass(frozen=True)
class Photo:
    pixels: np.ndarray  # uint8 RGB (H, W, 3), upright
    format: str  # PNG, JPEG or WEBP: the format the result is written in
    alpha: np.ndarray | None = None  # uint8 (H, W) when the input had transparency

    @property
    def content_type(self) -> str:
        return FORMATS[self.format]


def decode_photo(data: bytes, max_side: int = DEFAULT_MAX_SIDE, content_type: str | None = None,
                 what: str = "photo") -> Photo:
    """The photo in `data`, or InvalidArgument saying what is wrong with it."""
    if not data:
        raise InvalidArgument(f"{what}: empty")
    if content_type is not None and content_type not in FORMATS.values():
        raise InvalidArgument(f"{what}: content type {quoted(content_type, 64)} is not supported; "
                              f"use {', '.join(FORMATS.values())}")
    try:
        with warnings.catch_warnings():
            # The side check below refuses big images from the header, with a clearer message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = _ALIASES.get(img.format, img.format)
            if fmt not in FORMATS:
                raise InvalidArgument(f"{what}: format {img.format} is not supported; use PNG, JPEG or WebP")
            if content_type is not None and FORMATS[fmt] != content_type:
                raise InvalidArgument(f"{what}: content type {content_type} but the bytes are {fmt}")
            width, height = img.size
            if width < 1 or height < 1:
                raise InvalidArgument(f"{what}: {width}x{height} has no pixels")
            if max(width, height) > max_side:
                raise InvalidArgument(f"{what}: {width}x{height} is larger than {max_side} px on its longest side")
            img.load()
            img = ImageOps.exif_transpose(img)
    except InvalidArgument:
        raise
    except Image.DecompressionBombError:
        raise InvalidArgument(f"{what}: larger than {max_side} px on its longest side") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidArgument(f"{what}: not a readable PNG, JPEG or WebP ({type(exc).__name__})") from None
    pixels, alpha = _to_rgb(img)
    return Photo(pixels, fmt, alpha)


def _to_rgb(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit grey: keep the top 8 bits (PNG's 16-bit samples use the full 0..65535 range).
        grey = (np.asarray(img, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2), None
    if img.mode == "F":
        grey = np.asarray(img, dtype=np.float32).clip(0, 255).round().astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2), None
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"))
        return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
    return np.asarray(img.convert("RGB"), dtype=np.uint8), None


def encode_photo(pixels: np.ndarray, fmt: str, alpha: np.ndarray | None = None) -> bytes:
    """`pixels` in `fmt`: PNG and WebP losslessly (untouched pixels stay bit-identical), JPEG at
    quality 95. Alpha is put back where the format has it (JPEG has none)."""
    if fmt not in FORMATS:
        raise InvalidArgument(f"cannot write format {quoted(fmt, 16)}; use PNG, JPEG or WebP")
    img = Image.fromarray(pixels, "RGB")
    if alpha is not None and fmt != "JPEG":
        img = Image.fromarray(np.dstack([pixels, alpha]), "RGBA")
    buffer = io.BytesIO()
    if fmt == "PNG":
        img.save(buffer, format="PNG", compress_level=6)
    elif fmt == "WEBP":
        img.save(buffer, format="WEBP", lossless=True, exact=True)
    else:
        img.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
