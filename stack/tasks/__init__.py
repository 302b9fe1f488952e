"""Tasks of the reference stack: the seeds' workloads and the diagnostics tasks."""
