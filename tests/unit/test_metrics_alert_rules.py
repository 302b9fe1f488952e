import re
from pathlib import Path

import yaml

from stack.metrics.recorder import EVENTS, HISTOGRAMS, NAMESPACE

PROMETHEUS = Path(__file__).resolve().parents[2] / "docker" / "prometheus"
GAUGES = ("queue_depth", "unacked_messages", "workers_up", "dead_letters", "redis_up")


def exposed_names() -> set[str]:
    names = {f"{NAMESPACE}_tasks_{event}_total" for event in EVENTS}
    names |= {f"{NAMESPACE}_{gauge}" for gauge in GAUGES}
    for metric, _, _ in HISTOGRAMS.values():
        names |= {f"{NAMESPACE}_{metric}_{suffix}" for suffix in ("bucket", "sum", "count")}
    return names


def rules() -> list[dict]:
    document = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_alert_rules_cover_the_issues_four_alerts():
    alerts = {rule["alert"] for rule in rules()}
    assert {
        "CeleryStackTaskFailureRatioHigh",
        "CeleryStackQueueDepthHigh",
        "CeleryStackWorkerDown",
        "CeleryStackDeadLettersGrowing",
    } <= alerts


def test_every_metric_an_alert_reads_is_one_the_exporter_exposes():
    for rule in rules():
        for name in re.findall(rf"{NAMESPACE}_[a-z_]+", rule["expr"]):
            assert name in exposed_names(), f"{rule['alert']} reads unknown metric {name}"


def test_prometheus_loads_the_alert_rules_and_scrapes_the_api():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["celery-stack"]["static_configs"][0]["targets"] == ["api:8001"]
