"""Which JPEG library to use: OpenCV's imencode/imdecode (ours) against Pillow (the reference: what public
two-stream trainers use) and simplejpeg, on the same 320x240 frame and flow image of the real UCF-101 clip.

    python benchmarks/bench_jpeg.py [--repeat 300] [--quick]
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from flowprep.codecs.quantize import QuantConfig, quantize_flow

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "ucf101" / "v_ApplyEyeMakeup_g01_c01.avi"


def _time(fn, n: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    """Print microseconds per image for each library and operation, with the ratio to Pillow."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=300)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    n = 20 if args.quick else args.repeat
    cap = cv2.VideoCapture(str(CLIP))
    ok0, f0 = cap.read()
    ok1, f1 = cap.read()
    if not (ok0 and ok1):
        print(f"cannot read {CLIP}", file=sys.stderr)
        return 2
    g0, g1 = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in (f0, f1))
    flow = cv2.optflow.DualTVL1OpticalFlow_create().calc(g0, g1, None).transpose(2, 0, 1)[None]
    code = np.ascontiguousarray(quantize_flow(flow, QuantConfig())[0][0, 0])
    rgb = np.ascontiguousarray(f0[..., ::-1])

    def pil_enc(img):
        b = io.BytesIO()
        Image.fromarray(img).save(b, "JPEG", quality=95)
        return b.getvalue()

    libs = {
        "opencv (ours)": dict(
            enc_gray=lambda: cv2.imencode(".jpg", code, [cv2.IMWRITE_JPEG_QUALITY, 95]),
            dec_gray=lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_GRAYSCALE),
            enc_rgb=lambda: cv2.imencode(".jpg", f0, [cv2.IMWRITE_JPEG_QUALITY, 95]),
            dec_rgb=lambda b: cv2.cvtColor(cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR),
                                           cv2.COLOR_BGR2RGB)),
        "pillow (reference)": dict(
            enc_gray=lambda: pil_enc(code), dec_gray=lambda b: np.asarray(Image.open(io.BytesIO(b))),
            enc_rgb=lambda: pil_enc(rgb), dec_rgb=lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))),
    }
    try:
        import simplejpeg
        libs["simplejpeg"] = dict(
            enc_gray=lambda: simplejpeg.encode_jpeg(code[..., None], quality=95, colorspace="GRAY"),
            dec_gray=lambda b: simplejpeg.decode_jpeg(b, colorspace="GRAY"),
            enc_rgb=lambda: simplejpeg.encode_jpeg(rgb, quality=95, colorspace="RGB"),
            dec_rgb=lambda b: simplejpeg.decode_jpeg(b, colorspace="RGB"))
    except ImportError:
        pass
    gray_b = cv2.imencode(".jpg", code, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    rgb_b = cv2.imencode(".jpg", f0, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    rows = {}
    for name, fns in libs.items():
        rows[name] = [_time(fns["enc_gray"], n), _time(lambda f=fns: f["dec_gray"](gray_b), n),
                      _time(fns["enc_rgb"], n), _time(lambda f=fns: f["dec_rgb"](rgb_b), n)]
    ref = rows["pillow (reference)"]
    print(f"320x240, quality 95, microseconds per image (ratio = Pillow's time / this library's), {n} repeats\n")
    print(f"{'library':20s}" + "".join(f"{h:>22s}" for h in ("encode flow (gray)", "decode flow (gray)",
                                                               "encode RGB", "decode RGB")))
    for name, r in rows.items():
        print(f"{name:20s}" + "".join(f"{v:12.0f} ({p / v:4.2f}x)" for v, p in zip(r, ref)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
