"""llama.cpp's own server, in this process (xllamacpp), one per model, and ``dspy.LM`` objects for it.

Each model gets an ``xllamacpp.Server`` on a free loopback port: continuous batching over ``n_parallel``
slots of ``n_ctx`` tokens each, prompt-prefix caching, JSON-schema-constrained decoding for
``response_format``, an OpenAI-compatible API. The server lives in the calling process, so it ends with
it, however that process ends (even SIGKILL). Servers are shared within a process: a second
``LocalServer`` with the same settings reuses the running one; the last ``stop()`` frees it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .models import DEFAULT_MODELS, DEFAULT_OPTIMIZER_MODEL, DEFAULT_TASK_MODEL, parse_models
from .weights import verified_model_path

logger = logging.getLogger(__name__)

ENV_API_BASE = "DSPY_FGO_LOCAL_API_BASE"
DEFAULT_N_CTX = 8192  # per slot
DEFAULT_N_PARALLEL = 4  # slots; benchmarks/results/runtime: 4 requests at once ~1.6x one at a time on 2 cores


class PortInUse(RuntimeError):
    """The requested port is taken."""


class LocalServerError(RuntimeError):
    """The local server could not start or is not started."""


@dataclass(frozen=True)
class ServerSettings:
    """What a running server was started with; equal settings share one server."""

    alias: str
    n_ctx: int
    n_parallel: int
    n_threads: int
    host: str
    port: int | None


class _Running:
    """One ``xllamacpp.Server`` and how many ``LocalServer`` objects use it."""

    def __init__(self, settings: ServerSettings, verbose: bool, startup_timeout: float):
        # Sleeping, not spinning, OpenMP workers: with spinning ones a call took 7-13 s instead of 2-3 s
        # whenever anything else (even a niced process, or this process's Python threads) used a core.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when the OpenMP runtime loads
        path = verified_model_path(settings.alias)
        try:
            import xllamacpp
        except ImportError as e:
            raise LocalServerError("the local runtime is not installed: pip install 'dspy-fgo[local]'") from e

        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.model_alias = settings.alias
        params.n_parallel = settings.n_parallel
        params.n_ctx = settings.n_ctx * settings.n_parallel  # llama.cpp splits n_ctx over the slots
        params.cpuparams.n_threads = settings.n_threads
        params.cpuparams_batch.n_threads = settings.n_threads
        params.hostnames = [settings.host]
        params.port = settings.port or 0  # 0: a free port
        params.verbosity = 3 if verbose else 0
        t0 = time.monotonic()
        try:
            self.server = xllamacpp.Server(params)
        except Exception as e:
            raise LocalServerError(f"the llama.cpp server for {settings.alias!r} did not start: {e}") from e
        self.url = self.server.listening_address.rstrip("/")
        self.users = 0
        _wait_healthy(self.url, startup_timeout)
        logger.info("local server %s at %s (%d slots x %d tokens, %d threads) in %.1f s", settings.alias, self.url,
                    settings.n_parallel, settings.n_ctx, settings.n_threads, time.monotonic() - t0)


_LIVE: dict[ServerSettings, _Running] = {}
_LIVE_LOCK = threading.Lock()


def _wait_healthy(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while True:
        try:
            with opener.open(f"{url}/health", timeout=2) as r:
                if json.loads(r.read()).get("status") == "ok":
                    return
        except (OSError, ValueError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise LocalServerError(f"the local server at {url} was not healthy within {timeout:.0f} s")
        time.sleep(0.2)


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise PortInUse(f"port {port} on {host} is in use ({e}); pass another port or port=None") from e


@atexit.register
def _stop_all_live() -> None:
    """Stop the servers before the interpreter tears down (their threads call back into it otherwise)."""
    with _LIVE_LOCK:
        _LIVE.clear()  # dropping the last reference stops each server


def parse_api_base_env(value: str, models: Iterable[str]) -> dict[str, str]:
    """``$DSPY_FGO_LOCAL_API_BASE``: one base URL for every alias, or ``alias=url,alias=url``."""
    models = tuple(models)
    if "=" not in value:
        return dict.fromkeys(models, value.rstrip("/"))
    pairs = dict(item.split("=", 1) for item in value.split(",") if item.strip())
    bases = {alias.strip(): url.strip().rstrip("/") for alias, url in pairs.items()}
    missing = [m for m in models if m not in bases]
    if missing:
        raise LocalServerError(f"${ENV_API_BASE} names no server for {', '.join(missing)}: {value!r}")
    return {m: bases[m] for m in models}


def register_litellm_model(alias: str, n_ctx: int) -> None:
    """Tell litellm the window, the zero price and that the server honours JSON schemas."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.register_model({f"openai/{alias}": {
        "max_input_tokens": n_ctx, "max_output_tokens": n_ctx, "max_tokens": n_ctx,
        "input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "litellm_provider": "openai", "mode": "chat",
        # every price given, the cache's too: litellm warns about a custom price without them
        "cache_creation_input_token_cost": 0.0, "cache_read_input_token_cost": 0.0,
        "supports_response_schema": True, "supports_function_calling": False,
    }})


def _exclude_loopback_from_proxy() -> None:
    """httpx (used by litellm) would send loopback requests through $HTTP(S)_PROXY otherwise."""
    if not any(os.environ.get(k) for k in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                                             "all_proxy", "ALL_PROXY")):
        return
    for key in ("no_proxy", "NO_PROXY"):
        hosts = [h for h in os.environ.get(key, "").split(",") if h]
        os.environ[key] = ",".join(dict.fromkeys([*hosts, "127.0.0.1", "localhost"]))


class LocalServer:
    """The local models served by llama.cpp (OpenAI API), one in-process server per model.

    ``start()`` uses ``$DSPY_FGO_LOCAL_API_BASE`` if set (a server of ``python -m dspy_fgo.local serve``
    in another process), else starts (or reuses, within this process) one server per alias. ``n_ctx`` is
    per slot; ``n_parallel`` requests run at once per model (use at least that many threads).
    """

    def __init__(self, models: str | Iterable[str] = DEFAULT_MODELS, port: int | None = None,
                 n_ctx: int = DEFAULT_N_CTX, n_threads: int | None = None, host: str = "127.0.0.1",
                 startup_timeout: float = 180, *, n_parallel: int = DEFAULT_N_PARALLEL, verbose: bool = False):
        self.models = parse_models(models)
        if port is not None and len(self.models) > 1:
            raise ValueError("port= needs a single model (each model has its own server)")
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the local server listens on loopback only, not {host!r}")
        self.port, self.host = port, host
        self.n_ctx, self.n_parallel = int(n_ctx), int(n_parallel)
        self.n_threads = int(n_threads or len(os.sched_getaffinity(0)))
        self.startup_timeout, self.verbose = float(startup_timeout), verbose
        self._bases: dict[str, str] = {}
        self._owned: list[ServerSettings] = []
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return bool(self._bases)

    def api_base_for(self, alias: str) -> str:
        """OpenAI base URL (``http://host:port/v1``) of the server that serves ``alias``."""
        if not self.started:
            raise LocalServerError("LocalServer is not started; call start() or use it as a context manager")
        if alias not in self._bases:
            raise ValueError(f"model {alias!r} is not served by this LocalServer (models: {', '.join(self.models)})")
        return self._bases[alias]

    @property
    def api_base(self) -> str:
        """OpenAI base URL of the first model's server."""
        return self.api_base_for(self.models[0])

    @property
    def url(self) -> str:
        return self.api_base.removesuffix("/v1")

    def __repr__(self) -> str:
        where = ", ".join(f"{a}: {b}" for a, b in self._bases.items()) or "not started"
        return f"LocalServer(models={list(self.models)}, n_ctx={self.n_ctx}, n_parallel={self.n_parallel}, {where})"

    def start(self) -> LocalServer:
        with self._lock:
            if self.started:
                return self
            external = os.environ.get(ENV_API_BASE, "").strip()
            if external:
                self._bases = {a: b if b.endswith("/v1") else f"{b}/v1"
                               for a, b in parse_api_base_env(external, self.models).items()}
                return self
            try:
                for alias in self.models:
                    self._bases[alias] = self._acquire(alias) + "/v1"
            except BaseException:
                self._release_all()
                raise
            return self

    def _acquire(self, alias: str) -> str:
        settings = ServerSettings(alias, self.n_ctx, self.n_parallel, self.n_threads, self.host, self.port)
        with _LIVE_LOCK:
            running = _LIVE.get(settings)
            if running is None:
                if self.port:
                    _check_port_free(self.host, self.port)
                running = _LIVE[settings] = _Running(settings, self.verbose, self.startup_timeout)
            running.users += 1
            self._owned.append(settings)
            return running.url

    def _release_all(self) -> None:
        with _LIVE_LOCK:
            for settings in self._owned:
                running = _LIVE.get(settings)
                if running is not None:
                    running.users -= 1
                    if running.users <= 0:
                        del _LIVE[settings]  # the last reference: the server stops
        self._owned, self._bases = [], {}

    def stop(self) -> None:
        """Release this object's servers; a server stops when no ``LocalServer`` of this process uses it."""
        with self._lock:
            self._release_all()

    def wait(self) -> None:
        """Block until interrupted (``serve``)."""
        threading.Event().wait()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def lm(self, alias: str, temperature: float = 0.0, max_tokens: int = 512, **kw: Any):
        """A ``dspy.LM`` for ``alias`` on this server (starts the server if needed)."""
        import dspy

        base = self.start().api_base_for(alias)
        _exclude_loopback_from_proxy()
        register_litellm_model(alias, self.n_ctx)
        kw.setdefault("api_key", "local")
        # litellm's route reads the model entry registered above, so JSONAdapter sends a JSON schema that
        # the server enforces (DSPy's native OpenAI route does not know this model's capabilities).
        kw.setdefault("engine", "litellm")
        # Small models often go on writing after ChatAdapter's closing marker until max_tokens.
        kw.setdefault("stop", ["[[ ## completed ## ]]"])
        return dspy.LM(f"openai/{alias}", api_base=base, temperature=temperature, max_tokens=max_tokens, **kw)


def local_lms(task: str = DEFAULT_TASK_MODEL, optimizer: str = DEFAULT_OPTIMIZER_MODEL, *,
              task_kwargs: dict[str, Any] | None = None, optimizer_kwargs: dict[str, Any] | None = None,
              **server_kwargs: Any):
    """``(task_lm, optimizer_lm, server)``: task LM at temperature 0 / 512 tokens, optimizer LM at
    temperature 0.7 / 2048 tokens, on a started :class:`LocalServer`."""
    server = LocalServer(models=(task, optimizer), **server_kwargs).start()
    task_lm = server.lm(task, **{"temperature": 0.0, "max_tokens": 512, **(task_kwargs or {})})
    optimizer_lm = server.lm(optimizer, **{"temperature": 0.7, "max_tokens": 2048, **(optimizer_kwargs or {})})
    return task_lm, optimizer_lm, server
