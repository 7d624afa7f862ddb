"""The house rules that a linter does not check, checked on every run: module and function size, and which
package may know what (h5py and the shard format: flowprep.store; argparse: the two command-line packages;
JPEG decoding and dequantization: not the trainer). The layers' order is tests/test_layers.py's."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("flowprep", "train")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (anywhere in the file), by its dotted name; ``from a.b import c`` counts as
    both ``a.b`` and ``a.b.c``, since ``c`` may be a module (``from flowprep.codecs import jpeg``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_no_module_over_400_lines_and_no_function_over_60():
    long_modules = [f"{_rel(p)}: {n}" for p in _modules(*PACKAGES, "benchmarks")
                    if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    long_functions = []
    for p in _modules(*PACKAGES, "benchmarks"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{_rel(p)}:{node.lineno} {node.name}: {n} lines")
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def test_only_the_storage_package_imports_h5py():
    """Without h5py, no other module can open a group or read an attribute: the format's names stay in one place."""
    users = [_rel(p) for p in _modules(*PACKAGES) if "h5py" in _imports(p)]
    assert users and all(u.startswith("flowprep/store/") for u in users), users


def test_only_the_command_line_packages_import_argparse():
    users = [_rel(p) for p in _modules(*PACKAGES) if "argparse" in _imports(p)]
    assert users and all(u.startswith(("flowprep/cli/", "train/cli/")) for u in users), users


def test_the_trainer_decodes_no_jpeg_and_dequantizes_nothing_itself():
    """train/ gets codes plus tables, or pixels, from flowprep's reader: no JPEG codec, no formula."""
    for p in _modules("train"):
        text = p.read_text()
        assert not {"flowprep.codecs.jpeg", "flowprep.store.shardfile", "h5py"} & _imports(p), _rel(p)
        for banned in ("imdecode", "decode_gray", "decode_rgb", "dequant", "zero) *", ".quant(", "flow_codes("):
            assert banned not in text, f"{_rel(p)} uses {banned!r}"


def test_every_public_function_class_and_module_has_a_docstring():
    missing = []
    for p in _modules(*PACKAGES):
        tree = ast.parse(p.read_text())
        if not ast.get_docstring(tree):
            missing.append(f"{_rel(p)}: module")
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                members = [node] + [m for m in getattr(node, "body", []) if isinstance(node, ast.ClassDef)
                                    and isinstance(m, ast.FunctionDef) and not m.name.startswith("_")]
                missing += [f"{_rel(p)}:{m.lineno} {m.name}" for m in members if not ast.get_docstring(m)]
    assert not missing, missing
