"""Old module paths (flowprep 0.2's flat top level) forward to their new homes, with a DeprecationWarning.

``import flowprep.quantize`` still works and gives ``flowprep.codecs.quantize`` itself (the same module object,
so monkeypatching and pickles agree). The forwarding goes away in 0.4; README's "Moved in 0.3" lists the homes.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# old path -> new path. flowprep.datasets and flowprep.quality are packages now: their __init__ forwards the old
# modules' names (flowprep.datasets.list_videos, flowprep.quality.evaluate, ...).
MOVED = {f"flowprep.{old}": f"flowprep.{new}" for old, new in {
    "durable": "base.durable",
    "video": "codecs.video", "jpeg": "codecs.jpeg", "quantize": "codecs.quantize", "flo": "codecs.flo",
    "splits": "datasets.splits", "kinetics": "datasets.kinetics", "demo_data": "datasets.demo",
    "record": "store.record",
    "config": "extraction.config", "pipeline": "extraction.pipeline", "extract": "extraction.extract",
    "batch": "extraction.batch", "repair": "extraction.repair", "report": "extraction.report",
    "flow_metrics": "quality.metrics", "colorwheel": "quality.colorwheel", "quality_report": "quality.report",
    "quality_sampling": "quality.sampling", "visualize": "quality.visualize", "evaluate_gt": "quality.ground_truth",
}.items()}
# the trainer's sample code moved down into flowprep's loading layer (imported once flowprep is)
MOVED.update({"train.data": "flowprep.loading.clips", "train.transforms": "flowprep.loading.augment",
              "train.stacking": "flowprep.loading.stacking"})


class _Forward(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names and loads each as the module at its new path."""

    def find_spec(self, name, path=None, target=None):  # noqa: D102 (the finder protocol)
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def __init__(self) -> None:
        self._specs = {}  # new name -> the module's own spec

    def create_module(self, spec):  # noqa: D102
        warnings.warn(f"{spec.name} moved to {MOVED[spec.name]}; import it from there (the old path goes in 0.4)",
                      DeprecationWarning, stacklevel=2)
        module = importlib.import_module(MOVED[spec.name])
        self._specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module) -> None:  # noqa: D102
        # the import system stamped the old name's spec on the module: give it back its own
        module.__spec__ = self._specs[module.__name__]


def install() -> None:
    """Let the old paths import (once per process)."""
    if not any(isinstance(f, _Forward) for f in sys.meta_path):
        sys.meta_path.append(_Forward())


def forward(module_name: str, old: str, names: set[str], name: str):
    """For a package's ``__getattr__``: ``name`` of the old module ``old``, from its new home ``module_name``."""
    if name in names:
        warnings.warn(f"{old}.{name} moved to {module_name}.{name}; import it from there (the old path goes in 0.4)",
                      DeprecationWarning, stacklevel=3)
        return getattr(importlib.import_module(module_name), name)
    raise AttributeError(f"module {old!r} has no attribute {name!r}")
