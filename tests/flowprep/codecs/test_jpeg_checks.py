"""A JPEG's bytes judged without decoding them and its coded data decoded (what `flowprep import` checks of every
image), and decoding that says what is wrong in a ValueError: OpenCV raised its own cv2.error on an empty
buffer."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from flowprep.codecs.jpeg import decode_gray, decode_rgb, encode_bgr, encode_gray, frame_header, jpeg_problem


@pytest.fixture
def gray() -> bytes:
    return encode_gray(np.random.default_rng(0).integers(0, 256, (24, 40), np.uint8), 90)


def test_a_whole_jpeg_has_no_problem_and_its_header_gives_its_size(gray):
    color = encode_bgr(np.zeros((30, 20, 3), np.uint8), 90)
    assert jpeg_problem(gray) is None and jpeg_problem(color) is None
    assert frame_header(gray) == (8, 24, 40) and frame_header(color) == (8, 30, 20)
    assert jpeg_problem(gray + b"\x00" * 5) is None  # padding after the end marker, as some writers leave


def test_each_kind_of_bad_bytes_is_named(gray):
    png = cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes()
    assert jpeg_problem(b"") == "is empty (0 bytes)"
    assert jpeg_problem(png) == "is a PNG image, not a JPEG"
    assert jpeg_problem(b"hello\n") == "is not an image (6 bytes starting b'hell'), not a JPEG"
    assert jpeg_problem(gray[:10]) == "has no JPEG frame header in its 10 bytes (cut short or damaged)"
    half = gray[: len(gray) // 2]
    assert jpeg_problem(half) == f"is cut short ({len(half)} bytes, no JPEG end-of-image marker)"


@pytest.mark.parametrize("decode", [decode_gray, decode_rgb])
def test_decoding_empty_or_foreign_bytes_is_a_value_error_not_a_cv2_error(decode):
    for data in (b"", np.zeros(0, np.uint8), b"hello"):
        with pytest.raises(ValueError, match="not a decodable JPEG"):
            decode(data)


def test_libjpegs_harmless_warning_and_another_precision_are_not_called_damage():
    """Bytes before the end marker that belong to no segment (webcam and MJPEG writers leave some) are a libjpeg
    warning strict decoding raised on: a perfect image called damaged. A 12-bit JPEG was "damaged" too."""
    from flowprep.codecs.jpeg import jpeg_damage

    image = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (48, 64), np.uint8), (5, 5), 2)
    whole = encode_gray(image, 95)
    assert jpeg_damage(whole) is None and jpeg_damage(whole[:-2] + b"\x00\x00" + whole[-2:]) is None
    cut = whole[:len(whole) // 2] + b"\xff\xd9"
    assert jpeg_damage(cut).startswith("has damaged image data (Corrupt JPEG data")
    pytest.importorskip("imagecodecs")
    twelve = encode_gray(image.astype("uint16") * 16, 70)
    assert "another precision than 8 bits" in jpeg_damage(twelve)
