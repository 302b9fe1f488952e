"""The Kubernetes manifests (deploy/k8s): rendered by kustomize, valid against the API schemas.

Core resources are checked with kubernetes-validate (the Kubernetes OpenAPI schemas
shipped on PyPI); KEDA's ScaledObject and TriggerAuthentication are CRDs it has no
schema for, so their shape is checked here, and their triggers against the very
Redis lists stack/queues.py makes. Rendering needs a kustomize (`kustomize`, or
`kubectl kustomize`); without one those tests skip naming why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from stack.queues import PRIORITY_SEPARATOR, PRIORITY_STEPS, QUEUES

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "production")
K8S_VERSION = "1.30.0"  # the oldest Kubernetes the manifests are written for
APP_SERVICES = ("api", "worker", "beat", "flower")
SECRET = "celery-stack-secrets"


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render(directory: Path) -> list[dict[str, Any]]:
    command = kustomize_command()
    if command is None:
        pytest.skip("no kustomize renderer: install kustomize or kubectl to render the overlays")
    out = subprocess.run(
        [*command, str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def base_resources() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((K8S / "base").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def containers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        c["name"]: c
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
        for c in d["spec"]["template"]["spec"]["containers"]
    }


def validate_core(doc: dict[str, Any]) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        return  # a CRD: checked by the KEDA tests below
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_every_base_resource_is_valid_against_the_kubernetes_schemas():
    docs = base_resources()
    assert {d["kind"] for d in docs} >= {"Deployment", "StatefulSet", "Service", "ConfigMap"}
    for doc in docs:
        validate_core(doc)


def keda_lists() -> set[str]:
    """Every Redis list the stack's queues use: one per queue and priority step (kombu)."""
    return {
        queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}"
        for queue in QUEUES
        for step in PRIORITY_STEPS
    }


def test_the_worker_scaler_reads_every_priority_list_and_scales_on_their_sum():
    scaler = find(base_resources(), "ScaledObject", "worker")
    spec = scaler["spec"]
    triggers = spec["triggers"]
    assert spec["scaleTargetRef"]["name"] == "worker"
    assert {t["type"] for t in triggers} == {"redis"}
    assert {t["metadata"]["listName"] for t in triggers} == keda_lists()
    names = [t["name"] for t in triggers]
    formula = spec["advanced"]["scalingModifiers"]["formula"]
    assert sorted(formula.split(" + ")) == sorted(names), "the formula must add every list"
    assert all(t["authenticationRef"]["name"] == "celery-stack-redis" for t in triggers)
    auth = find(base_resources(), "TriggerAuthentication", "celery-stack-redis")
    assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {"address", "password"}


def test_beat_runs_one_replica_that_is_never_doubled_by_a_rollout():
    beat = find(base_resources(), "Deployment", "beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    assert (
        "stack.beat:LockedScheduler" in beat["spec"]["template"]["spec"]["containers"][0]["command"]
    )


def test_workers_get_unique_node_names_the_healthcheck_pings():
    [worker] = find(base_resources(), "Deployment", "worker")["spec"]["template"]["spec"][
        "containers"
    ]
    command = worker["command"]
    assert command[command.index("--hostname") + 1] == "worker@%h"  # the pod name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_renders_to_resources_valid_against_the_kubernetes_schemas(overlay):
    docs = render(K8S / "overlays" / overlay)
    for doc in docs:
        validate_core(doc)
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    assert len(namespaces) == 1 and None not in namespaces, namespaces
    assert {c for c in containers(docs)} == {*APP_SERVICES, "redis"}


def secret_keys_used(docs: list[dict[str, Any]]) -> set[str]:
    keys = {
        env["valueFrom"]["secretKeyRef"]["key"]
        for c in containers(docs).values()
        for env in c.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    auth = find(docs, "TriggerAuthentication", "celery-stack-redis")
    return keys | {ref["key"] for ref in auth["spec"]["secretTargetRef"]}


def test_the_dev_overlay_generates_every_secret_key_the_services_read():
    docs = render(K8S / "overlays" / "dev")
    secret = find(docs, "Secret", SECRET)
    assert secret_keys_used(docs) <= set(secret["data"]), "a key the pods read is not generated"


def test_production_has_no_committed_secret_and_limits_and_probes_on_every_container():
    docs = render(K8S / "overlays" / "production")
    assert not [d for d in docs if d["kind"] == "Secret"], "production secrets are made out of band"
    for name, container in containers(docs).items():
        assert container["resources"]["limits"], name
        assert "livenessProbe" in container, name
        if name in APP_SERVICES:
            probe = container["livenessProbe"]["exec"]["command"]
            assert probe == ["celery-stack", "health", name], name


def test_the_external_redis_component_drops_the_statefulset_and_repoints_redis_url(tmp_path):
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(K8S / "overlays" / "production", overlay)],
                "components": [os.path.relpath(K8S / "components" / "external-redis", overlay)],
            }
        )
    )
    docs = render(overlay)
    assert not [d for d in docs if d["metadata"]["name"] == "redis"]
    config = find(docs, "ConfigMap", "celery-stack-config")
    assert config["data"]["REDIS_URL"] != "redis://redis:6379/0"
    for doc in docs:
        validate_core(doc)
