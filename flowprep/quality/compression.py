"""What JPEG flow costs in accuracy and saves in bytes: the API under ``flowprep quality``.

For each setting (fixed bound B or adaptive range, times a JPEG quality) the raw float flow of sampled frame
pairs is quantized to integer codes (uint8; uint16 at 12 bits: ``flowprep.codecs.quantize``), JPEG-encoded as
the extractor does (``flowprep.codecs.jpeg``), decoded and rebuilt; the rebuilt flow is compared with the raw one:

* ``epe_mean`` / ``epe_p95``: mean and 95th percentile of the per-pixel endpoint error, pixels, over all
  sampled pixels (clipping by the bound counts in it);
* ``clipped_fraction``: the share of vectors with a component outside the bound (0 in adaptive mode);
* ``bytes_per_pair``: bytes of the x and y JPEGs of one flow field; ``ratio``: float32 bytes (H x W x 2 x 4)
  against those;
* ``projected_gb``: the same bytes per pixel over UCF-101 (2.48 M pairs at 320x240, 1.52 TB in float32).

Raw flow comes from a video, a dataset folder or list, or the source videos of an extracted output folder
(``flowprep.quality.sampling``'s ``measure_videos`` / ``measure_shards``); ``evaluate`` turns it into a
``QualityReport``; the files are written by ``flowprep.quality.report``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from flowprep.codecs.jpeg import decode_gray, encode_gray
from flowprep.codecs.quantize import DEFAULT_BITS, DEFAULT_BOUND, QuantConfig, dequantize_flow, quantize_flow
from flowprep.codecs.video import Resize, iter_frames, to_gray
from flowprep.extraction.config import ExtractConfig
from flowprep.quality.metrics import endpoint_error

if TYPE_CHECKING:  # the storage package and the solvers load only when used
    from flowprep.solvers import Solver
    from flowprep.store.reader import ShardSet

# UCF-101 as the paper counts it: 2.48 M flow pairs at 320x240; float32 flow is 2.48e6 * 320*240*2*4 = 1.52 TB.
UCF101_PAIRS = 2_480_000
UCF101_SIZE = (320, 240)  # (width, height)
# The paper's figures: 27 GB of JPEG against 1.5 TB of float, i.e. ~10.9 KB per pair and ~56x.
PAPER_REFERENCE = {"dataset_gb": 27.0, "float_tb": 1.5, "bytes_per_pair": 27e9 / UCF101_PAIRS, "ratio": 56.0}
SAMPLE_PAIRS = 50  # frame pairs a report measures, by default (one video per pair at most)
EPE_TARGET = 0.10  # px: the default target for the recommended setting
CLIP_TARGET = 0.001  # the recommended setting clips at most 0.1% of vectors
# Histogram of per-pixel rebuild error: 0..1 px in 0.02 px bins, then one bin for everything above.
HIST_EDGES = np.append(np.linspace(0.0, 1.0, 51), np.inf)


@dataclass(frozen=True)
class Setting:
    """One way to store flow: quantization ``mode`` ('fixed' with ``bound`` px, or 'adaptive'), JPEG quality,
    and bits per code (8, or 12 for 12-bit JPEG)."""

    mode: str
    bound: float | None
    quality: int
    bits: int = DEFAULT_BITS

    def __post_init__(self) -> None:
        self.quant()  # validates mode, bound and bits
        if self.mode == "fixed" and self.bound is None:
            raise ValueError("a fixed-bound setting needs a bound")
        if not 1 <= int(self.quality) <= 100:
            raise ValueError(f"JPEG quality must be 1..100, got {self.quality}")

    @property
    def name(self) -> str:
        """Short label, e.g. ``fixed-b20-q95``, ``adaptive-q95`` or ``fixed-b20-q50-12bit``."""
        base = f"adaptive-q{self.quality}" if self.mode == "adaptive" else f"fixed-b{self.bound:g}-q{self.quality}"
        return base if self.bits == 8 else f"{base}-{self.bits}bit"

    def quant(self) -> QuantConfig:
        """The quantization config of this setting."""
        bound = float(self.bound) if self.mode == "fixed" and self.bound is not None else DEFAULT_BOUND
        return QuantConfig(self.mode, bound, self.bits)


def _extract_default() -> Setting:
    """What `flowprep extract` writes by default (fixed, bound 20, quality 95), from ExtractConfig's defaults."""
    c = ExtractConfig()
    return Setting(c.quant.mode, c.quant.bound, c.quality, c.quant.bits)


DEFAULT_SETTING = _extract_default()


def settings_grid(bounds: Sequence[float], qualities: Sequence[int], adaptive: bool,
                  bits: Sequence[int] = (8,)) -> list[Setting]:
    """Every fixed bound x quality (x bits), plus adaptive x quality when ``adaptive``; the default is always
    included."""
    out = [Setting("fixed", float(b), int(q), int(n)) for n in bits for b in bounds for q in qualities]
    if adaptive:
        out += [Setting("adaptive", None, int(q), int(n)) for n in bits for q in qualities]
    if DEFAULT_SETTING not in out:
        out.append(DEFAULT_SETTING)
    return list(dict.fromkeys(out))  # drop repeats, keep order


def rebuild(flow: np.ndarray, setting: Setting) -> tuple[np.ndarray, int, int]:
    """Store one flow field as the extractor would and read it back.

    Args:
        flow: (2, H, W) float flow in pixels.
        setting: quantization and JPEG quality.
    Returns:
        (rebuilt (2, H, W) float32, vectors clipped, bytes of the x and y JPEGs).
    """
    codes, params, clipped = quantize_flow(flow[None], setting.quant())
    jpegs = [encode_gray(codes[0, c], setting.quality) for c in (0, 1)]
    decoded = np.stack([decode_gray(j) for j in jpegs])[None]
    return dequantize_flow(decoded, params)[0], int(clipped[0]), sum(map(len, jpegs))


@dataclass
class SettingResult:
    """The measured cost of one setting over the sampled pairs."""

    setting: Setting
    pairs: int
    pixels_per_pair: float
    epe_mean: float
    epe_p95: float
    epe_max: float
    clipped_fraction: float
    bytes_per_pair: float
    hist: list[int] = field(default_factory=list)  # counts per HIST_EDGES bin
    label: str = ""  # name override, e.g. "stored" for what is in the shards

    @property
    def name(self) -> str:
        """The setting's label."""
        return self.label or self.setting.name

    @property
    def ratio(self) -> float:
        """float32 bytes (H x W x 2 x 4) per pair divided by JPEG bytes per pair."""
        return self.pixels_per_pair * 8 / self.bytes_per_pair

    @property
    def projected_gb(self) -> float:
        """UCF-101 (2.48 M pairs at 320x240) at this setting's bytes per pixel, in GB (1e9 bytes)."""
        w, h = UCF101_SIZE
        return self.bytes_per_pair * (w * h / self.pixels_per_pair) * UCF101_PAIRS / 1e9

    def to_dict(self) -> dict:
        """JSON-able summary: bound, quality, mode, epe_mean, epe_p95, clipped_fraction, bytes_per_pair, ratio..."""
        return {"name": self.name, "mode": self.setting.mode, "bound": self.setting.bound,
                "quality": self.setting.quality, "bits": self.setting.bits, "pairs": self.pairs,
                "epe_mean": self.epe_mean, "epe_p95": self.epe_p95, "epe_max": self.epe_max,
                "clipped_fraction": self.clipped_fraction, "bytes_per_pair": self.bytes_per_pair,
                "ratio": self.ratio, "projected_gb": self.projected_gb}


def summarize(setting: Setting, errors: Sequence[np.ndarray], clipped: int, nbytes: int,
              label: str = "") -> SettingResult:
    """Turn per-pair error maps, the clipped-vector count and the byte count into a SettingResult."""
    err = np.concatenate([e.ravel() for e in errors])
    pairs = len(errors)
    return SettingResult(
        setting=setting, pairs=pairs, pixels_per_pair=err.size / pairs, epe_mean=float(err.mean()),
        epe_p95=float(np.percentile(err, 95)), epe_max=float(err.max()), clipped_fraction=clipped / err.size,
        bytes_per_pair=nbytes / pairs, hist=np.histogram(err, HIST_EDGES)[0].tolist(), label=label)


def evaluate_setting(fields: Sequence[np.ndarray], setting: Setting) -> SettingResult:
    """Rebuild every (2, H, W) raw field under one setting and measure the error and the bytes."""
    if not fields:
        raise ValueError("no flow fields to evaluate")
    errors, clipped, nbytes = [], 0, 0
    for f in fields:
        rebuilt, c, b = rebuild(f, setting)
        errors.append(endpoint_error(rebuilt, f).astype(np.float32))
        clipped += c
        nbytes += b
    return summarize(setting, errors, clipped, nbytes)


def pareto_front(results: Sequence[SettingResult]) -> list[SettingResult]:
    """The settings no other beats on both bytes and mean EPE, cheapest first."""
    front = [r for r in results if not any(
        o.bytes_per_pair <= r.bytes_per_pair and o.epe_mean <= r.epe_mean
        and (o.bytes_per_pair < r.bytes_per_pair or o.epe_mean < r.epe_mean) for o in results)]
    return sorted(front, key=lambda r: (r.bytes_per_pair, r.epe_mean))


def recommend(results: Sequence[SettingResult], epe_target: float = EPE_TARGET,
              clip_target: float = CLIP_TARGET) -> SettingResult:
    """The cheapest setting with mean EPE <= ``epe_target`` that clips <= ``clip_target`` of the vectors.

    8-bit settings come first: a 12-bit one is recommended only when no 8-bit setting meets the targets,
    because 12-bit JPEGs decode 2-3x slower at training time and need imagecodecs to read. When none meets
    both, the one with the lowest mean EPE (the caller should say the target was missed).
    """
    if not results:
        raise ValueError("no results to choose from")
    ok = [r for r in results if r.epe_mean <= epe_target and r.clipped_fraction <= clip_target]
    if ok:
        return min(ok, key=lambda r: (r.setting.bits != 8, r.bytes_per_pair, r.epe_mean))
    return min(results, key=lambda r: (r.epe_mean, r.bytes_per_pair))


def projection(pixels_per_pair: float = UCF101_SIZE[0] * UCF101_SIZE[1]) -> dict:
    """The dataset the projection is made for, and its float32 size."""
    w, h = UCF101_SIZE
    return {"dataset": "UCF-101", "pairs": UCF101_PAIRS, "width": w, "height": h,
            "float32_tb": UCF101_PAIRS * w * h * 8 / 1e12, "sample_pixels_per_pair": pixels_per_pair,
            "paper": dict(PAPER_REFERENCE)}


@dataclass
class QualityReport:
    """Everything ``flowprep quality`` reports: one result per setting, the Pareto front and the pick."""

    source: str
    solver: dict
    samples: list[tuple[str, int]]  # (video, flow index) of each sampled pair
    results: list[SettingResult]
    epe_target: float = EPE_TARGET
    stored: SettingResult | None = None  # shards mode: what the shards hold, read back

    @property
    def pareto(self) -> list[SettingResult]:
        """Non-dominated settings, cheapest first."""
        return pareto_front(self.results)

    @property
    def recommended(self) -> SettingResult:
        """The cheapest setting within the EPE and clipping targets."""
        return recommend(self.results, self.epe_target)

    @property
    def default(self) -> SettingResult | None:
        """The result of the extractor's default setting (fixed, bound 20, quality 95), if measured."""
        return next((r for r in self.results if r.setting == DEFAULT_SETTING), None)

    def to_dict(self) -> dict:
        """The JSON object of ``flowprep quality --json``."""
        front = {r.name for r in self.pareto}
        rec = self.recommended
        return {
            "source": self.source, "solver": self.solver, "pairs": len(self.samples),
            "videos": len({v for v, _ in self.samples}), "epe_target": self.epe_target,
            "clip_target": CLIP_TARGET,
            "settings": [{**r.to_dict(), "pareto": r.name in front} for r in self.results],
            "pareto": [r.name for r in self.pareto],
            "recommended": {**rec.to_dict(), "meets_target": rec.epe_mean <= self.epe_target
                            and rec.clipped_fraction <= CLIP_TARGET},
            "default": self.default.to_dict() if self.default else None,
            "stored": self.stored.to_dict() if self.stored else None,
            "projection": projection(self.results[0].pixels_per_pair),
            "histogram_edges": [float(e) for e in HIST_EDGES[:-1]] + ["inf"],
            "histograms": {r.name: r.hist for r in self.results},
            "samples": [{"video": v, "index": i} for v, i in self.samples],
        }


def evaluate(fields: Sequence[np.ndarray], settings: Sequence[Setting], source: str = "",
             solver: dict | None = None, samples: Sequence[tuple[str, int]] | None = None,
             epe_target: float = EPE_TARGET, progress: Callable[[int], None] | None = None) -> QualityReport:
    """Measure every setting on the same raw flow fields.

    Args:
        fields: raw (2, H, W) float flow fields in pixels (sizes may differ between fields).
        settings: the settings to try.
        source: what the flow came from (for the report).
        solver: the solver's ``describe()``.
        samples: (video, flow index) of each field; default: ("", i).
        epe_target: mean EPE the recommended setting must stay under.
        progress: called with 1 after each setting.
    """
    results = []
    for s in settings:
        results.append(evaluate_setting(fields, s))
        if progress is not None:
            progress(1)
    samples = list(samples) if samples is not None else [("", i) for i in range(len(fields))]
    if len(samples) != len(fields):
        raise ValueError(f"{len(samples)} sample names for {len(fields)} fields")
    return QualityReport(source=source, solver=solver or {}, samples=samples, results=results,
                         epe_target=epe_target)


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` counts differing by at most one, larger first."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def spread_indices(n_flows: int, n: int) -> list[int]:
    """``n`` flow indices spread evenly over 0..n_flows-1 (all of them when n >= n_flows)."""
    if n_flows <= 0 or n <= 0:
        return []
    if n >= n_flows:
        return list(range(n_flows))
    return sorted({int(round(x)) for x in np.linspace(0, n_flows - 1, n)})


def choose_videos(names: Sequence[str], sample: int, seed: int = 0) -> list[tuple[str, int]]:
    """Pick videos at random (seeded) and how many pairs to sample from each: one video per pair at most."""
    if sample < 1:
        raise ValueError(f"--sample must be at least 1, got {sample}")
    rng = np.random.default_rng(seed)
    k = min(len(names), sample)
    picked = [names[i] for i in sorted(rng.choice(len(names), size=k, replace=False))]
    return list(zip(picked, split_evenly(sample, k)))


def compute_raw_flows(path: str, indices: Sequence[int], solver: Solver, resize: Resize = Resize(),
                      progress: Callable[[int], None] | None = None) -> list[tuple[int, np.ndarray]]:
    """The raw float flow of some frame pairs of a video, decoding it once from the start.

    Args:
        path: the video file.
        indices: flow indices t (flow t goes from frame t to t+1, flowprep's convention).
        solver: computes the flow (its ``batch_size`` pairs at a time).
        resize: how frames are resized first (as the extractor did).
        progress: called with the number of pairs finished after each solver call.
    Returns:
        (t, (2, H, W) float32 flow) for each index the video has, in order; indices past its end are dropped.
    """
    return _raw_flows(path, indices, solver, resize, progress)[0]


def _raw_flows(path: str, indices: Sequence[int], solver: Solver, resize: Resize,
               progress: Callable[[int], None] | None) -> tuple[list[tuple[int, np.ndarray]], int, tuple | None]:
    # compute_raw_flows, the frames decoded (all, when an index lay past the end), the last pair (t, frame, frame)
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return [], 0, None
    out: list[tuple[int, np.ndarray]] = []
    batch: list[tuple[int, np.ndarray, np.ndarray]] = []
    bs = max(1, int(solver.batch_size))

    def flush() -> None:
        if batch:
            flow = solver.compute(np.stack([b[1] for b in batch]), np.stack([b[2] for b in batch]))
            out.extend((b[0], f) for b, f in zip(batch, flow))
            if progress is not None:
                progress(len(batch))
            batch.clear()

    want, prev, decoded, last = set(wanted), None, 0, None
    for t, frame in enumerate(iter_frames(path, resize)):
        decoded = t + 1
        gray = to_gray(frame)
        last = (t - 1, prev, gray) if prev is not None else None
        if prev is not None and t - 1 in want:
            batch.append((t - 1, prev, gray))
            if len(batch) >= bs:
                flush()
        prev = gray
        if t > wanted[-1]:  # past the last pair asked for: stop decoding
            break
    flush()
    return out, decoded, last


def spread_raw_flows(path: str, n_flows: int, n: int, solver: Solver, resize: Resize = Resize(),
                     progress: Callable[[int], None] | None = None) -> tuple[list[tuple[int, np.ndarray]], int]:
    """The raw flow of ``n`` pairs spread evenly over a video's ``n_flows`` (its header's count), and the number of
    flows it really has. Where fewer frames decode (a truncated file, a lying header), the pairs past the end are
    replaced by its last pair (still in memory) and others spread over the rest: a header announcing 10^9 frames
    had left one pair of 50 measured, and that pair chose the recommended setting."""
    first = spread_indices(n_flows, n)
    got, decoded, last = _raw_flows(path, first, solver, resize, progress)
    if len(got) == len(first):
        return got, n_flows
    flows, need, have = max(decoded - 1, 0), len(first) - len(got), {t for t, _ in got}
    if last is not None and last[0] not in have:  # a header one frame long (common) costs no second decode
        got.append((last[0], solver.compute(last[1][None], last[2][None])[0]))
        have.add(last[0])
        need -= 1
        if progress is not None:
            progress(1)
    if need > 0:
        free = [t for t in range(flows) if t not in have]
        more, _, _ = _raw_flows(path, [free[i] for i in spread_indices(len(free), need)], solver, resize, progress)
        got += more
    return sorted(got, key=lambda p: p[0]), flows


def setting_of(quant: QuantConfig, quality: int) -> Setting:
    """The Setting an extraction's quantization and JPEG quality amount to (what a folder stores)."""
    return Setting(quant.mode, quant.bound if quant.mode == "fixed" else None, int(quality), quant.bits)


def evaluate_stored(shards: ShardSet, samples: Sequence[tuple[str, int]], fields: Sequence[np.ndarray],
                    setting: Setting) -> SettingResult:
    """Compare the flow the shards hold (read back through the reader) with recomputed raw flow."""
    errors, clipped, nbytes = [], 0, 0
    bound = setting.bound if setting.mode == "fixed" else None
    for (key, t), raw in zip(samples, fields):
        stored = shards.flow(key, [t])[0]
        if stored.shape != raw.shape:
            raise ValueError(f"video {key} flow {t}: the shards hold {stored.shape[1:]} but the recomputed flow "
                             f"is {raw.shape[1:]}; was the source video changed since extraction?")
        errors.append(endpoint_error(stored, raw).astype(np.float32))
        clipped += int(np.any(np.abs(raw) > bound, axis=0).sum()) if bound is not None else 0
        nbytes += sum(len(b) for name in ("flow_x", "flow_y") for b in shards.jpegs(key, name, [t]))
    return summarize(setting, errors, clipped, nbytes, label="stored")
