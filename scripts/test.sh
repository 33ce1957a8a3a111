#!/usr/bin/env bash
# Set up and run the whole test suite. Uses DATABASE_URL / CELERY_BROKER_URL when set (Postgres and
# Redis); otherwise the embedded default (SQLite and a file-based Celery transport). Needs only Python
# 3.11; with Node.js present, the OSB contract proxy (prism) is installed and end-to-end calls go
# through it, and axe-core (.ci/axe) checks every page state of the browser test. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
if command -v npm >/dev/null && [ ! -x .ci/prism/node_modules/.bin/prism ]; then
  npm ci --prefix .ci/prism --ignore-scripts --no-audit --no-fund --silent || echo "prism not installed: OSB contract checks are skipped"
fi
if command -v npm >/dev/null && [ ! -f .ci/axe/node_modules/axe-core/axe.min.js ]; then
  npm ci --prefix .ci/axe --ignore-scripts --no-audit --no-fund --silent || echo "axe-core not installed: the browser test is skipped"
fi
export PORTAL_DATA_DIR="${PORTAL_DATA_DIR:-$PWD/var/test}"
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
