"""Metric counters kept in the database, so that what workers count is visible at every web's /metrics."""

from __future__ import annotations

from django.db import models


class MetricSample(models.Model):
    """One counter (or one histogram bucket, sum or count) for one label set, in one shard.

    Writers add to a row with an upsert in the transaction that records what they count; a scrape reads the
    whole table, which stays small: families x label sets x shards, never one row per event. Concurrent
    writers use different shards (by process and thread), so they rarely wait for each other's row lock.
    """

    name = models.CharField(max_length=100)
    labels = models.CharField(max_length=400, help_text="The label set, as sorted JSON.")
    shard = models.PositiveSmallIntegerField(default=0)
    value = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "labels", "shard"], name="metric_sample_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name}{self.labels} = {self.value}"
