"""Command-line options shared by every flowprep verb that computes flow (extract, quality, evaluate-gt)."""
from __future__ import annotations

import argparse
import logging
from functools import partial

from flowprep.base.defaults import default_of
from flowprep.solvers import ALGO_DEFAULTS, BACKENDS, KERNELS, SolverConfig, auto_cpu_tvl1, resolve_device

log = logging.getLogger(__name__)

# TV-L1 flags: flag name -> parameter name (OpenCV's meaning and defaults, see solvers.ALGO_DEFAULTS)
_TVL1_FLAGS = {
    "tau": "tau", "lambda": "lambda", "theta": "theta", "nscales": "nscales", "warps": "warps",
    "epsilon": "epsilon", "inner-iterations": "inner_iterations", "outer-iterations": "outer_iterations",
    "scale-step": "scale_step", "gamma": "gamma", "median-filtering": "median_filtering",
}


def add_solver_arguments(p: argparse.ArgumentParser) -> None:
    """Add --algo, --backend, --device, --batch-size, the TV-L1 parameters and --solver-param."""
    cfg = partial(default_of, SolverConfig)  # each flag's default is SolverConfig's
    g = p.add_argument_group("flow solver")
    g.add_argument("--algo", default=cfg("algo"), choices=list(ALGO_DEFAULTS),
                   help=f"flow algorithm (default: {cfg('algo')}; farneback and dis are fast alternatives)")
    g.add_argument("--backend", default=cfg("backend"), choices=["auto", *BACKENDS],
                   help=f"auto: torch on a CUDA device, otherwise the fastest CPU backend (default: {cfg('backend')})")
    g.add_argument("--device", default=cfg("device"), help=f"auto, cpu, cuda or cuda:N (default: {cfg('device')})")
    g.add_argument("--batch-size", type=int, default=cfg("batch_size"),
                   help="frame pairs per solver call (default: the backend chooses; OpenCV, and TV-L1 by auto on the "
                        "CPU, compute one at a time)")
    g.add_argument("--torch-compile", dest="torch_compile", action=argparse.BooleanOptionalAction,
                   default=cfg("compile"),
                   help="torch backend: torch.compile the solver (default: on, unless FLOWPREP_TORCH_COMPILE=0; "
                        "the first run per frame size pays a one-time compile, cached on disk)")
    g.add_argument("--tvl1-kernel", dest="tvl1_kernel", default=cfg("kernel"), choices=KERNELS,
                   help="torch backend's inner TV-L1 step: triton (one fused kernel, CUDA), c (one fused C loop per "
                        "run of inner iterations, CPU), torch (torch.compile); auto: triton on CUDA where installed, "
                        f"c on the CPU where a C compiler builds it (default: {cfg('kernel')}; the same flow)")
    d = ALGO_DEFAULTS["tvl1"]
    for flag, name in _TVL1_FLAGS.items():
        g.add_argument(f"--{flag}", dest=f"tvl1_{name}", type=type(d[name]), default=None,
                       help=f"TV-L1 {name} (default {d[name]}, as OpenCV)")
    g.add_argument("--solver-param", action="append", default=[], metavar="KEY=VALUE",
                   help="any parameter of the chosen algorithm, e.g. --solver-param preset=fast for dis")


def _parse_value(key: str, text: str, like: object) -> object:
    """``text`` as the type of the parameter's default ``like``; ValueError names the parameter."""
    if isinstance(like, bool):
        return text.lower() in ("1", "true", "yes")
    try:
        return type(like)(text) if isinstance(like, (int, float)) else text
    except ValueError:
        what = "a whole number" if isinstance(like, int) else "a number"
        raise ValueError(f"--solver-param {key}={text}: {key} takes {what}, like its default {like}") from None


def solver_config_from_args(args: argparse.Namespace) -> SolverConfig:
    """Build the SolverConfig the flags describe; ValueError names a bad flag and the allowed values."""
    defaults = ALGO_DEFAULTS[args.algo]
    params: dict = {}
    for name in ALGO_DEFAULTS["tvl1"]:
        v = getattr(args, f"tvl1_{name}", None)
        if v is not None:
            if args.algo != "tvl1":
                raise ValueError(f"--{name.replace('_', '-')} is a TV-L1 parameter, but --algo is {args.algo}")
            params[name] = v
    for item in args.solver_param:
        if "=" not in item:
            raise ValueError(f"--solver-param takes KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        if k not in defaults:
            raise ValueError(f"unknown {args.algo} parameter {k!r}; allowed: {', '.join(defaults)}")
        params[k] = _parse_value(k, v, defaults[k])
    cfg = partial(default_of, SolverConfig)  # for a parser without the torch flags
    config = SolverConfig(algo=args.algo, backend=args.backend, device=args.device, params=params,
                          batch_size=args.batch_size, compile=getattr(args, "torch_compile", cfg("compile")),
                          kernel=getattr(args, "tvl1_kernel", cfg("kernel")))
    if args.batch_size not in (None, 1) and args.device in ("auto", "cpu") and auto_cpu_tvl1(config, "cpu") \
            and resolve_device(args.device) == "cpu":
        log.warning("--batch-size %d: TV-L1 on the CPU computes one pair at a time, the fastest there (batches are "
                    "slower); --backend torch batches", args.batch_size)
    return config
