"""JPEG encode/decode of flow codes (gray) and RGB frames.

OpenCV's imencode/imdecode (libjpeg-turbo) was chosen by measurement on a 320x240 UCF-101 frame
(benchmarks/bench_jpeg.py): gray encode 142 us vs simplejpeg 137 us vs Pillow 235 us; gray decode 106 vs 92 vs
241 us; colour encode 294 vs 503 (simplejpeg) us; colour decode 300 vs 253 vs 475 (Pillow) us. It is within 15%
of the fastest everywhere, byte-identical on decode, and needs no dependency beyond OpenCV.

12-bit flow codes (``--bits 12``, uint16 0..4095) go to 12-bit JPEG through imagecodecs (libjpeg-turbo 3,
bundled in its wheel), the one well-kept binding that reads and writes it: OpenCV and Pillow read only 8-bit
JPEG. It is imported only when a 12-bit image is met. libjpeg-turbo has no SIMD code for 12 bits, so such an
image decodes about 2x slower than an 8-bit one at quality 50, 3x at 60 (benchmarks/README.md, bench_quality).
"""
from __future__ import annotations

import cv2
import numpy as np

from flowprep.errors import FlowprepError


class MissingCodecError(FlowprepError, RuntimeError):
    """12-bit JPEG asked for where imagecodecs is not installed: one line in every verb (a RuntimeError alone had
    been a 60-line traceback in visualize, quality and the trainer)."""


def _imagecodecs():
    try:
        import imagecodecs
    except ImportError:
        raise MissingCodecError("12-bit flow JPEGs (written with `flowprep extract --bits 12`) need imagecodecs: "
                                "pip install imagecodecs (or the project's [jpeg12] extra)") from None
    return imagecodecs


def require_12bit() -> None:
    """MissingCodecError (a FlowprepError), saying how to install it, when 12-bit JPEG (imagecodecs) is missing."""
    _imagecodecs()


# SOFn markers (a frame header: precision, height, width); C4 (DHT), C8 (JPG) and CC (DAC) are not frames
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn and TEM: markers without a length


def frame_header(data: bytes | np.ndarray) -> tuple[int, int, int] | None:
    """(bits per sample, height, width) from a JPEG's frame header, or None if none is found in its first 64 KiB
    (not a JPEG, or one cut before its header)."""
    buf = bytes(data[:65536])
    if buf[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 1 < len(buf):
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker in _SOF:  # length (2 bytes), precision, height, width
            return (buf[i + 4], int.from_bytes(buf[i + 5:i + 7], "big"), int.from_bytes(buf[i + 7:i + 9], "big")) \
                if i + 9 <= len(buf) else None
        i += 2 + int.from_bytes(buf[i + 2:i + 4], "big")
    return None


def precision(data: bytes | np.ndarray) -> int | None:
    """Bits per sample of a JPEG (from its frame header), or None if no frame header is found."""
    header = frame_header(data)
    return None if header is None else header[0]


def jpeg_problem(data: bytes | np.ndarray) -> str | None:
    """What is wrong with a JPEG file's bytes, found without decoding them, or None: empty, another format, no
    frame header, or cut short (no end-of-image marker: libjpeg only warns, and OpenCV 4 returns such an image
    with its lost part grey). About 1.5 us, against 140 to 290 for a decode (flowprep.interchange.frames)."""
    n = len(data)
    if n == 0:
        return "is empty (0 bytes)"
    head = bytes(data[:8])
    if head[:2] != b"\xff\xd8":
        kind = "a PNG image" if head.startswith(b"\x89PNG") else f"not an image ({n} bytes starting {head[:4]!r})"
        return f"is {kind}, not a JPEG"
    if frame_header(data) is None:
        return f"has no JPEG frame header in its {n} bytes (cut short or damaged)"
    if bytes(data[-16:]).rstrip(b"\x00\r\n ")[-2:] != b"\xff\xd9":  # some writers pad after the end marker
        return f"is cut short ({n} bytes, no JPEG end-of-image marker)"
    return None


def jpeg_damage(data: bytes | np.ndarray) -> str | None:
    """What libjpeg finds wrong in a whole JPEG's coded data when it decodes it, or None: a cut stream closed with
    an end marker, a header that claims more pixels than the data holds. OpenCV, Pillow and torchvision decode
    such a file (its lost part grey) and only print libjpeg's warning. Decoded at 1/8 scale, so that memory is
    1/64 of what the header claims (a 30000x30000 claim: 14 MB); the time is mostly the entropy decoding's (36 us
    a 320x240 flow image, 110 us an RGB frame: half of OpenCV's full decode). Bytes before the end marker that
    belong to no segment (webcam and MJPEG writers leave some) are libjpeg's warning too, and harmless."""
    import simplejpeg  # only where foreign JPEGs come in (import): the GPU check's Python need not have it

    try:
        colour = simplejpeg.decode_jpeg_header(bytes(data))[2]
        simplejpeg.decode_jpeg(bytes(data), colorspace="CMYK" if colour in ("CMYK", "YCCK") else "GRAY",
                               min_height=1, min_width=1, strict=True)  # the smallest scale: 1/8
    except ValueError as e:
        if "extraneous bytes before marker 0xd9" in str(e):
            return None
        if "precision" in str(e):  # flowprep's own 12-bit flow: another kind of file, not a damaged one
            return f"is a JPEG of another precision than 8 bits ({e}), which import does not take"
        return f"has damaged image data ({e})"
    return None


def encode_gray(image: np.ndarray, quality: int) -> bytes:
    """(H, W) uint8 -> baseline grayscale JPEG bytes; (H, W) uint16 codes 0..4095 -> 12-bit grayscale JPEG."""
    if image.dtype == np.uint16:
        # libjpeg-turbo's 12-bit path uses optimised Huffman tables already (the optimize flag changes nothing)
        return bytes(_imagecodecs().jpeg8_encode(np.ascontiguousarray(image), level=int(quality), bitspersample=12))
    # Optimised Huffman tables: lossless (the same pixels back), 23% fewer bytes on flow at q95
    # (benchmarks/bench_quality.py), about 0.1 ms more per image.
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality), cv2.IMWRITE_JPEG_OPTIMIZE, 1])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for an image of shape {image.shape}")
    return buf.tobytes()


def encode_bgr(image: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 BGR (OpenCV's order) -> colour JPEG bytes."""
    return encode_gray(image, quality)  # imencode handles 1 and 3 channels alike


def _imdecode(data: bytes | np.ndarray, flags: int) -> np.ndarray | None:
    # OpenCV asserts on an empty buffer (a cv2.error, not None): an empty image gets a ValueError like any other
    if len(data) == 0:
        raise ValueError("not a decodable JPEG (0 bytes: empty)")
    try:
        return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as e:
        raise ValueError(f"not a decodable JPEG ({str(e).strip().splitlines()[-1]})") from None


def decode_gray(data: bytes | np.ndarray) -> np.ndarray:
    """JPEG bytes -> (H, W) uint8, or uint16 for a 12-bit JPEG (the data says which); ValueError if not a JPEG."""
    img = _imdecode(data, cv2.IMREAD_GRAYSCALE)
    if img is None:
        if precision(data) == 12:  # OpenCV reads only 8-bit JPEG; asked only after it failed (no cost for 8 bits)
            codecs = _imagecodecs()
            try:
                return np.asarray(codecs.jpeg8_decode(bytes(data)), dtype=np.uint16)
            except Exception as e:  # imagecodecs' own error type
                raise ValueError(f"not a decodable 12-bit JPEG ({e})") from e
        raise ValueError("not a decodable JPEG")
    return img


def decode_rgb(data: bytes | np.ndarray) -> np.ndarray:
    """JPEG bytes -> (H, W, 3) uint8 in RGB order (what torchvision and PIL expect); ValueError if not a JPEG."""
    img = _imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("not a decodable JPEG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
