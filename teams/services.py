"""Teams, their namespaces and members, and people: the only code that writes them. Every change is audited.

Platform admins create, change and delete teams; a team's admins manage its members; members read their teams.
Someone who is not in a team does not see it (NotFound); a member without the right role gets Forbidden.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from catalog_portal.exceptions import ApplicationError, Conflict, Forbidden, NotFound
from teams import access, hooks
from teams.audit import audit
from teams.models import Membership, Team, TeamNamespace, TokenUse
from teams.selectors import role_in

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


# --- permission checks ------------------------------------------------------------------------------------


def _require_platform_admin(user: Any, team: Team | None = None) -> None:
    if user is None or access.is_platform_admin(user):
        return
    if team is not None and role_in(team, user) is None:
        raise NotFound("No such team.")
    raise Forbidden("Only platform admins create, change and delete teams.")


def _require_team_admin(user: Any, team: Team) -> None:
    if user is None or access.is_platform_admin(user):
        return
    role = role_in(team, user)
    if role is None:
        raise NotFound("No such team.")
    if role != Membership.Role.ADMIN:
        raise Forbidden(f"Only admins of team '{team.name}' manage its members.")


# --- teams ------------------------------------------------------------------------------------------------


def _clean_namespaces(team: Team | None, namespaces: list[str]) -> list[str]:
    cleaned = sorted({str(ns).strip() for ns in namespaces if str(ns).strip()})
    bad = [ns for ns in cleaned if not _DNS_LABEL.match(ns)]
    if bad:
        raise ApplicationError("Invalid namespace.", fields={"namespaces": [
            f"'{ns}' is not a valid namespace (lowercase letters, digits and '-', at most 63)." for ns in bad]})
    taken = TeamNamespace.objects.filter(namespace__in=cleaned).select_related("team")
    if team is not None:
        taken = taken.exclude(team=team)
    errors = [f"Namespace '{row.namespace}' already belongs to team '{row.team.name}'." for row in taken]
    if errors:
        raise ApplicationError(errors[0], fields={"namespaces": errors})
    return cleaned


def _check_name(name: str, team: Team | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise ApplicationError("A team needs a name.", fields={"name": ["This field may not be blank."]})
    others = Team.objects.filter(name=name)
    if team is not None:
        others = others.exclude(pk=team.pk)
    if others.exists():
        raise Conflict("A team with this name exists.", fields={"name": [f"Team '{name}' already exists."]}, code="name_taken")
    return name


def _set_namespaces(team: Team, namespaces: list[str]) -> None:
    TeamNamespace.objects.filter(team=team).exclude(namespace__in=namespaces).delete()
    have = set(TeamNamespace.objects.filter(team=team).values_list("namespace", flat=True))
    TeamNamespace.objects.bulk_create([TeamNamespace(team=team, namespace=ns) for ns in namespaces if ns not in have])


def team_create(*, name: str, namespaces: list[str] | None = None, requested_by: Any = None,
                request: Any = None) -> Team:
    """Create a team owning `namespaces` (each belongs to at most one team); platform admins only."""
    _require_platform_admin(requested_by)
    name = _check_name(name)
    cleaned = _clean_namespaces(None, namespaces or [])
    try:
        with transaction.atomic():
            team = Team.objects.create(name=name)
            _set_namespaces(team, cleaned)
            audit(action="team.create", target=team, actor=requested_by, request=request,
                  summary=f"Team '{name}' created with namespaces: {', '.join(cleaned) or 'none'}")
    except IntegrityError:
        raise ApplicationError("That team name or a namespace was just taken; try again.") from None
    return team


def team_update(*, team: Team, name: str | None = None, namespaces: list[str] | None = None,
                requested_by: Any = None, request: Any = None) -> Team:
    """Rename a team and/or replace its namespaces; platform admins only."""
    _require_platform_admin(requested_by, team)
    changes = []
    with transaction.atomic():
        if name is not None and name.strip() != team.name:
            old, team.name = team.name, _check_name(name, team)
            team.save(update_fields=["name"])
            changes.append(f"renamed from '{old}'")
        if namespaces is not None:
            cleaned = _clean_namespaces(team, namespaces)
            _set_namespaces(team, cleaned)
            changes.append(f"namespaces: {', '.join(cleaned) or 'none'}")
        audit(action="team.update", target=team, actor=requested_by, request=request,
              summary=f"Team '{team.name}' changed: {'; '.join(changes) or 'nothing'}")
    return team


def _refuse_live_instances(namespaces: list[str], *, doing: str) -> None:
    """Conflict (409) naming the live instances in `namespaces`: they would be left reachable only by admins."""
    live = hooks.live_instances(namespaces)
    if live:
        shown = ", ".join(live[:20]) + (f" and {len(live) - 20} more" if len(live) > 20 else "")
        raise Conflict(f"Cannot {doing}: {len(live)} instance(s) still live in its namespaces ({shown}). Deprovision "
                       "them first, or give the namespaces to another team.", fields={"instances": live})


def team_delete_refusal(team: Team) -> str | None:
    """Why `team` cannot be deleted now (live instances in its namespaces), or None."""
    try:
        _refuse_live_instances(list(team.namespaces.values_list("namespace", flat=True)),
                               doing=f"delete team '{team.name}'")
    except Conflict as exc:
        return exc.message
    return None


def team_delete(*, team: Team, requested_by: Any = None, request: Any = None) -> None:
    """Delete a team; refused (409, naming them) while its namespaces hold live instances, which would be left
    reachable only by platform admins."""
    _require_platform_admin(requested_by, team)
    with transaction.atomic():
        Team.objects.select_for_update().filter(pk=team.pk).first()
        _refuse_live_instances(list(team.namespaces.values_list("namespace", flat=True)),
                               doing=f"delete team '{team.name}'")
        pk, name = team.pk, team.name
        team.delete()
        audit(action="team.delete", target=("team", pk), actor=requested_by, request=request,
              summary=f"Team '{name}' deleted")


# --- members ----------------------------------------------------------------------------------------------


def team_member_set(*, team: Team, username: str, role: str, requested_by: Any = None,
                    request: Any = None) -> Membership:
    """Add `username` to `team` with `role`, or change their role; platform admins and team admins."""
    _require_team_admin(requested_by, team)
    if role not in Membership.Role.values:
        raise ApplicationError("Unknown role.", fields={"role": ["Use viewer, developer or admin."]})
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise ApplicationError(f"No user named '{username}'.", fields={"username": [f"No user named '{username}'."]})
    with transaction.atomic():
        membership, created = Membership.objects.select_for_update().get_or_create(
            team=team, user=user, defaults={"role": role})
        if created:
            audit(action="team.member.add", target=team, actor=requested_by, request=request,
                  summary=f"{username} added to team '{team.name}' as {role}")
        elif membership.role != role:
            old, membership.role = membership.role, role
            membership.save(update_fields=["role"])
            audit(action="team.member.role", target=team, actor=requested_by, request=request,
                  summary=f"{username}'s role in team '{team.name}' changed from {old} to {role}")
    return membership


def team_member_remove(*, team: Team, username: str, requested_by: Any = None, request: Any = None) -> None:
    """Take `username` out of `team`; platform admins and team admins."""
    _require_team_admin(requested_by, team)
    with transaction.atomic():
        deleted, _ = Membership.objects.filter(team=team, user__username=username).delete()
        if not deleted:
            raise NotFound(f"{username} is not a member of team '{team.name}'.")
        audit(action="team.member.remove", target=team, actor=requested_by, request=request,
              summary=f"{username} removed from team '{team.name}'")


# --- people -----------------------------------------------------------------------------------------------


def user_create(*, username: str, email: str = "", password: str, requested_by: Any = None,
                request: Any = None) -> Any:
    """Create a person who can sign in; the password validators apply. Platform admins only."""
    if requested_by is not None and not access.is_platform_admin(requested_by):
        raise Forbidden("Only platform admins create users.")
    model = get_user_model()
    if model.objects.filter(username=username).exists():
        raise Conflict("That username is taken.", fields={"username": [f"'{username}' is taken."]}, code="name_taken")
    candidate = model(username=username, email=email)
    try:
        validate_password(password, user=candidate)
    except ValidationError as exc:
        raise ApplicationError("The password is too weak.", fields={"password": list(exc.messages)}) from None
    with transaction.atomic():
        user = model.objects.create_user(username=username, email=email, password=password)
        audit(action="user.create", target=user, actor=requested_by, request=request,
              summary=f"User '{username}' created")
    return user


# --- API tokens -------------------------------------------------------------------------------------------

# A token's "last used" moves at most this often: a script calling the API many times a second writes once a minute.
TOKEN_USE_RESOLUTION = timedelta(minutes=1)


def token_replace(*, user: Any, request: Any = None) -> Token:
    """Give `user` a new API token (the old one, if any, stops working at once); audited. The key is in the answer
    only: it is shown once."""
    with transaction.atomic():
        replaced = Token.objects.filter(user=user).delete()[0] > 0
        token = Token.objects.create(user=user)
        audit(action="token.replace" if replaced else "token.create", target=user, actor=user, request=request,
              summary=f"API token of '{user.get_username()}' {'replaced' if replaced else 'created'}")
    return token


def token_touch(*, token: Token) -> None:
    """Note that `token` signed a request in now: at most one write a minute per token, none at all when the token
    was read with its last use (`select_related("use")`) and that is recent."""
    now = timezone.now()
    try:
        last = token.use.last_used_at
    except TokenUse.DoesNotExist:
        last = None
    if last is not None and last >= now - TOKEN_USE_RESOLUTION:
        return
    if last is not None:
        TokenUse.objects.filter(token=token, last_used_at__lt=now - TOKEN_USE_RESOLUTION).update(last_used_at=now)
        return
    try:
        with transaction.atomic():
            TokenUse.objects.create(token=token, last_used_at=now)
    except IntegrityError:
        pass  # a concurrent request of the same token noted it first
