"""Prometheus metrics: the recorder (counts in Redis), the Celery signal hooks, the exporter."""
