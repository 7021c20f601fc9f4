#!/usr/bin/env bash
# Install the pinned LiteLLM proxy into its own virtualenv (.venv-litellm), for the Pattern A
# tests and the benchmark. LiteLLM pins many packages, so it never shares the gateway's venv.
# Idempotent: does nothing when the pinned version is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
LITELLM_VERSION="1.108.7"  # newest whose proxy extras resolve from the registry here
VENV=".venv-litellm"
if [ -x "$VENV/bin/litellm" ] && "$VENV/bin/python" -c "import importlib.metadata as m,sys; sys.exit(m.version('litellm')!='$LITELLM_VERSION')" 2>/dev/null; then
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION"
