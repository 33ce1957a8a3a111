#!/usr/bin/env bash
# Set up and start the portal on the embedded default: SQLite, a file-based Celery transport,
# a worker with beat, and the sample broker registered. Needs only Python 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "Creating the virtual environment in .venv/ ..."
  "$PYTHON" -m venv .venv
fi
echo "Installing the portal and its pinned dependencies into .venv/ (the first time takes about a minute) ..."
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
echo "Starting the portal ..."
exec .venv/bin/python manage.py demo "$@"
