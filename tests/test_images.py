"""decode_image: the one gate every untrusted image passes."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from veil.errors import InvalidArgument
from veil.images import decode_image, encode_png
from veil.unlearning.dataset import decode_image as dataset_decode_image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, followed by a tiny (wrong) data chunk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_round_trip_png_and_jpeg() -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    assert np.array_equal(decode_image(encode_png(pixels), expected_size=8, content_type="image/png"), pixels)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    assert decode_image(buffer.getvalue(), content_type="image/jpeg").shape == (8, 8, 3)


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (b"", {}, "empty"),
        (b"not an image at all", {}, "not a readable PNG or JPEG"),
        (png_header_only(10000, 10000), {}, "10000x10000 is larger than 4096x4096"),
        (png_header_only(0, 0), {}, "not a readable PNG or JPEG"),
        (encode_png(np.zeros((8, 8, 3), np.uint8)), {"content_type": "image/gif"}, "content type 'image/gif' is not supported"),
        (encode_png(np.zeros((8, 8, 3), np.uint8)), {"content_type": "image/jpeg"}, "content type image/jpeg but the bytes are PNG"),
        (encode_png(np.zeros((8, 8, 3), np.uint8)), {"expected_size": 16}, "8x8; this model takes 16x16"),
    ],
)
def test_refusals(data: bytes, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        decode_image(data, what="upload", **kwargs)


def test_gif_and_grey_refused() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="GIF")
    with pytest.raises(InvalidArgument, match="format GIF is not supported"):
        decode_image(buffer.getvalue())
    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, format="PNG")
    with pytest.raises(InvalidArgument, match="mode L; expected RGB"):
        decode_image(buffer.getvalue())


@pytest.mark.parametrize("decode", [decode_image, lambda data: dataset_decode_image(data, "upload")])
def test_unreadable_bytes_are_refused_without_python_object_addresses(decode) -> None:
    with pytest.raises(InvalidArgument) as refused:
        decode(b"these bytes are no image at all")
    assert "not a readable" in str(refused.value)
    assert " at 0x" not in str(refused.value) and "BytesIO" not in str(refused.value)
