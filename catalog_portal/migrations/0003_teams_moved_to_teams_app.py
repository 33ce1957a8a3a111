"""Teams, memberships and the audit log now belong to the teams app (teams/migrations/0001): state only, the rows
stay where they are."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("catalog_portal", "0002_teams"),
        ("brokers", "0005_plan_teams_from_teams_app"),
        ("teams", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="Membership"),
                migrations.DeleteModel(name="TeamNamespace"),
                migrations.DeleteModel(name="Team"),
                migrations.DeleteModel(name="AuditRecord"),
            ],
            database_operations=[],
        ),
    ]
