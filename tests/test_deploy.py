"""The deployment files: Kubernetes manifests (rendered and validated for Kubernetes 1.30, with the security,
probe and resource settings every container needs), the Dockerfile, docker-compose.yml, the Prometheus alert
rules (checked and unit-tested by promtool) and the Grafana dashboard (every metric they use is one /metrics
exports)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from typing import Any

import kubernetes_validate
import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
K8S_VERSION = "1.30.0"


def tool(name: str) -> str:
    """A command-line tool the deployment tests need; skipped outside CI when missing, a failure under CI
    (.ci/run installs it)."""
    found = shutil.which(name) or next((str(p) for p in [ROOT / ".ci" / "tools" / "usr" / "bin" / name]
                                        if p.exists()), None)
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is not installed: .ci/run installs it (Debian's packages)")
    pytest.skip(f"{name} is not installed (bash .ci/run installs it); this test checks the deployment files with it")


# --- Kubernetes ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    result = subprocess.run([tool("kubectl"), "kustomize", str(KUBERNETES)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr  # no deprecated kustomize fields
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def validate(obj: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_every_rendered_object_is_valid_for_kubernetes_1_30_strictly(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted(o["kind"] for o in rendered)
    assert kinds == ["ClusterRole", "ConfigMap", "Deployment", "Deployment", "Deployment", "Job", "Namespace",
                     "RoleBinding", "Service", "ServiceAccount"]
    for obj in rendered:
        validate(obj)
    # The example Ingress (commented out in kustomization.yaml) too.
    validate(yaml.safe_load((KUBERNETES / "ingress.yaml").read_text()))


def test_the_validator_rejects_what_it_should(rendered: list[dict[str, Any]]) -> None:
    """The check can fail: an unknown field and a wrong type are refused (strict schemas, bundled offline)."""
    web = json.loads(json.dumps(by_kind(rendered, "Deployment")["catalog-portal-web"]))
    web["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, K8S_VERSION, strict=True)
    job = json.loads(json.dumps(by_kind(rendered, "Job")["catalog-portal-migrate"]))
    job["spec"]["backoffLimit"] = "six"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "Job")}


def test_every_container_is_locked_down_and_sized(rendered: list[dict[str, Any]]) -> None:
    specs = pod_specs(rendered)
    assert set(specs) == {"catalog-portal-web", "catalog-portal-worker", "catalog-portal-beat",
                          "catalog-portal-migrate"}
    for name, spec in specs.items():
        assert spec["serviceAccountName"] == "catalog-portal", name
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 10001, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
            for kind in ("requests", "limits"):
                assert set(container["resources"][kind]) == {"cpu", "memory"}, where
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            # Python, gunicorn and Celery write only to /tmp and /data: memory or scratch, never the image.
            assert "emptyDir" in volumes[mounts["/tmp"]] and "emptyDir" in volumes[mounts["/data"]], where
            assert container["image"] == "registry.example.com/catalog-portal:1.0.0", where
            assert container["envFrom"] == [{"configMapRef": {"name": "catalog-portal-config"}}], where
            assert volumes[mounts["/etc/catalog-portal/secrets"]]["secret"]["secretName"] == "catalog-portal"


def test_probes_and_process_commands(rendered: list[dict[str, Any]]) -> None:
    deployments = by_kind(rendered, "Deployment")
    web = deployments["catalog-portal-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["command"][:3] == ["gunicorn", "-c", "python:catalog_portal.gunicorn"]
    assert web["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert web["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    for name, process in (("worker", "worker"), ("beat", "beat")):
        deployment = deployments[f"catalog-portal-{name}"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["command"][:3] == ["celery", "-A", "catalog_portal"] and process in container["command"]
        liveness = container["livenessProbe"]["exec"]["command"]
        assert liveness[:3] == ["python", "-m", "telemetry.liveness"]
        heartbeat = next(e["value"] for e in container["env"] if e["name"] == "PORTAL_HEARTBEAT_FILE")
        assert liveness[3] == heartbeat
    beat = deployments["catalog-portal-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"] == {"type": "Recreate"}
    job = by_kind(rendered, "Job")["catalog-portal-migrate"]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["python", "manage.py", "migrate", "--noinput"]
    service = by_kind(rendered, "Service")["catalog-portal-web"]["spec"]
    assert service["selector"] == deployments["catalog-portal-web"]["spec"]["selector"]["matchLabels"]


def test_secrets_come_from_files_of_the_secret(rendered: list[dict[str, Any]]) -> None:
    config = by_kind(rendered, "ConfigMap")["catalog-portal-config"]["data"]
    for name in ("SECRET_KEY", "CREDENTIALS_KEY", "DATABASE_URL", "CELERY_BROKER_URL"):
        assert config[f"{name}_FILE"] == f"/etc/catalog-portal/secrets/{name}"
        assert name not in config
    assert config["LOG_FORMAT"] == "json"


def test_rbac_grants_only_secret_publishing_in_bound_namespaces(rendered: list[dict[str, Any]]) -> None:
    assert not by_kind(rendered, "ClusterRoleBinding") and not by_kind(rendered, "Role")
    role = by_kind(rendered, "ClusterRole")["catalog-portal-secret-publisher"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"],
                              "verbs": ["get", "create", "update", "delete"]}]
    for binding in by_kind(rendered, "RoleBinding").values():
        assert binding["metadata"]["namespace"] not in ("catalog-portal", None)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                      "name": "catalog-portal-secret-publisher"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "catalog-portal",
                                        "namespace": "catalog-portal"}]
    # Only the workers (which publish) mount the token.
    mounted = {name for name, spec in pod_specs(rendered).items() if spec.get("automountServiceAccountToken")}
    assert mounted == {"catalog-portal-worker"}


def test_the_gunicorn_configuration_and_the_web_application_load() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "catalog_portal.settings"}
    result = subprocess.run([sys.executable, "-m", "gunicorn", "--check-config", "-c", "python:catalog_portal.gunicorn",
                             "catalog_portal.wsgi"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Dockerfile and docker-compose.yml --------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined, comments dropped), per stage."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_the_dockerfile_builds_in_one_stage_and_runs_unprivileged_in_another() -> None:
    build, final = dockerfile_stages()
    assert build[0].startswith("FROM python:3.11-slim AS build")
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {line.split()[1] for line in build if line.startswith("COPY ")}
    for package in packages:  # every package the portal is made of is in the image
        assert package.rstrip("*") in copied, f"Dockerfile does not COPY {package.rstrip('*')}"
    assert {"templates", "static"} <= copied
    assert any("collectstatic --noinput" in line for line in build if line.startswith("RUN "))
    assert final[0] == "FROM python:3.11-slim"
    assert not any(word in line for line in final for word in ("gcc", "build-essential", "apt-get install", "pip "))
    assert "COPY --from=build /opt/venv /opt/venv" in final and "COPY --from=build /app /app" in final
    user = next(line for line in reversed(final) if line.startswith("USER "))
    assert user == "USER 10001"
    cmd = json.loads(next(line for line in final if line.startswith("CMD "))[4:])
    assert cmd[:3] == ["gunicorn", "-c", "python:catalog_portal.gunicorn"]


def test_docker_compose_runs_each_process_without_secrets_on_command_lines() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "web", "worker", "beat", "sample-broker"} <= set(services)
    for name, service in services.items():
        command = " ".join(service.get("command", []))
        assert "--password" not in command, name
    assert services["sample-broker"]["environment"]["SAMPLE_BROKER_PASSWORD"]
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])


# --- Prometheus rules and the Grafana dashboard ------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(django_db_setup: Any, django_db_blocker: Any) -> set[str]:
    """Every sample name /metrics can export (with the _total, _bucket, _sum, _count suffixes)."""
    with django_db_blocker.unblock():
        text = Client().get("/metrics").content.decode()
    names = set()
    for family in text_string_to_metric_families(text):
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        names |= {family.name + suffix for suffix in suffixes}
    return names


def metric_names(expression: str) -> set[str]:
    return set(re.findall(r"\b(portal_[a-z_]+)\b", expression))


def test_alert_rules_use_only_exported_metrics_and_pass_promtool(exported: set[str], db: Any) -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert {"CatalogPortalBrokerDown", "CatalogPortalOperationsOverdue", "CatalogPortalPublicationLagHigh"} <= set(alerts)
    for name, rule in alerts.items():
        used = metric_names(rule["expr"])
        assert used and used <= exported, f"{name} uses {used - exported}"
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
    promtool = tool("promtool")
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]):
        result = subprocess.run([promtool, *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_uses_only_exported_metrics(exported: set[str], db: Any) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "catalog-portal.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(expressions) >= 10
    used = set().union(*(metric_names(e) for e in expressions))
    assert used <= exported, used - exported
    for family in ("portal_osb_requests_total", "portal_operations", "portal_broker_up",
                   "portal_secret_publication_lag_seconds_bucket", "portal_http_requests_total"):
        assert family in used, family
