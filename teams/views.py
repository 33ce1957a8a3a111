"""Pages for teams and the audit log (thin: parse, call one service or selector, render)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods
from rest_framework.authtoken.models import Token

from catalog_portal.exceptions import ApplicationError, NotFound
from teams import access, selectors, services
from teams.forms import AuditFilterForm, MemberForm, TeamForm
from teams.models import Membership

# --- refusals ------------------------------------------------------------------------------------------------


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The 403 page (handler403) in the portal's frame: what was refused, the role that would allow it, and who
    can grant that role (the team admins of the namespace). JSON under /api/. A view passes the service's
    Forbidden as the PermissionDenied's argument."""
    refusal = exception.args[0] if exception.args else None
    message = getattr(refusal, "message", None) or (str(refusal) if refusal else "")
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message or "You do not have permission to do this.",
                             "code": "permission_denied"}, status=403)
    namespace, role = getattr(refusal, "namespace", None), getattr(refusal, "role", None)
    team, admins = access.who_can_grant(namespace)
    context = {"message": message, "namespace": namespace, "role": role, "team": team, "admins": admins}
    return render(request, "403.html", context, status=403)


# --- teams ---------------------------------------------------------------------------------------------------


def _apply_error(form: Any, exc: ApplicationError) -> None:
    """A service's refusal, on the form: field errors beside their fields, else at the top."""
    placed = False
    for field, errors in exc.fields.items():
        if field in form.fields:
            for error in errors:
                form.add_error(field, error)
            placed = True
    if not placed:
        form.add_error(None, exc.message)


def _status(exc: ApplicationError) -> int:
    return exc.status_code if exc.status_code in (403, 404, 409) else 422


@require_http_methods(["GET", "POST"])
def team_list(request: HttpRequest) -> HttpResponse:
    """My teams (platform admins: all); platform admins create teams here."""
    admin = access.is_platform_admin(request.user)
    form, status = TeamForm(request.POST or None) if admin else None, 200
    if request.method == "POST":
        if form is None:
            raise Http404
        if form.is_valid():
            try:
                team = services.team_create(requested_by=request.user, request=request, **form.cleaned_data)
            except ApplicationError as exc:
                _apply_error(form, exc)
                status = _status(exc)
            else:
                messages.success(request, f"Team {team.name} created.")
                return redirect("team-detail", team.pk)
        else:
            status = 422
    page = Paginator(selectors.team_list_for_user(user=request.user), 25).get_page(request.GET.get("page"))
    rows = [{"team": team, "role": _my_role(team, request.user)} for team in page]
    return render(request, "teams/team_list.html", {"rows": rows, "form": form, "is_admin": admin, "page": page,
                                                     "query": ""}, status=status)


def _my_role(team: Any, user: Any) -> str | None:
    return next((m.role for m in team.memberships.all() if m.user_id == user.pk), None)


TEAM_ACTIONS = ("add_member", "set_role", "remove_member", "update", "delete")


@require_http_methods(["GET", "POST"])
def team_detail(request: HttpRequest, team_id: Any) -> HttpResponse:
    """A team's namespaces and members; team admins manage members, platform admins the team itself."""
    try:
        team = selectors.team_get_for_user(user=request.user, team_id=team_id)
    except NotFound:
        raise Http404("No such team.") from None
    admin = access.is_platform_admin(request.user)
    member_form = MemberForm(prefix="member")
    team_form = TeamForm(prefix="team", initial={
        "name": team.name, "namespaces": " ".join(ns.namespace for ns in team.namespaces.all())}) if admin else None
    status = 200
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action not in TEAM_ACTIONS:
            return redirect("team-detail", team.pk)
        try:
            done = _team_action(request, team, action)
        except ApplicationError as exc:
            status = _status(exc)
            if action == "add_member":
                member_form = MemberForm(request.POST, prefix="member")
                member_form.is_valid()
                _apply_error(member_form, exc)
            elif action == "update" and team_form is not None:
                team_form = TeamForm(request.POST, prefix="team")
                team_form.is_valid()
                _apply_error(team_form, exc)
            else:
                messages.error(request, exc.message)
        else:
            if done is not None:
                messages.success(request, done)
            return redirect("team-list") if action == "delete" else redirect("team-detail", team.pk)
        team = selectors.team_list_for_user(user=None).get(pk=team.pk)
    context = {
        "team": team, "member_form": member_form, "team_form": team_form, "is_admin": admin,
        "can_manage": selectors.can_manage_members(team, request.user), "roles": Membership.Role.choices,
        "my_role": _my_role(team, request.user),
    }
    return render(request, "teams/team_detail.html", context, status=status)


def _team_action(request: HttpRequest, team: Any, action: str) -> str | None:
    """Carry out one button of the team page through the services; the message to show, or None."""
    post, who = request.POST, {"requested_by": request.user, "request": request}
    if action in ("add_member", "set_role"):
        form = MemberForm(post, prefix="member")
        if not form.is_valid():
            raise ApplicationError("Give a username and a role.", fields=dict(form.errors.items()))
        data = form.cleaned_data
        services.team_member_set(team=team, username=data["username"], role=data["role"], **who)
        return f"{data['username']} is now {data['role']} in {team.name}."
    if action == "remove_member":
        username = post.get("member-username", "")
        services.team_member_remove(team=team, username=username, **who)
        return f"{username} was removed from {team.name}."
    if action == "update":
        form = TeamForm(post, prefix="team")
        if not form.is_valid():
            raise ApplicationError("Correct the team's name or namespaces.", fields=dict(form.errors.items()))
        services.team_update(team=team, **form.cleaned_data, **who)
        return f"Team {team.name} saved."
    services.team_delete(team=team, **who)
    return f"Team {team.name} deleted."


# --- audit ---------------------------------------------------------------------------------------------------


@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    """The audit log, filterable; platform admins only (a 404 for others, like the other admin pages)."""
    if not access.is_platform_admin(request.user):
        raise Http404
    form = AuditFilterForm(request.GET or None)
    filters, status = form.filters() if form.is_bound else {}, 200
    try:
        filters["since"] = selectors.parse_moment(filters.get("since"), field="since")
        filters["until"] = selectors.parse_moment(filters.get("until"), field="until", end_of_day=True)
        records = selectors.audit_list(**filters)
    except ApplicationError as exc:
        _apply_error(form, exc)
        records, status = selectors.audit_list().none(), 422
    page = Paginator(records, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "audit/audit_list.html", {"form": form, "page": page, "query": query.urlencode()},
                  status=status)


@require_http_methods(["GET", "POST"])
def account(request: HttpRequest) -> HttpResponse:
    """The user's page: their API token, with when it was made and last used (POST creates or replaces it)."""
    new_key = None
    if request.method == "POST":
        new_key = services.token_replace(user=request.user, request=request).key
    token = Token.objects.filter(user=request.user).select_related("use").first()
    use = getattr(token, "use", None) if token is not None else None
    return render(request, "account.html", {
        "has_token": token is not None, "new_key": new_key,
        "token_created": token.created if token is not None else None,
        "token_last_used": use.last_used_at if use is not None else None,
    })
