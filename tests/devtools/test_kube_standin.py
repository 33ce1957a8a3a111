"""The Kubernetes API stand-in: the shared probe's kube-apiserver checks and the official client."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from devtools.kube_standin import KubeStandIn, write_kubeconfig

PROBE = Path(__file__).resolve().parents[2].parent / "shared" / "k8s_probe.py"


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    with KubeStandIn() as standin:
        yield standin


@pytest.fixture
def api(kube: KubeStandIn) -> client.CoreV1Api:
    cfg = client.Configuration()
    cfg.host = kube.url
    cfg.retries = False  # fail fast when the stand-in drops connections
    return client.CoreV1Api(client.ApiClient(cfg))


def secret(name: str, *, labels: dict | None = None, string_data: dict | None = None,
           data: dict | None = None, rv: str | None = None) -> client.V1Secret:
    return client.V1Secret(metadata=client.V1ObjectMeta(name=name, labels=labels, resource_version=rv),
                           string_data=string_data, data=data, type="Opaque")


def status_of(exc: ApiException) -> dict:
    return json.loads(exc.body)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_probe_requires_all_checks_to_behave_like_kube_apiserver(kube: KubeStandIn) -> None:
    if not PROBE.exists():
        pytest.skip(f"{PROBE} is not there")
    run = subprocess.run([sys.executable, str(PROBE), "--target", "url", "--url", kube.url, "--require-all"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 only with another Status.reason, 0 differ, 0 errors" in run.stdout, run.stdout


def test_secret_lifecycle_with_the_official_client(kube: KubeStandIn, api: client.CoreV1Api) -> None:
    created = api.create_namespaced_secret("default", secret("b1", labels={"binding": "b1"},
                                                             string_data={"password": "s3cret"}))
    assert created.metadata.uid and created.metadata.namespace == "default"
    assert created.data == {"password": b64("s3cret")} and created.string_data is None
    assert kube.secret_data("default", "b1") == {"password": "s3cret"}

    read = api.read_namespaced_secret("b1", "default")
    replaced = api.replace_namespaced_secret("b1", "default", secret(
        "b1", labels={"binding": "b1"}, data={"password": b64("rotated")}, rv=read.metadata.resource_version))
    assert int(replaced.metadata.resource_version) > int(read.metadata.resource_version)
    assert replaced.metadata.uid == created.metadata.uid
    assert kube.secret_data("default", "b1") == {"password": "rotated"}

    patched = api.patch_namespaced_secret("b1", "default", {"stringData": {"user": "u"},
                                                            "metadata": {"labels": {"x": "y"}}})
    assert patched.metadata.labels == {"binding": "b1", "x": "y"}
    assert kube.secret_data("default", "b1") == {"password": "rotated", "user": "u"}
    json_patched = api.patch_namespaced_secret("b1", "default", [
        {"op": "remove", "path": "/data/user"}, {"op": "replace", "path": "/metadata/labels/x", "value": "z"}])
    assert set(json_patched.data) == {"password"} and json_patched.metadata.labels["x"] == "z"

    listed = api.list_namespaced_secret("default", label_selector="binding in (b1,b2),x")
    assert [s.metadata.name for s in listed.items] == ["b1"]
    by_field = api.list_namespaced_secret("default", field_selector="metadata.name=b1")
    assert [s.metadata.name for s in by_field.items] == ["b1"]

    assert api.delete_namespaced_secret("b1", "default")["status"] == "Success"  # the client returns a dict
    assert kube.get_secret("default", "b1") is None
    with pytest.raises(ApiException) as missing:
        api.read_namespaced_secret("b1", "default")
    assert missing.value.status == 404 and status_of(missing.value)["reason"] == "NotFound"


def test_errors_carry_kube_status_bodies(kube: KubeStandIn, api: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as no_ns:
        api.create_namespaced_secret("nowhere", secret("s", string_data={"a": "b"}))
    assert no_ns.value.status == 404
    assert status_of(no_ns.value)["details"] == {"name": "nowhere", "kind": "namespaces"}

    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="team-a")))
    assert "team-a" in kube.namespaces
    api.create_namespaced_secret("team-a", secret("s", string_data={"a": "b"}))
    with pytest.raises(ApiException) as dup:
        api.create_namespaced_secret("team-a", secret("s"))
    assert dup.value.status == 409 and status_of(dup.value)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as stale:
        api.replace_namespaced_secret("s", "team-a", secret("s", rv="1"))
    assert stale.value.status == 409 and status_of(stale.value)["reason"] == "Conflict"
    with pytest.raises(ApiException) as invalid:
        api.create_namespaced_secret("team-a", secret("Not_A_Name"))
    assert invalid.value.status == 422 and status_of(invalid.value)["details"]["causes"][0]["field"] == \
        "metadata.name"

    generated = api.create_namespaced_secret("team-a", client.V1Secret(
        metadata=client.V1ObjectMeta(generate_name="binding-")))
    assert generated.metadata.name.startswith("binding-") and len(generated.metadata.name) == 13


def test_immutable_secret_rejects_data_changes(kube: KubeStandIn, api: client.CoreV1Api) -> None:
    body = secret("frozen", string_data={"a": "1"})
    body.immutable = True
    api.create_namespaced_secret("default", body)
    with pytest.raises(ApiException) as exc:
        api.patch_namespaced_secret("frozen", "default", {"stringData": {"a": "2"}})
    assert exc.value.status == 422 and status_of(exc.value)["reason"] == "Invalid"
    api.patch_namespaced_secret("frozen", "default", {"metadata": {"labels": {"ok": "yes"}}})


def test_forbidden_namespaces_answer_403(kube: KubeStandIn, api: client.CoreV1Api) -> None:
    kube.create_namespace("locked")
    kube.forbidden_namespaces.add("locked")
    with pytest.raises(ApiException) as exc:
        api.create_namespaced_secret("locked", secret("s"))
    assert exc.value.status == 403
    body = status_of(exc.value)
    assert body["reason"] == "Forbidden" and 'cannot create resource "secrets"' in body["message"]
    api.create_namespaced_secret("default", secret("s"))  # other namespaces still work


def test_down_knob_makes_the_client_fail(kube: KubeStandIn, api: client.CoreV1Api) -> None:
    kube.down = True
    with pytest.raises(ApiException) as exc:
        api.create_namespaced_secret("default", secret("s"))
    assert exc.value.status == 503 and status_of(exc.value)["reason"] == "ServiceUnavailable"
    kube.down = "reset"
    with pytest.raises(urllib3.exceptions.HTTPError):
        api.read_namespaced_secret("s", "default")
    kube.down = False
    assert api.list_namespaced_secret("default").items == []
    kube.stop()
    with pytest.raises(urllib3.exceptions.HTTPError):
        api.list_namespaced_secret("default")
    kube.start()  # the same port and state again
    assert api.list_namespaced_secret("default").items == []


def test_state_helpers_act_behind_the_clients_back(kube: KubeStandIn, api: client.CoreV1Api) -> None:
    api.create_namespaced_secret("default", secret("s", string_data={"a": "1"}))
    before = api.read_namespaced_secret("s", "default").metadata.resource_version
    edited = kube.get_secret("default", "s")
    assert edited is not None
    edited["stringData"] = {"a": "tampered"}
    kube.put_secret("default", edited)
    after = api.read_namespaced_secret("s", "default")
    assert after.data == {"a": b64("tampered")} and after.metadata.resource_version != before
    assert kube.delete_secret("default", "s") and not kube.delete_secret("default", "s")
    assert kube.list_secrets() == []
    assert [r["method"] for r in kube.requests] == ["POST", "GET", "GET"]
    assert kube.requests[0]["path"] == "/api/v1/namespaces/default/secrets"
    assert kube.requests[0]["body"]["stringData"] == {"a": "1"}

    kube.put_secret("gone", {"metadata": {"name": "t"}, "data": {}})
    assert kube.delete_namespace("gone") and kube.get_secret("gone", "t") is None


def test_kubeconfig_helper_works_with_load_kube_config(kube: KubeStandIn, tmp_path: Path) -> None:
    kube.token = "sekret-token"
    path = write_kubeconfig(tmp_path / "kubeconfig", kube.url, token="sekret-token", namespace="default")
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=cfg)
    api = client.CoreV1Api(client.ApiClient(cfg))
    api.create_namespaced_secret("default", secret("via-kubeconfig"))
    assert kube.get_secret("default", "via-kubeconfig") is not None
    assert kube.requests[-1]["headers"]["authorization"] == "Bearer sekret-token"

    wrong = urllib.request.Request(f"{kube.url}/api/v1/namespaces", headers={"Authorization": "Bearer no"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(wrong, timeout=5)
    assert exc.value.code == 401


def test_cli_serves_and_writes_a_kubeconfig(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kubeconfig = tmp_path / "kc"
    proc = subprocess.Popen([sys.executable, "-m", "devtools.kube_standin", "--port", str(port),
                             "--kubeconfig", str(kubeconfig)],
                            cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert f"http://127.0.0.1:{port}" in proc.stdout.readline()
        proc.stdout.readline()  # the kubeconfig line: written by now
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
        names = [n.metadata.name for n in client.CoreV1Api(client.ApiClient(cfg)).list_namespace().items]
        assert names == ["default"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
