"""`python -m telemetry.liveness FILE SECONDS`: exit 0 when FILE was touched within SECONDS, else 1.

The liveness probe of the worker and beat pods (see telemetry.worker). Imports nothing heavy: the kubelet runs it
often, and it must answer in milliseconds.
"""

from __future__ import annotations

import os
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m telemetry.liveness FILE SECONDS", file=sys.stderr)
        return 2
    path, limit = argv[0], float(argv[1])
    try:
        age = time.time() - os.stat(path).st_mtime
    except OSError as exc:
        print(f"not alive: {path}: {exc.strerror}", file=sys.stderr)
        return 1
    if age > limit:
        print(f"not alive: {path} last touched {age:.0f} s ago (limit {limit:.0f} s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
