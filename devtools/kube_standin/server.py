"""A small stand-in for the Kubernetes API (core/v1 Secrets and Namespaces) served over real HTTP.

It answers the official `kubernetes` Python client the way kube-apiserver does for the calls the
portal makes: Status bodies with reason/code/details, resourceVersion bumps and 409 Conflict on a
stale one, generateName, label and field selectors, strategic-merge / merge / JSON patches,
base64 `data` vs write-only `stringData`, `immutable`, deletion with preconditions, `dryRun=All`,
and 404 NotFound when creating in a namespace that does not exist.

Simplifications: no watch, no pagination (`limit` is ignored), no server-side apply, no
managedFields, and deleting a namespace removes it and its Secrets at once (the response still
shows phase Terminating, as the real API does). Pure standard library; no Django.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import json
import random
import re
import socket
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["ApiError", "KubeStandIn", "write_kubeconfig"]

SECRETS, NAMESPACES = "secrets", "namespaces"
KINDS = {SECRETS: "Secret", NAMESPACES: "Namespace"}
FIELD_SELECTORS = {
    SECRETS: {"metadata.name", "metadata.namespace", "type"},
    NAMESPACES: {"metadata.name", "status.phase"},
}
META_KEYS = ("name", "generateName", "namespace", "labels", "annotations", "ownerReferences", "finalizers")
SERVER_META_KEYS = ("uid", "creationTimestamp", "resourceVersion")
MAX_SECRET_BYTES = 1024 * 1024

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # what apiserver's name generator uses


# --------------------------------------------------------------------------- errors
class ApiError(Exception):
    """An error answer: HTTP `code` with a metav1.Status body."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def _not_found(resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource})


def _conflict(resource: str, name: str, why: str = "the object has been modified; please apply your "
              "changes to the latest version and try again") -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {resource} "{name}": {why}',
                    {"name": name, "kind": resource})


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def _invalid(kind: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 Invalid; causes are (field, message) pairs, as field.ErrorList renders them."""
    texts = [f"{field}: {msg}" for field, msg in causes]
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    reason = {"Invalid": "FieldValueInvalid", "Required": "FieldValueRequired",
              "Forbidden": "FieldValueForbidden", "Too long": "FieldValueTooLong"}
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {summary}', {
        "name": name, "kind": kind, "causes": [
            {"reason": next((r for p, r in reason.items() if msg.startswith(p)), "FieldValueInvalid"),
             "message": msg, "field": field} for field, msg in causes]})


# --------------------------------------------------------------------------- helpers
def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _validate_meta(kind: str, meta: dict, name: str) -> list[tuple[str, str]]:
    causes = []
    dns = _LABEL if kind == "Namespace" else _SUBDOMAIN
    limit = 63 if kind == "Namespace" else 253
    if not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    elif len(name) > limit or not dns.match(name):
        causes.append(("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 '
                       f'{"label" if kind == "Namespace" else "subdomain"} must consist of lower case '
                       "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                       "character"))
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, short = key.rpartition("/")
        if (not isinstance(value, str) or len(short) > 63 or not short or not _LABEL_VALUE.match(short)
                or (prefix and (len(prefix) > 253 or not _SUBDOMAIN.match(prefix)))):
            causes.append(("metadata.labels", f'Invalid value: "{key}": name part must consist of '
                           "alphanumeric characters, '-', '_' or '.', and be at most 63 characters"))
        elif len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(("metadata.labels", f'Invalid value: "{value}": a valid label must be an empty '
                           "string or consist of alphanumeric characters, '-', '_' or '.', and must be "
                           "at most 63 characters"))
    for key, value in (meta.get("annotations") or {}).items():
        if not isinstance(value, str):
            causes.append(("metadata.annotations", f'Invalid value: "{key}": values must be strings'))
    return causes


def _secret_fields(body: dict) -> dict:
    """Secret payload as stored: stringData folded into base64 `data`, default type Opaque."""
    data = body.get("data") or {}
    string_data = body.get("stringData") or {}
    if not isinstance(data, dict) or not isinstance(string_data, dict):
        raise _bad_request('Secret in version "v1" cannot be handled as a Secret: data and stringData '
                           "must be objects")
    stored = {}
    for key, value in data.items():
        try:
            base64.b64decode(value if isinstance(value, str) else "!", validate=True)
        except (binascii.Error, ValueError):
            raise _bad_request(f'Secret in version "v1" cannot be handled as a Secret: illegal base64 '
                               f"data in data[{key!r}]") from None
        stored[key] = value
    for key, value in string_data.items():
        stored[key] = _b64(str(value))
    fields: dict[str, Any] = {"type": body.get("type") or "Opaque"}
    if stored:
        fields["data"] = stored
    if body.get("immutable") is not None:
        fields["immutable"] = bool(body["immutable"])
    return fields


def _validate_secret(name: str, fields: dict, old: dict | None) -> list[tuple[str, str]]:
    causes = []
    data = fields.get("data") or {}
    for key in data:
        if not _CONFIG_KEY.match(key):
            causes.append((f"data[{key}]", f'Invalid value: "{key}": a valid config key must consist of '
                           "alphanumeric characters, '-', '_' or '.'"))
    if sum(len(base64.b64decode(v)) for v in data.values()) > MAX_SECRET_BYTES:
        causes.append(("data", f"Too long: must have at most {MAX_SECRET_BYTES} bytes"))
    if old is not None:
        if fields["type"] != old["type"]:
            causes.append(("type", f'Invalid value: "{fields["type"]}": field is immutable'))
        if old.get("immutable"):
            if data != (old.get("data") or {}):
                causes.append(("data", "Forbidden: field is immutable when `immutable` is set"))
            if not fields.get("immutable"):
                causes.append(("immutable", "Forbidden: field is immutable when `immutable` is set"))
    return causes


def _namespace_fields(body: dict, name: str) -> dict:
    finalizers = (body.get("spec") or {}).get("finalizers", ["kubernetes"])
    return {"spec": {"finalizers": finalizers}, "status": {"phase": "Active"}}


# selectors -----------------------------------------------------------------
_TERM_SPLIT = re.compile(r"(?:[^,(]|\([^)]*\))+")
_SET_TERM = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s*\(([^)]*)\)\s*$")
_EQ_TERM = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(!?)\s*([\w./-]+)\s*$")


def _parse_selector(text: str, fields: set[str] | None = None) -> list:
    """Selector terms as (key, op, values). With `fields`, a fieldSelector over those fields."""
    terms = []
    for raw in _TERM_SPLIT.findall(text or ""):
        if not raw.strip():
            continue
        if fields is None and (m := _SET_TERM.match(raw)):
            terms.append((m[1], m[2], {v.strip() for v in m[3].split(",") if v.strip()}))
        elif m := _EQ_TERM.match(raw):
            terms.append((m[1], "!=" if m[2] == "!=" else "=", {m[3]}))
        elif fields is None and (m := _EXISTS_TERM.match(raw)):
            terms.append((m[2], "!" if m[1] else "exists", set()))
        else:
            kind = "field" if fields is not None else "label"
            raise _bad_request(f"unable to parse requirement: invalid {kind} selector: {raw.strip()!r}")
        if fields is not None and terms[-1][0] not in fields:
            raise _bad_request(f'field label not supported: {terms[-1][0]}')
    return terms


def _matches(values: dict, terms: list) -> bool:
    for key, op, wanted in terms:
        present, value = key in values, values.get(key)
        ok = {"=": present and value in wanted, "in": present and value in wanted,
              "!=": value not in wanted, "notin": value not in wanted,
              "exists": present, "!": not present}[op]
        if not ok:
            return False
    return True


def _field_values(obj: dict) -> dict:
    meta = obj["metadata"]
    values = {"metadata.name": meta["name"], "metadata.namespace": meta.get("namespace", "")}
    if "type" in obj:
        values["type"] = obj["type"]
    if "status" in obj:
        values["status.phase"] = obj["status"].get("phase")
    return values


# patches -------------------------------------------------------------------
def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _strategic_merge_patch(target: Any, patch: Any, key: str = "") -> Any:
    """Strategic merge patch for Secret/Namespace: a merge patch where `$patch` directives work,
    `finalizers` are merged as a set and `ownerReferences` by uid; other lists are replaced."""
    if not isinstance(patch, dict):
        if isinstance(patch, list) and isinstance(target, list):
            if key == "finalizers":
                return target + [f for f in patch if f not in target]
            if key == "ownerReferences":
                merged = {ref.get("uid"): ref for ref in target}
                for ref in patch:
                    merged[ref.get("uid")] = _merge_patch(merged.get(ref.get("uid")), ref)
                return [ref for ref in merged.values() if ref.get("$patch") != "delete"]
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    result = {} if directive == "replace" or not isinstance(target, dict) else dict(target)
    for k, value in patch.items():
        if k.startswith("$"):
            continue
        if value is None:
            result.pop(k, None)
        else:
            merged = _strategic_merge_patch(result.get(k), value, k)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
    return result


def _pointer(path: str) -> list[str]:
    if path and not path.startswith("/"):
        raise ValueError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _json_patch(doc: Any, operations: list) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    doc = copy.deepcopy(doc)

    def walk(path: str) -> tuple[Any, str]:
        parts = _pointer(path)
        if not parts:
            raise ValueError("operations on the document root are not supported")
        node = doc
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node, parts[-1]

    def get(path: str) -> Any:
        node, last = walk(path)
        return node[int(last)] if isinstance(node, list) else node[last]

    def remove(path: str) -> Any:
        node, last = walk(path)
        return node.pop(int(last)) if isinstance(node, list) else node.pop(last)

    def add(path: str, value: Any) -> None:
        node, last = walk(path)
        if isinstance(node, list):
            node.append(value) if last == "-" else node.insert(int(last), value)
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ValueError(f"cannot add to {path!r}")

    for op in operations:
        if not isinstance(op, dict) or "path" not in op:
            raise ValueError(f"invalid operation {op!r}")
        kind, path = op.get("op"), op["path"]
        if kind == "add":
            add(path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            remove(path)
        elif kind == "replace":
            get(path)
            remove(path)
            add(path, copy.deepcopy(op.get("value")))
        elif kind == "move":
            add(path, remove(op["from"]))
        elif kind == "copy":
            add(path, copy.deepcopy(get(op["from"])))
        elif kind == "test":
            if get(path) != op.get("value"):
                raise ValueError(f"testing value {path} failed")
        else:
            raise ValueError(f"unexpected kind of operation {kind!r}")
    return doc


# --------------------------------------------------------------------------- the stand-in
class KubeStandIn:
    """Kubernetes API stand-in for core/v1 Secrets and Namespaces on http://host:port.

    Test knobs (settable at any time, also while serving):
      down                  False; True -> every request answers 503 ServiceUnavailable (the client
                            raises ApiException(status=503)); "reset" -> the connection is dropped
                            without an answer (the client raises a urllib3 ProtocolError/MaxRetryError)
      forbidden_namespaces  requests for Secrets in these namespaces answer 403 Forbidden
      token                 when set, requests must carry "Authorization: Bearer <token>" (else 401)
      requests              every request received: dicts with method, path, query, body, headers
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None,
                 namespaces: tuple[str, ...] = ("default",)) -> None:
        self.host, self.port, self.token = host, port, token
        self.down: bool | str = False
        self.forbidden_namespaces: set[str] = set()
        self.requests: list[dict] = []
        self._lock = threading.RLock()
        self._rv = 100
        self._objects: dict[tuple[str, str, str], dict] = {}  # (resource, namespace, name) -> object
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        for name in namespaces:
            self.create_namespace(name)

    # lifecycle ---------------------------------------------------------------
    def start(self) -> KubeStandIn:
        """Serve in a background thread (again on the same port after a stop())."""
        self._httpd = _Server((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"kube-standin:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections; the state is kept."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        for conn in list(httpd.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> KubeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def write_kubeconfig(self, path: str | Path, **kwargs: Any) -> Path:
        """A kubeconfig for this stand-in (see write_kubeconfig())."""
        if self.token:
            kwargs.setdefault("token", self.token)
        return write_kubeconfig(path, self.url, **kwargs)

    # direct state access (for tests: act "behind the portal's back") --------------
    @property
    def namespaces(self) -> frozenset[str]:
        with self._lock:
            return frozenset(name for (res, _, name) in self._objects if res == NAMESPACES)

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> dict:
        """Create a namespace (no-op when it exists); returns it."""
        with self._lock:
            existing = self._objects.get((NAMESPACES, "", name))
            if existing:
                return copy.deepcopy(existing)
            return self._create(NAMESPACES, "", {"metadata": {"name": name, "labels": labels or {}}})

    def delete_namespace(self, name: str) -> bool:
        """Delete a namespace and everything in it; False when there was none."""
        with self._lock:
            if (NAMESPACES, "", name) not in self._objects:
                return False
            self._delete(NAMESPACES, "", name, None)
            return True

    def get_secret(self, namespace: str, name: str) -> dict | None:
        """The stored Secret (base64 `data`), or None."""
        with self._lock:
            obj = self._objects.get((SECRETS, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The stored Secret's data decoded to text, or None when there is no such Secret."""
        obj = self.get_secret(namespace, name)
        if obj is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}

    def list_secrets(self, namespace: str | None = None, label_selector: str = "") -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._list(SECRETS, namespace, label_selector, ""))

    def put_secret(self, namespace: str, body: dict) -> dict:
        """Create or unconditionally replace a Secret (accepts data and/or stringData); bumps
        resourceVersion like any write. The namespace is created when missing."""
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        meta.pop("resourceVersion", None)
        with self._lock:
            self.create_namespace(namespace)
            if (SECRETS, namespace, meta.get("name", "")) in self._objects:
                return self._update(SECRETS, namespace, meta["name"], body)
            return self._create(SECRETS, namespace, body)

    def delete_secret(self, namespace: str, name: str) -> bool:
        """Delete a Secret; False when there was none."""
        with self._lock:
            return self._objects.pop((SECRETS, namespace, name), None) is not None

    # the API operations (raise ApiError) -------------------------------------
    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _existing(self, resource: str, namespace: str, name: str) -> dict:
        obj = self._objects.get((resource, namespace, name))
        if obj is None:
            raise _not_found(resource, name)
        return obj

    def _build(self, resource: str, namespace: str, name: str, body: Any, old: dict | None) -> dict:
        """The object to store from a request body: checked, normalised, server metadata set."""
        kind = KINDS[resource]
        if not isinstance(body, dict):
            raise _bad_request(f"the body of the request must be a {kind} object")
        if body.get("kind") not in (None, "", kind) or body.get("apiVersion") not in (None, "", "v1"):
            raise _bad_request(f'the API version in the data ({body.get("apiVersion")}) and the kind '
                               f'({body.get("kind")}) do not match the request: expected v1 {kind}')
        meta = body.get("metadata") or {}
        if resource == SECRETS and meta.get("namespace") not in (None, "", namespace):
            raise _bad_request("the namespace of the provided object does not match the namespace "
                               "sent on the request")
        new_meta = {k: copy.deepcopy(meta[k]) for k in META_KEYS if meta.get(k) not in (None, {}, [])}
        new_meta["name"] = name
        if resource == SECRETS:
            new_meta["namespace"] = namespace
            fields = _secret_fields(body)
            causes = _validate_meta(kind, new_meta, name) + _validate_secret(name, fields, old)
        else:
            new_meta.pop("namespace", None)
            new_meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
            fields = _namespace_fields(body, name)
            causes = _validate_meta(kind, new_meta, name)
        if causes:
            raise _invalid(kind, name, causes)
        if old is not None:
            for key in SERVER_META_KEYS:
                new_meta[key] = old["metadata"][key]
        else:
            new_meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion="")
        return {"kind": kind, "apiVersion": "v1", "metadata": new_meta, **fields}

    def _create(self, resource: str, namespace: str, body: Any, dry_run: bool = False) -> dict:
        meta = (body.get("metadata") or {}) if isinstance(body, dict) else {}
        if resource == SECRETS and (NAMESPACES, "", namespace) not in self._objects:
            raise _not_found(NAMESPACES, namespace)
        name = meta.get("name") or ""
        if not name and meta.get("generateName"):
            name = meta["generateName"] + "".join(random.choices(_GENERATE_CHARS, k=5))
        obj = self._build(resource, namespace, name, body, None)
        if (resource, namespace, name) in self._objects:
            raise ApiError(409, "AlreadyExists", f'{resource} "{name}" already exists',
                           {"name": name, "kind": resource})
        if not dry_run:
            obj["metadata"]["resourceVersion"] = self._next_rv()
            self._objects[(resource, namespace, name)] = obj
        return copy.deepcopy(obj)

    def _list(self, resource: str, namespace: str | None, label_selector: str, field_selector: str) -> list:
        labels = _parse_selector(label_selector)
        fields = _parse_selector(field_selector, FIELD_SELECTORS[resource])
        return [obj for (res, ns, _), obj in sorted(self._objects.items())
                if res == resource and namespace in (None, ns)
                and _matches(obj["metadata"].get("labels") or {}, labels)
                and _matches(_field_values(obj), fields)]

    def _update(self, resource: str, namespace: str, name: str, body: Any, dry_run: bool = False) -> dict:
        old = self._existing(resource, namespace, name)
        meta = (body.get("metadata") or {}) if isinstance(body, dict) else {}
        if meta.get("name") != name:
            raise _bad_request(f"the name of the object ({meta.get('name', '')}) does not match the name "
                               f"on the URL ({name})")
        if meta.get("resourceVersion") not in (None, "", old["metadata"]["resourceVersion"]):
            raise _conflict(resource, name)
        new = self._build(resource, namespace, name, body, old)
        if new == old or dry_run:  # a no-op update keeps the resourceVersion, as on the real API
            return copy.deepcopy(new)
        new["metadata"]["resourceVersion"] = self._next_rv()
        self._objects[(resource, namespace, name)] = new
        return copy.deepcopy(new)

    def _patch(self, resource: str, namespace: str, name: str, content_type: str, patch: Any,
               dry_run: bool = False) -> dict:
        old = copy.deepcopy(self._existing(resource, namespace, name))
        media = content_type.split(";")[0].strip().lower()
        if media == "application/json-patch+json":
            if not isinstance(patch, list):
                raise _bad_request("the body of a JSON patch must be a list of operations")
            try:
                result = _json_patch(old, patch)
            except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
                raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our "
                               f"request: {exc}") from None
        elif media in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(patch, dict):
                raise _bad_request("the body of a merge patch must be a JSON object")
            merge = _merge_patch if media == "application/merge-patch+json" else _strategic_merge_patch
            result = merge(old, patch)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown "
                           f"format - accepted media types include: application/json-patch+json, "
                           f"application/merge-patch+json, application/strategic-merge-patch+json "
                           f"(got {content_type!r})")
        if not isinstance(result, dict):
            raise _bad_request("the patch did not result in an object")
        result.setdefault("metadata", {})
        if result["metadata"].get("name") != name:
            raise _bad_request("metadata.name cannot be changed by a patch")
        return self._update(resource, namespace, name, result, dry_run)

    def _delete(self, resource: str, namespace: str, name: str, options: Any, dry_run: bool = False) -> dict:
        obj = self._existing(resource, namespace, name)
        pre = (options.get("preconditions") if isinstance(options, dict) else None) or {}
        for field, key in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            if pre.get(field) and pre[field] != obj["metadata"][field]:
                raise _conflict(resource, name, f"Precondition failed: {key} in precondition: "
                                f"{pre[field]}, {key} in object meta: {obj['metadata'][field]}")
        if dry_run:
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "kind": resource, "uid": obj["metadata"]["uid"]}}
        del self._objects[(resource, namespace, name)]
        self._next_rv()
        if resource == NAMESPACES:  # the real API answers with the namespace, now Terminating
            for key in [k for k in self._objects if k[0] == SECRETS and k[1] == name]:
                del self._objects[key]
            gone = copy.deepcopy(obj)
            gone["metadata"]["deletionTimestamp"] = _now()
            gone["status"]["phase"] = "Terminating"
            return gone
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "kind": resource, "uid": obj["metadata"]["uid"]}}

    # routing -----------------------------------------------------------------
    def _handle(self, method: str, path: str, query: dict, body: Any, content_type: str,
                authorization: str) -> tuple[int, dict]:
        if self.down:
            raise ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request")
        if self.token and authorization != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        parts = [p for p in path.split("/") if p]
        if parts == ["version"]:
            return 200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-kube-standin",
                         "platform": "linux/amd64"}
        if parts == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if parts == ["apis"]:
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
        if parts == ["api", "v1"]:
            return 200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": r, "singularName": KINDS[r].lower(), "namespaced": r == SECRETS, "kind": KINDS[r],
                 "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update"]}
                for r in (NAMESPACES, SECRETS)]}
        # /api/v1/<res>[/<name>]  or  /api/v1/namespaces/<ns>/secrets[/<name>]
        if parts[:2] != ["api", "v1"] or len(parts) < 3:
            raise _path_not_found()
        rest = parts[2:]
        if rest[0] == NAMESPACES and len(rest) in (3, 4):
            resource, namespace, name = rest[2], rest[1], (rest[3] if len(rest) == 4 else None)
            if resource != SECRETS:
                raise _path_not_found()
        elif rest[0] in KINDS and len(rest) <= 2:
            resource, namespace, name = rest[0], None, (rest[1] if len(rest) == 2 else None)
            if resource == NAMESPACES:
                namespace = ""
            elif name is not None or method != "GET":  # only the cluster-wide list of Secrets
                raise _path_not_found()
        else:
            raise _path_not_found()
        q = {k: v[-1] for k, v in query.items()}
        dry_run = q.get("dryRun") == "All"
        verb = {("GET", False): "list", ("GET", True): "get", ("POST", False): "create",
                ("PUT", True): "update", ("PATCH", True): "patch", ("DELETE", True): "delete",
                ("DELETE", False): "deletecollection"}.get((method, name is not None))
        if verb is None or q.get("watch") in ("true", "1"):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the "
                           "requested resource", {"name": name or "", "kind": resource})
        if resource == SECRETS and namespace in self.forbidden_namespaces:
            subject = f'{resource} "{name}"' if name else resource
            raise ApiError(403, "Forbidden", f'{subject} is forbidden: User "system:serviceaccount:portal:'
                           f'catalog-portal" cannot {verb} resource "{resource}" in API group "" in the '
                           f'namespace "{namespace}"', {**({"name": name} if name else {}), "kind": resource})
        with self._lock:
            if verb in ("list", "deletecollection"):
                items = self._list(resource, namespace, q.get("labelSelector", ""), q.get("fieldSelector", ""))
                if verb == "deletecollection" and not dry_run:
                    for obj in items:
                        self._delete(resource, namespace, obj["metadata"]["name"], None)
                listed = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]
                return 200, {"kind": f"{KINDS[resource]}List", "apiVersion": "v1",
                             "metadata": {"resourceVersion": str(self._rv)}, "items": copy.deepcopy(listed)}
            if verb == "get":
                return 200, copy.deepcopy(self._existing(resource, namespace, name))
            if verb == "create":
                return 201, self._create(resource, namespace, body, dry_run)
            if verb == "update":
                return 200, self._update(resource, namespace, name, body, dry_run)
            if verb == "patch":
                return 200, self._patch(resource, namespace, name, content_type, body, dry_run)
            return 200, self._delete(resource, namespace, name, body, dry_run)


def _path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


# --------------------------------------------------------------------------- HTTP plumbing
class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], standin: KubeStandIn) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.standin = standin
        self.connections: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.connections.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-standin"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        standin = self.server.standin
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
            bad_json = None
        except ValueError as exc:
            body, bad_json = raw.decode(errors="replace"), exc
        standin.requests.append({
            "method": self.command, "path": url.path, "query": parse_qs(url.query), "body": body,
            "headers": {"content-type": self.headers.get("Content-Type", ""),
                        "authorization": self.headers.get("Authorization", "")}})
        if standin.down == "reset":  # drop the connection without an answer
            self.close_connection = True
            return
        try:
            if bad_json is not None:
                raise _bad_request(f"the request body is not valid JSON: {bad_json}")
            code, payload = standin._handle(self.command, url.path, parse_qs(url.query), body,
                                            self.headers.get("Content-Type", "application/json"),
                                            self.headers.get("Authorization", ""))
        except ApiError as exc:
            code, payload = exc.code, exc.status()
        except Exception as exc:  # answer like apiserver, never leave the client hanging
            code, payload = 500, ApiError(500, "InternalError", f"kube stand-in: {exc!r}").status()
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


# --------------------------------------------------------------------------- kubeconfig
def write_kubeconfig(path: str | Path, url: str, *, token: str = "kube-standin-token",  # noqa: S107 - a test token
                     namespace: str = "default", context: str = "kube-standin") -> Path:
    """Write a kubeconfig (JSON, which is YAML) for plain-http `url` with a bearer token and make it
    the current context, so `kubernetes.config.load_kube_config(config_file=path)` or KUBECONFIG
    reach the stand-in like a real cluster."""
    path = Path(path)
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": context,
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context,
                                                    "namespace": namespace}}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path
