"""A Kubernetes API stand-in (core/v1 Secrets and Namespaces over real HTTP) for tests and demos.

    with KubeStandIn() as kube:
        kube.write_kubeconfig(tmp_path / "kubeconfig")   # then KUBECONFIG=... like a real cluster
        ...
        assert kube.secret_data("default", "binding-x") == {"password": "..."}

Run it alone with `python -m devtools.kube_standin --port 8443`.
"""

from .server import ApiError, KubeStandIn, write_kubeconfig

__all__ = ["ApiError", "KubeStandIn", "write_kubeconfig"]
