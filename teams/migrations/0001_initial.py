"""Teams, memberships and the audit log move here from the catalog_portal app, keeping their rows.

Only Django's picture of the models moves (state); the tables stay `catalog_portal_*` until 0002 renames them. The
content types move too, so permissions given to groups and the admin's history follow the models.
"""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MOVED = ("team", "teamnamespace", "membership", "auditrecord")


def _move_content_types(apps, schema_editor, source, target):
    content_type = apps.get_model("contenttypes", "ContentType")
    rows = content_type.objects.using(schema_editor.connection.alias)
    for model in MOVED:
        if not rows.filter(app_label=target, model=model).exists():
            rows.filter(app_label=source, model=model).update(app_label=target)


def forwards(apps, schema_editor):
    _move_content_types(apps, schema_editor, "catalog_portal", "teams")


def backwards(apps, schema_editor):
    _move_content_types(apps, schema_editor, "teams", "catalog_portal")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("catalog_portal", "0002_teams"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditRecord",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        ("actor_name", models.CharField(blank=True, max_length=150)),
                        ("action", models.CharField(db_index=True, max_length=100)),
                        ("target_type", models.CharField(max_length=50)),
                        ("target_id", models.CharField(db_index=True, max_length=100)),
                        ("summary", models.TextField(blank=True)),
                        ("ip", models.GenericIPAddressField(blank=True, null=True)),
                        ("request_id", models.CharField(blank=True, max_length=100, null=True)),
                        ("actor", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
                    ],
                    options={"ordering": ["-at"], "db_table": "catalog_portal_auditrecord"},
                ),
                migrations.CreateModel(
                    name="Team",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("name", models.CharField(max_length=100, unique=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={"ordering": ["name"], "db_table": "catalog_portal_team"},
                ),
                migrations.CreateModel(
                    name="TeamNamespace",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("namespace", models.CharField(max_length=63, unique=True)),
                        ("team", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="namespaces", to="teams.team")),
                    ],
                    options={"ordering": ["namespace"], "db_table": "catalog_portal_teamnamespace"},
                ),
                migrations.CreateModel(
                    name="Membership",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("role", models.CharField(choices=[("viewer", "Viewer (read)"), ("developer", "Developer (provision, bind, reveal credentials)"), ("admin", "Team admin (also manages members)")], default="viewer", max_length=20)),
                        ("team", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="memberships", to="teams.team")),
                        ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="team_memberships", to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        "ordering": ["team__name", "user__username"],
                        "db_table": "catalog_portal_membership",
                        "constraints": [models.UniqueConstraint(fields=("team", "user"), name="membership_unique_user_in_team")],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(forwards, backwards),
    ]
