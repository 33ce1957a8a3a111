"""The moved tables take the teams app's names (teams_team, ...); foreign keys to them follow the rename."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("teams", "0001_initial"),
        ("catalog_portal", "0003_teams_moved_to_teams_app"),
    ]

    operations = [
        migrations.AlterModelTable(name="auditrecord", table=None),
        migrations.AlterModelTable(name="team", table=None),
        migrations.AlterModelTable(name="teamnamespace", table=None),
        migrations.AlterModelTable(name="membership", table=None),
    ]
