"""Writing a validated catalog into the mirror, and saying what that changed for the platform's users.

The mirror keys every service and plan by the broker's id, rewrites only rows whose content changed (content hash),
and never deletes: what left the catalog, or what the broker's catalog restrictions exclude, becomes inactive, so
existing instances keep working. The diff it returns is what a sync stores and shows: services and plans added
(offered now, not before), removed (offered before, not now, and why), and changed (which fields; for parameter
schemas, which properties), each with the number of existing instances it affects.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, models, router
from django.db.models import JSONField, Model, Value
from django.db.models.functions import Cast
from django.utils import timezone

from brokers import hooks
from brokers.catalog import OfferingEntry, PlanEntry, json_bytes
from brokers.catalog_diff import changed_fields, schema_changes
from brokers.models import Broker, ServiceOffering, ServicePlan
from brokers.restrictions import Restrictions, parse_restrictions

OFFERING_FIELDS = [
    "name", "description", "tags", "requires", "bindable", "instances_retrievable", "bindings_retrievable",
    "allow_context_updates", "plan_updateable", "metadata", "dashboard_client", "display_name",
    "long_description", "provider", "image_url", "documentation_url", "support_url", "raw", "position",
    "search_text", "tag_index",
]
PLAN_FIELDS = [
    "name", "description", "free", "bindable", "plan_updateable", "binding_rotatable", "metadata",
    "display_name", "bullets", "costs", "schemas", "maximum_polling_duration", "maintenance_info", "raw",
    "position",
]
BATCH = 250
# Only what the diff reads: a written row gets every field assigned before bulk_update, so loading (and
# JSON-decoding) the big columns of thousands of unchanged rows is wasted work.
ROW_FIELDS = ("id", "catalog_id", "content_hash", "active", "restricted", "name", "position")
REMOVED = "removed"  # a removed entry's reason: gone from the broker's catalog
RESTRICTED = "restricted"  # ... or excluded by the broker's catalog restrictions


def empty_diff() -> dict[str, dict[str, list[dict[str, Any]]]]:
    return {kind: {"added": [], "removed": [], "changed": []} for kind in ("services", "plans")}


@dataclass
class MirrorResult:
    counts: dict[str, int]  # rows created, rewritten and deactivated, per table
    diff: dict[str, Any] = field(default_factory=empty_diff)

    @property
    def written(self) -> int:
        return sum(self.counts.values())


@dataclass
class _Row:
    """One service or plan of the incoming catalog, matched with its mirror row (None: new)."""

    entry: OfferingEntry | PlanEntry
    row: Any
    offered: bool
    offering: Any = None  # a plan's (new) mirror offering

    @property
    def existing(self) -> bool:
        return self.row is not None and not self.row._state.adding

    @property
    def was_offered(self) -> bool:
        return self.existing and self.row.active

    @property
    def needs_write(self) -> bool:
        if not self.existing:
            return True
        row = self.row
        return row.content_hash != self.entry.content_hash or row.active != self.offered or row.restricted == self.offered


def mirror_catalog(*, broker_id: Any, offerings: list[OfferingEntry], sync_id: Any = None) -> MirrorResult:
    """Upsert the validated catalog, offering what the broker's catalog restrictions allow; inside the caller's
    transaction, with the broker row locked (a restriction change and a sync never interleave)."""
    now = timezone.now()
    broker = Broker.objects.select_for_update().get(pk=broker_id)
    rules = parse_restrictions(broker.catalog_restrictions)
    old_offerings = {o.catalog_id: o for o in ServiceOffering.objects.filter(broker=broker).only(*ROW_FIELDS)}
    old_plans = {p.catalog_id: p for p in
                 ServicePlan.objects.filter(broker=broker).only(*ROW_FIELDS, "offering_id", "schemas_changed")}
    services, plans = _match(broker, offerings, rules, old_offerings, old_plans, now)
    diff = _Differ(services, plans, old_offerings, old_plans, sync_id, now).diff(broker.pk)
    counts = _write(services, plans, old_offerings, old_plans, offerings, now)
    return MirrorResult(counts=counts, diff=diff)


def _match(broker: Broker, offerings: list[OfferingEntry], rules: Restrictions, old_offerings: dict[str, Any],
           old_plans: dict[str, Any], now: Any) -> tuple[list[_Row], list[_Row]]:
    services: list[_Row] = []
    plans: list[_Row] = []
    for entry in offerings:
        service_ok = rules.allows_service({"name": entry.fields["name"], "catalog_id": entry.catalog_id})
        offering = old_offerings.get(entry.catalog_id) or ServiceOffering(
            broker=broker, catalog_id=entry.catalog_id, created_at=now)
        own = [_Row(plan, old_plans.get(plan.catalog_id), service_ok and rules.allows_plan(
                   {"name": plan.fields["name"], "catalog_id": plan.catalog_id, "free": plan.fields["free"]}),
                    offering) for plan in entry.plans]
        services.append(_Row(entry, offering, service_ok and any(row.offered for row in own)))
        plans += own
    for row in plans:
        if row.row is None:
            row.row = ServicePlan(broker=broker, catalog_id=row.entry.catalog_id, created_at=now)
    return services, plans


class _Differ:
    """Builds a sync's diff from the matched rows, before they are written (it reads their old content)."""

    def __init__(self, services: list[_Row], plans: list[_Row], old_offerings: dict[str, Any],
                 old_plans: dict[str, Any], sync_id: Any, now: Any) -> None:
        self.services, self.plans = services, plans
        self.old_offerings, self.old_plans = old_offerings, old_plans
        self.sync_id, self.now = sync_id, now
        # A plan entry names its service: as the catalog calls it now, or did when it was last offered.
        self.service_names = {o.pk: o.name for o in old_offerings.values()}
        self.service_names.update({row.row.pk: row.entry.fields["name"] for row in services})
        self.service_positions = {o.pk: o.position for o in old_offerings.values()}
        self.result = empty_diff()
        self.touched: list[tuple[str, Any, dict[str, Any]]] = []  # (kind, row, entry) needing an instance count

    def diff(self, broker_id: Any) -> dict[str, Any]:
        incoming = {row.entry.catalog_id for row in self.services}, {row.entry.catalog_id for row in self.plans}
        self._side("services", self.services, self.old_offerings, incoming[0], ServiceOffering)
        self._side("plans", self.plans, self.old_plans, incoming[1], ServicePlan)
        if self.touched:
            self._count_instances(broker_id)
        return self.result

    def _side(self, kind: str, rows: list[_Row], old: dict[str, Any], incoming: set[str], model: type[Model]) -> None:
        changed = [row for row in rows if row.was_offered and row.offered and row.needs_write]
        old_raw = _old_raw(model, [row.row.pk for row in changed if row.row.content_hash != row.entry.content_hash])
        moved = _moved(kind, changed + [r for r in rows if r.was_offered and r.offered and not r.needs_write])
        for row in rows:
            if row.offered and not row.was_offered:
                self._add(kind, "added", row.row, self._entry(kind, row.entry.fields["name"], row))
            elif row.was_offered and not row.offered:
                self._add(kind, "removed", row.row, {**self._entry(kind, row.row.name, row), "reason": RESTRICTED})
        for row in changed:
            self._changed(kind, row, old_raw.get(row.row.pk), row.row.pk in moved)
        gone = sorted((r for cid, r in old.items() if r.active and cid not in incoming), key=self._catalog_order)
        for row in gone:
            entry = {"catalog_id": row.catalog_id, "name": row.name, "affected_instances": 0, "reason": REMOVED}
            if kind == "plans":
                entry["service"] = self.service_names.get(row.offering_id, "")
            self._add(kind, "removed", row, entry)

    def _catalog_order(self, row: Any) -> tuple[int, int]:
        offering_id = getattr(row, "offering_id", None)
        service = self.service_positions.get(offering_id, row.position) if offering_id else row.position
        return service, row.position

    def _entry(self, kind: str, name: str, row: _Row) -> dict[str, Any]:
        entry: dict[str, Any] = {"catalog_id": row.entry.catalog_id, "name": name, "affected_instances": 0}
        if kind == "plans":
            entry["service"] = self.service_names.get(row.offering.pk, "")
        return entry

    def _changed(self, kind: str, row: _Row, old_raw: Any, moved: bool) -> None:
        fields = changed_fields(old_raw, row.entry.fields["raw"]) if old_raw is not None else []
        if kind == "plans" and row.row.offering_id is not None and row.row.offering_id != row.offering.pk:
            fields.append("service")
        if moved:
            fields.append("position")
        if not fields:
            return  # rewritten only because a neighbour was added or removed (its position shifted)
        entry = {**self._entry(kind, row.entry.fields["name"], row), "fields": fields}
        if any(name.startswith("schemas.") for name in fields):
            entry["schemas"] = schema_changes(old_raw.get("schemas"), row.entry.fields["raw"].get("schemas"))
            row.row.schemas_changed = {"at": self.now.isoformat(), "sync": str(self.sync_id or ""),
                                       "schemas": entry["schemas"]}
        self._add(kind, "changed", row.row, entry)

    def _add(self, kind: str, change: str, row: Any, entry: dict[str, Any]) -> None:
        self.result[kind][change].append(entry)
        if row is not None and not row._state.adding:
            self.touched.append((kind, row, entry))

    def _count_instances(self, broker_id: Any) -> None:
        per_plan = hooks.instance_counts(broker_id)
        per_offering: dict[Any, int] = defaultdict(int)
        for plan in self.old_plans.values():
            per_offering[plan.offering_id] += per_plan.get(plan.pk, 0)
        for kind, row, entry in self.touched:
            entry["affected_instances"] = per_plan.get(row.pk, 0) if kind == "plans" else per_offering[row.pk]


def _old_raw(model: type[Model], pks: list[Any]) -> dict[Any, Any]:
    found: dict[Any, Any] = {}
    for start in range(0, len(pks), BATCH):
        found.update(model.objects.filter(pk__in=pks[start : start + BATCH]).values_list("pk", "raw"))
    return found


def _moved(kind: str, rows: list[_Row]) -> set[Any]:
    """Rows whose order among the rows offered before and after changed (a shift caused by an item added or
    removed elsewhere is not a move). Plans are ordered within their service."""
    groups: dict[Any, list[_Row]] = defaultdict(list)
    for row in rows:
        same_service = kind == "services" or row.row.offering_id == row.offering.pk
        if same_service:
            groups[row.offering.pk if kind == "plans" else None].append(row)
    moved: set[Any] = set()
    for group in groups.values():
        before = sorted(group, key=lambda r: r.row.position)
        after = sorted(group, key=lambda r: r.entry.fields["position"])
        moved.update(a.row.pk for a, b in zip(before, after, strict=True) if a is not b)
    return moved


def _write(services: list[_Row], plans: list[_Row], old_offerings: dict[str, Any], old_plans: dict[str, Any],
           offerings: list[OfferingEntry], now: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind, rows, model, names in (("offerings", services, ServiceOffering, OFFERING_FIELDS),
                                     ("plans", plans, ServicePlan, PLAN_FIELDS)):
        new = [row.row for row in rows if not row.existing]
        changed = [row.row for row in rows if row.existing and row.needs_write]
        for row in rows:
            if row.needs_write:
                _assign(row, now)
        insert_rows(model, new)
        extra = ["offering", "schemas_changed"] if kind == "plans" else []
        model.objects.bulk_update(changed, [*names, *extra, "content_hash", "active", "restricted", "updated_at"],
                                  batch_size=BATCH)
        counts[f"{kind}_added"], counts[f"{kind}_changed"] = len(new), len(changed)
    incoming = ({e.catalog_id for e in offerings}, {p.catalog_id for e in offerings for p in e.plans})
    for kind, old, ids, model in (("offerings", old_offerings, incoming[0], ServiceOffering),
                                  ("plans", old_plans, incoming[1], ServicePlan)):
        gone = [row.pk for cid, row in old.items() if (row.active or row.restricted) and cid not in ids]
        for start in range(0, len(gone), BATCH):
            model.objects.filter(pk__in=gone[start : start + BATCH]).update(active=False, restricted=False,
                                                                            updated_at=now)
        counts[f"{kind}_deactivated"] = len(gone)
    return counts


def insert_rows(model: type[Model], objs: list[Any]) -> None:
    """INSERT `objs` (new rows, primary keys set). On Postgres one COPY: bulk_create's UNNEST arrays make psycopg
    escape every JSON value inside a text array in Python (a regex per value: most of a cold mirror's time, the
    plans' raw documents and schemas being ~16 MB); COPY sends each value once, escaped in C. Elsewhere
    bulk_create."""
    if not objs:
        return
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objs, batch_size=BATCH)
        return
    fields = [f for f in model._meta.concrete_fields if not f.generated]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    # JSON columns as JSON text encoded by orjson (Django's adapter runs the json module on every value); columns
    # whose Python value psycopg writes as it is (text, numbers, booleans, UUIDs, datetimes) without Django's
    # per-value preparation; anything else as Django prepares it.
    how = [_JSON if isinstance(f, JSONField) and f.encoder is None else _AS_IS if type(f) in _AS_IS_FIELDS
           else _DJANGO for f in fields]
    with connection.cursor() as cursor, cursor.cursor.copy(
        f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN"
    ) as copy:
        for obj in objs:
            row = []
            for f, kind in zip(fields, how, strict=True):
                value = f.pre_save(obj, True)
                row.append(value if kind is _AS_IS else _json_text(value) if kind is _JSON
                           else f.get_db_prep_save(value, connection))
            copy.write_row(row)
    for obj in objs:
        obj._state.adding, obj._state.db = False, connection.alias


def json_value(value: Any) -> Cast:
    """`value` for a JSONField in an UPDATE or INSERT, encoded by orjson rather than by Django's json.dumps (the
    catalog document is megabytes)."""
    return Cast(Value(_json_text(value)), output_field=JSONField())


_JSON, _AS_IS, _DJANGO = "json", "as is", "django"
# Exactly these classes (a subclass may convert its values, as an encrypted field would): ForeignKey columns hold
# the target's primary key (UUID or integer) and are written as they are too.
_AS_IS_FIELDS = (models.CharField, models.TextField, models.BooleanField, models.PositiveIntegerField,
                 models.IntegerField, models.UUIDField, models.DateTimeField, models.ForeignKey)


def _json_text(value: Any) -> str | None:
    # None is SQL NULL, as Django stores None in a JSONField.
    return None if value is None else json_bytes(value).decode()


def _assign(row: _Row, now: Any) -> None:
    target = row.row
    for key, value in row.entry.fields.items():
        if key != "offering_catalog_id":
            setattr(target, key, value)
    if row.offering is not None:
        target.offering = row.offering
    target.content_hash, target.active, target.restricted = row.entry.content_hash, row.offered, not row.offered
    target.updated_at = now


def describe_diff(diff: dict[str, Any]) -> str:
    """One line for the audit log and the broker page: "1 service added; 2 plans removed (3 instances
    affected); 1 plan changed", or "nothing offered changed"."""
    parts = []
    for change in ("added", "removed", "changed"):
        for kind, one in (("services", "service"), ("plans", "plan")):
            entries = diff.get(kind, {}).get(change, [])
            if not entries:
                continue
            text = f"{len(entries)} {one if len(entries) == 1 else kind} {change}"
            affected = sum(entry.get("affected_instances", 0) for entry in entries)
            if affected and change != "added":
                text += f" ({affected} instance{'s' if affected != 1 else ''} affected)"
            parts.append(text)
    return "; ".join(parts) or "nothing offered changed"
