"""The extraction settings (``ExtractConfig``) and their identity: the part an output folder is bound to.

``identity()`` is what ``flowprep.json`` and every shard store; ``from_identity`` is its inverse, so any tool
that needs a folder's settings (resume, verify --repair, quality --shards) rebuilds them from the folder itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flowprep.codecs.quantize import QuantConfig
from flowprep.codecs.video import Resize
from flowprep.errors import FlowprepError
from flowprep.solvers import SolverConfig
from flowprep.store.format import FORMAT_VERSION

JPEG_QUALITY = 95  # of the flow and the RGB images, by default
VIDEOS_PER_SHARD = 16  # by default: a kill loses at most this many videos per worker


@dataclass(frozen=True)
class ExtractConfig:
    """Everything that decides what lands in the shards (plus the solver's backend/device, which do not)."""

    solver: SolverConfig = field(default_factory=SolverConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    quality: int = JPEG_QUALITY  # of the flow images
    rgb: bool = True
    rgb_quality: int = JPEG_QUALITY
    resize: Resize = field(default_factory=Resize)
    backward: bool = False  # also the backward flow (frame t+1 -> t) of every pair: twice the solver's work
    # a video whose decoding stops early fails instead of keeping the frames that decoded; not part of the
    # identity (like the backend): it decides which videos are kept, not what a kept video holds
    strict_decode: bool = False

    def __post_init__(self) -> None:
        kinds = {"solver": SolverConfig, "quant": QuantConfig, "resize": Resize, "rgb": bool, "backward": bool,
                 "strict_decode": bool}
        for name, kind in kinds.items():
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"ExtractConfig's {name} must be a {kind.__name__}, got {getattr(self, name)!r}")
        for name in ("quality", "rgb_quality"):
            q = getattr(self, name)
            if not isinstance(q, int) or isinstance(q, bool) or not 1 <= q <= 100:
                raise ValueError(f"JPEG {name.replace('_', ' ')} must be a whole number 1..100, got {q!r}")

    def identity(self) -> dict:
        """The settings an output folder is bound to: a resumed run must match them exactly.

        The backend and device are left out on purpose: resuming a CPU run on a GPU is allowed, and each
        video records which backend computed it.
        """
        return {
            "format_version": FORMAT_VERSION,
            "flow": self.solver.output_identity(),
            "quantization": self.quant.to_dict(),
            "jpeg_quality": self.quality,
            "rgb": self.rgb,
            "rgb_quality": self.rgb_quality if self.rgb else None,
            "resize": self.resize.to_dict(),
            **({"backward": True} if self.backward else {}),  # absent when off: older folders keep their identity
        }

    @classmethod
    def from_identity(cls, ident: dict, backend: str = "auto", device: str = "auto") -> "ExtractConfig":
        """The config whose ``identity()`` is ``ident`` (extra keys, such as a shard's solver description, are
        ignored), to run on ``backend`` and ``device``.

        Raises:
            ValueError: ``ident`` is not the identity of an extraction (e.g. a folder made by ``flowprep
                import``, whose flow was computed elsewhere).
        """
        try:
            flow, q, r = ident["flow"], ident["quantization"], ident["resize"] or {}
            return cls(
                solver=SolverConfig(algo=flow["algo"], backend=backend, device=device, params=dict(flow["params"])),
                quant=QuantConfig.from_dict(q), quality=int(ident["jpeg_quality"]), rgb=bool(ident["rgb"]),
                rgb_quality=int(ident["rgb_quality"] or JPEG_QUALITY),
                resize=Resize(short_side=r.get("short_side"), size=tuple(r["size"]) if r.get("size") else None),
                backward=bool(ident.get("backward", False)))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"these settings are not those of a `flowprep extract` run ({e}): "
                             f"{ {k: ident.get(k) for k in ('flow', 'quantization')} }") from None


def folder_config(out_dir: str | Path, backend: str = "auto", device: str = "auto") -> ExtractConfig:
    """The ExtractConfig an output folder was written with, to run on ``backend`` and ``device``.

    Raises:
        FlowprepError: the folder has no settings yet, or they are not those of ``flowprep extract``.
    """
    from flowprep.store.settings import SETTINGS_FILE, read_identity  # reads shards (h5py): not at CLI start

    ident = read_identity(out_dir)
    if ident is None:
        raise FlowprepError(f"{out_dir} has neither {SETTINGS_FILE} nor a readable shard: its settings are unknown")
    if (ident.get("flow") or {}).get("algo") == "imported":  # not "unknown flow algorithm 'imported'" and a dict
        raise FlowprepError(f"{out_dir} was imported (`flowprep import`), not extracted: the algorithm and settings "
                            "that made its flow are unknown, and `quality --shards` recomputes flow with them; run "
                            "`flowprep quality` on the source videos instead")
    try:
        return ExtractConfig.from_identity(ident, backend, device)
    except ValueError as e:
        raise FlowprepError(f"{out_dir}: {e}") from None
