#!/usr/bin/env bash
# Create .venv and install nascli with its test dependencies (CPU torch wheel pinned first).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Pin the CPU wheel first: an unpinned torch pulls gigabytes of CUDA wheels.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"
