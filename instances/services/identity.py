"""What the portal tells brokers about who acted and where (kubernetes profile)."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings

from brokers.osb import OriginatingIdentity
from teams.access import team_names_for

_GUID_NAMESPACE = uuid.UUID("0b8c5a7e-8f5e-4c0b-9a8c-6f3f5d1c2e10")


def identity_for(user: Any) -> dict[str, Any] | None:
    """The kubernetes-profile originating identity of a person (stored on the operation, sent on submit)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    groups = set(user.groups.values_list("name", flat=True)) if user.pk else set()
    groups.update(team_names_for(user))  # the person's teams, as Kubernetes would see them
    return {"username": user.get_username(), "uid": str(user.pk),
            "groups": [*sorted(groups), "system:authenticated"]}


def originating_identity(data: dict[str, Any] | None) -> OriginatingIdentity | None:
    if not data:
        return None
    return OriginatingIdentity(username=data["username"], uid=data["uid"], groups=tuple(data.get("groups", ())))


def instance_context(*, namespace: str, name: str) -> dict[str, Any]:
    return {
        "platform": "kubernetes",
        "namespace": namespace,
        "clusterid": settings.CLUSTER_ID,
        "instance_name": name,
    }


def legacy_guids(*, namespace: str) -> tuple[str, str]:
    """organization_guid and space_guid: deprecated but required by v2.17; stable per cluster and namespace."""
    org = uuid.uuid5(_GUID_NAMESPACE, f"cluster:{settings.CLUSTER_ID}")
    space = uuid.uuid5(_GUID_NAMESPACE, f"cluster:{settings.CLUSTER_ID}/namespace:{namespace}")
    return str(org), str(space)
