#!/usr/bin/env bash
# The test command behind `make test` (and so behind .ci/run): lint, then pytest against the
# real local stack (already started by `make stack`).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p test-artifacts
.venv/bin/ruff check . || { echo "ruff found problems" >&2; exit 1; }
.venv/bin/python -m pytest -q -p no:cacheprovider --junitxml=test-artifacts/junit.xml "$@"
