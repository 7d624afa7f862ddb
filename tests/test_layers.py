"""The layers, checked by what each module imports: data flows one way, and each layer imports only those below.

flowprep's packages from the bottom up; a module may import its own layer, the layers below, and flowprep's
public face (``flowprep``, ``flowprep.errors``). The trainer sits on top and reads shards only through the
loading layer (and the store's ``ShardSet`` it types against), never through extraction or a codec.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("base", "codecs", "datasets", "solvers", "store", "loading", "runners", "extraction", "quality",
          "interchange", "cli")
PUBLIC_FACE = {"flowprep", "flowprep.errors", "flowprep.__main__"}
TRAINER_MAY_USE = {"base", "datasets", "store", "loading", "cli"}


def _imports(path: Path) -> set[str]:
    """The flowprep modules ``path`` imports anywhere (function-level imports too), by dotted name."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return {n for n in names if n == "flowprep" or n.startswith("flowprep.")}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _upward(path: Path, own: str, allowed: set[str]) -> list[str]:
    """Each import of ``path`` outside ``allowed`` layers and the public face, as a line."""
    bad = []
    for name in sorted(_imports(path)):
        layer = _layer(name)
        if name in PUBLIC_FACE or layer is None and name == "flowprep":
            continue
        if layer is None or layer not in allowed:
            bad.append(f"{path.name} ({own}) imports {name}")
    return bad


def test_the_top_level_is_only_the_public_face():
    top = sorted(p.name for p in (ROOT / "flowprep").glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "errors.py"], top
    packages = sorted(p.name for p in (ROOT / "flowprep").iterdir() if (p / "__init__.py").exists())
    assert set(packages) <= set(LAYERS), set(packages) - set(LAYERS)


def test_each_layer_imports_only_the_layers_below():
    bad = []
    for path in sorted((ROOT / "flowprep").rglob("*.py")):
        own = _layer("flowprep." + ".".join(path.relative_to(ROOT / "flowprep").with_suffix("").parts))
        if own is None:  # the public face: __init__ (lazy names), __main__ (-> cli), errors (imports nothing)
            continue
        bad += _upward(path, own, set(LAYERS[:LAYERS.index(own) + 1]))
    assert not bad, "\n".join(bad)


def test_errors_is_the_bottom():
    assert _imports(ROOT / "flowprep" / "errors.py") == set()


def test_the_trainer_reads_through_the_loading_layer_only():
    bad = []
    for path in sorted((ROOT / "train").rglob("*.py")):
        bad += _upward(path, "train", TRAINER_MAY_USE)
    assert not bad, "\n".join(bad)


def test_the_check_sees_an_upward_import(tmp_path):
    """The checks above can fail: a function-level import of a higher layer is reported, a lower one is not."""
    mod = tmp_path / "m.py"
    mod.write_text("from flowprep.codecs import jpeg\n\n\ndef f():\n    from flowprep.extraction import batch\n")
    below_store = set(LAYERS[:LAYERS.index("store") + 1])
    assert _upward(mod, "store", below_store) == ["m.py (store) imports flowprep.extraction"]
