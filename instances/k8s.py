"""Kubernetes gateway: only the Secret verbs the portal uses, with errors mapped to what the portal shows.

Configuration is loaded lazily (never at import): in-cluster first, then KUBECONFIG; with neither,
`gateway()` returns None and publication is reported as "not configured", not as an error.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from django.conf import settings


class KubeError(Exception):
    """A Kubernetes call failed; `retryable` says whether trying again later can help."""

    def __init__(self, message: str, *, retryable: bool = True, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class SecretState:
    name: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    data: dict[str, str]  # base64 values, as the API returns them
    type: str | None
    resource_version: str | None


_lock = threading.Lock()
_cached: tuple[str, Any] | None = None


def _config_source() -> str | None:
    if not settings.K8S_ENABLED:
        return None
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    ):
        return "incluster"
    path = os.environ.get("KUBECONFIG")
    if path and os.path.exists(path.split(os.pathsep)[0]):
        return f"kubeconfig:{path}"
    return None


def gateway() -> KubeGateway | None:
    """The gateway for the configured cluster, or None when no cluster is configured."""
    global _cached
    source = _config_source()
    if source is None:
        return None
    with _lock:
        if _cached is None or _cached[0] != source:
            _cached = (source, KubeGateway(_api_client(source)))
        return _cached[1]


def _api_client(source: str) -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    if source == "incluster":
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(config_file=source.split(":", 1)[1], client_configuration=configuration)
    configuration.retries = 0
    return client.ApiClient(configuration)


class KubeGateway:
    TIMEOUT = (3, 10)  # connect, read

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)

    def get_secret(self, namespace: str, name: str) -> SecretState | None:
        try:
            secret = self.core.read_namespaced_secret(name, namespace, _request_timeout=self.TIMEOUT)
        except Exception as exc:
            if _status(exc) == 404:
                return None
            raise _map(exc, namespace) from None
        meta = secret.metadata
        return SecretState(
            name=meta.name, namespace=meta.namespace, labels=dict(meta.labels or {}),
            annotations=dict(meta.annotations or {}), data=dict(secret.data or {}), type=secret.type,
            resource_version=meta.resource_version,
        )

    def create_secret(self, namespace: str, body: dict[str, Any]) -> None:
        try:
            self.core.create_namespaced_secret(namespace, body, _request_timeout=self.TIMEOUT)
        except Exception as exc:
            raise _map(exc, namespace) from None

    def replace_secret(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        try:
            self.core.replace_namespaced_secret(name, namespace, body, _request_timeout=self.TIMEOUT)
        except Exception as exc:
            raise _map(exc, namespace) from None

    def delete_secret(self, namespace: str, name: str) -> None:
        try:
            self.core.delete_namespaced_secret(name, namespace, _request_timeout=self.TIMEOUT)
        except Exception as exc:
            if _status(exc) == 404:
                return
            raise _map(exc, namespace) from None


def _status(exc: Exception) -> int | None:
    from kubernetes.client.rest import ApiException

    return exc.status if isinstance(exc, ApiException) else None


def _map(exc: Exception, namespace: str) -> KubeError:
    status = _status(exc)
    if status == 404:
        return KubeError(f"Namespace '{namespace}' does not exist in the cluster.", status=404)
    if status == 403:
        return KubeError(f"The portal is not allowed to manage Secrets in namespace '{namespace}'.", status=403)
    if status == 409:
        return KubeError("The Secret changed while the portal was writing it.", status=409)
    if status is not None:
        return KubeError(f"The Kubernetes API answered {status}.", status=status)
    return KubeError(f"The Kubernetes API could not be reached ({type(exc).__name__}).")
