"""Decoding untrusted image bytes and encoding results.

Every service and command reads images through `decode_image`, so a corrupt file, a decompression
bomb, an unsupported format or a wrong mode gets the same clear InvalidArgument everywhere.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from veil.errors import InvalidArgument, quoted

CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}
MAX_SIDE = 4096
"""Larger images are refused from their header, before any pixel is decoded."""


def decode_image(data: bytes, expected_size: int | None = None, content_type: str | None = None,
                 what: str = "image") -> np.ndarray:
    """uint8 RGB (H, W, 3) from PNG or JPEG bytes, or InvalidArgument saying what is wrong."""
    if not data:
        raise InvalidArgument(f"{what}: empty")
    if content_type is not None and content_type not in CONTENT_TYPES.values():
        raise InvalidArgument(f"{what}: content type {quoted(content_type)} is not supported; "
                              f"use {' or '.join(CONTENT_TYPES.values())}")
    try:
        with warnings.catch_warnings():
            # The size check below refuses big images from the header, with a clearer message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.format not in CONTENT_TYPES:
                raise InvalidArgument(f"{what}: format {img.format} is not supported; use PNG or JPEG")
            if content_type is not None and CONTENT_TYPES[img.format] != content_type:
                raise InvalidArgument(f"{what}: content type {content_type} but the bytes are {img.format}")
            width, height = img.size
            if width < 1 or height < 1:
                raise InvalidArgument(f"{what}: {width}x{height} has no pixels")
            if width > MAX_SIDE or height > MAX_SIDE:
                raise InvalidArgument(f"{what}: {width}x{height} is larger than {MAX_SIDE}x{MAX_SIDE}")
            img.load()
    except InvalidArgument:
        raise
    except Image.DecompressionBombError:
        raise InvalidArgument(f"{what}: larger than {MAX_SIDE}x{MAX_SIDE}") from None
    except UnidentifiedImageError:  # its message names the BytesIO object and its address
        raise InvalidArgument(f"{what}: not a readable PNG or JPEG (format not recognised)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidArgument(f"{what}: not a readable PNG or JPEG ({type(exc).__name__}: {exc})") from None
    if img.mode != "RGB":
        raise InvalidArgument(f"{what}: mode {img.mode}; expected RGB (8-bit, 3 channels)")
    if expected_size is not None and img.size != (expected_size, expected_size):
        raise InvalidArgument(f"{what}: {width}x{height}; this model takes {expected_size}x{expected_size}")
    return np.asarray(img, dtype=np.uint8)


def encode_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()
