"""What the Triton kernels compile to for Hopper (sm_90), without a GPU (issue 21): registers, spills and SASS
instructions per kernel, by Triton's own compiler and the ptxas / cuobjdump it bundles. The reference is the
median's sorted-window kernel (any window size) beside the min/max network used for 3 x 3 and 5 x 5; the ratio
is how many instructions the network saves per pixel. Static figures: gpu_check times the kernels on a GPU.

    python benchmarks/kernel_report.py [--json]

tests/flowprep/solvers/test_tvl1_triton.py runs it to hold the step at <= 128 registers with no spills and the
median network far below the sort.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # compile for real, before triton is imported
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from flowprep.solvers import tvl1_triton as T  # noqa: E402

BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
STEP_TYPES = ["*fp32"] * 6 + ["*i1"] + ["*fp32"] * 4 + ["i32", "i32", "fp32", "fp32", "fp32"]
MEDIAN_TYPES = ["*fp32", "*fp32", "*i1", "i32", "i32", "i32"]


def compile_report(fn, types: list[str], constexprs: dict, warps: int) -> dict:
    """Compile one kernel for sm_90a; ptxas's registers and spill bytes, and the SASS instructions (all, and
    the float min/max FMNMX among them)."""
    types = types + ["constexpr"] * len(constexprs)
    src = ASTSource(fn=fn, signature=dict(zip(fn.arg_names, types)), constexprs=constexprs)
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    ptx = Path(tempfile.mkdtemp()) / "kernel.ptx"
    ptx.write_text(kernel.asm["ptx"])
    info = subprocess.run([BIN / "ptxas", "-arch=sm_90a", "-v", ptx, "-o", ptx.with_suffix(".o")],
                          capture_output=True, text=True, check=True)
    sass = subprocess.run([BIN / "cuobjdump", "-sass", ptx.with_suffix(".o")], capture_output=True, text=True,
                          check=True).stdout
    text = info.stdout + info.stderr
    return {"registers": int(re.search(r"Used (\d+) registers", text).group(1)),
            "spill_bytes": sum(int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", text)),
            "instructions": len(re.findall(r"/\*[0-9a-f]{4,}\*/\s+\S", sass)),
            "fmnmx": len(re.findall(r"\bFMNMX\b", sass))}


def report() -> dict[str, dict]:
    """Every kernel of flowprep/solvers/tvl1_triton.py at the launch shape it is used with."""
    rows = {"step": compile_report(T._step_kernel, STEP_TYPES, {"BLOCK": T.BLOCK, "FLT_EPS": T.FLT_EPSILON},
                                   T.WARPS)}
    for k in (3, 5):
        for network in (True, False):
            consts = {"K": k, "WINDOW": triton.next_power_of_2(k * k), "BLOCK": T.MEDIAN_BLOCK, "NETWORK": network}
            rows[f"median {k}x{k} {'network' if network else 'sorted'}"] = compile_report(
                T._median_kernel, MEDIAN_TYPES, consts, 4)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    rows = report()
    if parser.parse_args().json:
        print(json.dumps(rows))
        return
    print(f"triton {triton.__version__}, sm_90a, one pixel per thread\n")
    print(f"{'kernel':<24}{'registers':>10}{'spill B':>9}{'instructions':>14}{'FMNMX':>7}")
    for name, r in rows.items():
        print(f"{name:<24}{r['registers']:>10}{r['spill_bytes']:>9}{r['instructions']:>14}{r['fmnmx']:>7}")
    for k in (3, 5):
        net, ref = rows[f"median {k}x{k} network"], rows[f"median {k}x{k} sorted"]
        print(f"median {k}x{k}: network {net['instructions']} instructions, reference (sorted window) "
              f"{ref['instructions']}: {ref['instructions'] / net['instructions']:.1f}x fewer")


if __name__ == "__main__":
    main()
