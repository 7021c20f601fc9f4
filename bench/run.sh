#!/usr/bin/env bash
# The benchmark in one command: bench/run.sh [--quick] [--rounds N] [--skip-litellm]
#                                            [--soak-seconds N] [--targets a,b,...]
# Uses the repo's .venv (created with the gateway installed if missing), installs Debian's
# wrk if missing (root + apt-get), and LiteLLM (the repo's .venv-litellm when it holds the pinned
# version, else bench/.work/litellm-venv on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q -e .
fi
# 1,000 concurrent streams need ~3,000 descriptors across client, proxy and upstream.
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true
exec .venv/bin/python bench/run.py "$@"
