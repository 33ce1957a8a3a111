"""Telemetry: health and readiness, Prometheus metrics, structured logs (what operators and orchestrators read).

The bottom layer, like catalog_portal: it imports no domain app. Domain apps count into it (`telemetry.counters`)
and name their own gauges in `settings.METRICS_COLLECTORS`.
"""
