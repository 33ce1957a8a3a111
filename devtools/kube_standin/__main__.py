"""python -m devtools.kube_standin [--host 127.0.0.1] [--port 8443] [--kubeconfig PATH] [--token T]
[--namespace NS ...]: serve the Kubernetes API stand-in until interrupted (Ctrl-C or SIGTERM)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading

from .server import KubeStandIn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.kube_standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--token", help="require this bearer token (default: accept any request)")
    parser.add_argument("--kubeconfig", help="write a kubeconfig pointing at the stand-in to this path")
    parser.add_argument("--namespace", action="append", default=[],
                        help="create this namespace besides 'default' (repeatable)")
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with KubeStandIn(args.host, args.port, token=args.token,
                     namespaces=("default", *args.namespace)) as kube:
        print(f"kube stand-in serving on {kube.url}", flush=True)
        if args.kubeconfig:
            print(f"kubeconfig: {kube.write_kubeconfig(args.kubeconfig)}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
