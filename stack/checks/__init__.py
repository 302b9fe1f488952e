"""Is it OK? Readiness, probes, the doctor, container healthchecks and the overview."""
