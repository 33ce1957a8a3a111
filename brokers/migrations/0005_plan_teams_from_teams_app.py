"""ServicePlan.teams points at teams.Team (the model moved from catalog_portal; same table, so state only)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("brokers", "0004_store_cache_revision_and_plan_index"),
        ("teams", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="serviceplan",
                    name="teams",
                    field=models.ManyToManyField(blank=True, help_text="With visibility 'teams': the teams that see this plan.", related_name="visible_plans", to="teams.team"),
                ),
            ],
            database_operations=[],
        ),
    ]
