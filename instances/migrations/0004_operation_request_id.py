import json

import telemetry.logs
from django.db import migrations, models
from django.db.models import Count


def count_finished_operations(apps, schema_editor):
    """Start portal_operations_finished at what the table already holds (afterwards the engine counts)."""
    Operation = apps.get_model("instances", "Operation")
    MetricSample = apps.get_model("telemetry", "MetricSample")
    rows = Operation.objects.filter(state__in=["succeeded", "failed"]).values("type", "state").annotate(n=Count("pk"))
    MetricSample.objects.bulk_create([
        MetricSample(name="portal_operations_finished", shard=0, value=row["n"],
                     labels=json.dumps({"state": row["state"], "type": row["type"]}, sort_keys=True,
                                       separators=(",", ":")))
        for row in rows
    ])


class Migration(migrations.Migration):

    dependencies = [
        ('instances', '0003_operationcall_conformance_fields'),
        ('telemetry', '0001_metric_sample'),
    ]

    operations = [
        migrations.AddField(
            model_name='operation',
            name='request_id',
            field=models.CharField(blank=True, default=telemetry.logs.current_request_id, editable=False, max_length=100),
        ),
        migrations.RunPython(count_finished_operations, migrations.RunPython.noop),
    ]
