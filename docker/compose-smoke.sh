#!/usr/bin/env bash
# compose-smoke.sh: the containerised stack, end to end, on the local Docker engine.
#
#   1. builds the images offline (docker/build-images.sh; --no-build skips it)
#   2. writes a throw-away env file with random secrets (nothing baked into an image)
#   3. `docker-compose up -d` under its own project name, on free host ports, and waits
#      until every service reports healthy (preflight: exited 0)
#   4. from INSIDE the api container: POST /tasks without the key -> 401; with it -> 202;
#      /task-status and /metrics without the key -> 401; polls /task-status (with it) until
#      `success`; Flower's pages and its /metrics without credentials -> 401; Prometheus
#      scrapes both the API (bearer key) and Flower (basic auth): both targets up; the
#      alert rules are loaded; Prometheus keeps the credentials in 0600 files, not its env
#   5. takes everything down (containers, network, volumes), also on failure
# Exit 0 on success; on failure the services' last log lines are printed.
#
# Usage: docker/compose-smoke.sh [--no-build] [--keep]
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-python3}"
HEALTHY_TIMEOUT_S="${SMOKE_HEALTHY_TIMEOUT_S:-240}"
BUILD=1
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "compose-smoke: $*" >&2; }
started=$(date +%s)
command -v docker-compose >/dev/null || { log "docker-compose missing: apt-get install -y docker-compose"; exit 1; }

if [ "$BUILD" = 1 ]; then
    "$HERE/build-images.sh"
fi

export COMPOSE_PROJECT_NAME="celery-stack-smoke-$$"
export STACK_COMPOSE_REDIS_IMAGE="${STACK_COMPOSE_REDIS_IMAGE:-celery-stack/redis:7-compose}"
export STACK_PROMETHEUS_IMAGE="${STACK_PROMETHEUS_IMAGE:-celery-stack/prometheus:local}"
read -r API_PORT FLOWER_PORT PROMETHEUS_PORT < <("$PYTHON" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)
export API_PORT FLOWER_PORT PROMETHEUS_PORT

ENV_FILE="$(mktemp)"
secret() { "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))'; }
cat >"$ENV_FILE" <<EOF
STACK_REDIS_PASSWORD=$(secret)
STACK_API_KEY=$(secret)
STACK_FLOWER_BASIC_AUTH=ops:$(secret)
STACK_FLOWER_COOKIE_SECRET=$(secret)
EOF
export STACK_ENV_FILE="$ENV_FILE"
compose() { docker-compose -f "$HERE/compose.yml" --env-file "$ENV_FILE" "$@"; }

cleanup() {
    status=$?
    if [ "$status" != 0 ]; then
        log "FAILED: the services' last log lines:"
        compose logs --no-color --tail 40 >&2 || true
    fi
    if [ "$KEEP" = 0 ]; then
        compose down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1 || true
    else
        log "kept running: project $COMPOSE_PROJECT_NAME (docker-compose -p $COMPOSE_PROJECT_NAME down -v)"
    fi
    rm -f "$ENV_FILE"
    exit "$status"
}
trap cleanup EXIT

log "up (project $COMPOSE_PROJECT_NAME, API on 127.0.0.1:$API_PORT) ..."
up_at=$(date +%s)
compose up -d >/dev/null 2>&1 || { compose up -d; exit 1; }

# --- wait until every service is healthy (the one-shot preflight: exited 0) ------------
deadline=$(( $(date +%s) + HEALTHY_TIMEOUT_S ))
while :; do
    pending=""
    for service in redis preflight api worker beat flower prometheus; do
        ids="$(compose ps -q "$service")"
        [ -n "$ids" ] || { pending="$pending $service(not created)"; continue; }
        for id in $ids; do  # the worker has replicas (STACK_WORKER_REPLICAS)
            state="$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}} {{.State.ExitCode}}' "$id")"
            case "$service:$state" in
                preflight:exited*" 0") ;;
                preflight:exited*) log "preflight refused to start the stack"; exit 1 ;;
                *:"running healthy "*) ;;
                *) pending="$pending $service($state)" ;;
            esac
        done
    done
    [ -z "$pending" ] && break
    [ "$(date +%s)" -lt "$deadline" ] || { log "not healthy within ${HEALTHY_TIMEOUT_S} s:$pending"; exit 1; }
    sleep 2
done
log "every service healthy after $(( $(date +%s) - up_at )) s"
workers="$(compose ps -q worker | wc -l)"
names="$(compose ps -q worker | xargs docker inspect -f '{{.Config.Hostname}}' | sort -u | wc -l)"
[ "$workers" -ge 2 ] && [ "$names" -eq "$workers" ] ||
    { log "expected >= 2 worker replicas with distinct node names, got $workers ($names names)"; exit 1; }
log "$workers worker replicas, each its own node (worker@<container hostname>)"

# --- a task through the API, from inside the api container ------------------------------
compose exec -T api python - <<'EOF'
import os
import time

import httpx

api = "http://127.0.0.1:8001"
key = os.environ["STACK_API_KEY"]
body = {"name": "diagnostics.echo", "args": ["from-compose"]}

assert httpx.post(f"{api}/tasks", json=body).status_code == 401, "POST /tasks without the key"
accepted = httpx.post(f"{api}/tasks", json=body, headers={"X-API-Key": key})
assert accepted.status_code == 202, accepted.text
status_url = api + accepted.json()["status_url"]
assert httpx.get(status_url).status_code == 401, "task data without the key"
assert httpx.get(f"{api}/metrics").status_code == 401, "API metrics without the key"
keyed = {"Authorization": f"Bearer {key}"}  # the header Prometheus sends
deadline = time.monotonic() + 60
while (status := httpx.get(status_url, headers=keyed).json())["status"] != "success":
    assert status["status"] in ("pending", "processing"), status
    assert time.monotonic() < deadline, f"task not done in 60 s: {status}"
    time.sleep(0.5)
assert status["result"] == "from-compose", status
print(f"compose-smoke: task {status['task_id']} succeeded: {status['result']!r}", flush=True)

assert httpx.get("http://flower:5555/").status_code == 401, "Flower without credentials"
user, _, password = os.environ["STACK_FLOWER_BASIC_AUTH"].partition(":")
assert httpx.get("http://flower:5555/", auth=(user, password)).status_code == 200
assert httpx.get("http://flower:5555/metrics").status_code == 401, "Flower metrics, no auth"
assert httpx.get("http://flower:5555/metrics", auth=(user, password)).status_code == 200

succeeded = 'celery_stack_tasks_succeeded_total{queue="default",task="diagnostics.echo"} 1.0'
deadline = time.monotonic() + 10  # a pool child writes its counts within 0.5 s
while succeeded not in httpx.get(f"{api}/metrics", headers=keyed).text:
    assert time.monotonic() < deadline, "the task's success never reached /metrics"
    time.sleep(0.2)

prometheus = "http://prometheus:9090/api/v1"
rules = httpx.get(f"{prometheus}/rules").json()
names = {r["name"] for group in rules["data"]["groups"] for r in group["rules"]}
assert "CeleryStackWorkerDown" in names, names
deadline = time.monotonic() + 60
while True:
    targets = httpx.get(f"{prometheus}/targets").json()["data"]["activeTargets"]
    health = {t["labels"]["job"]: t["health"] for t in targets}
    if health.get("celery-stack") == health.get("flower") == "up":
        break
    assert time.monotonic() < deadline, f"Prometheus targets not up in 60 s: {health}"
    time.sleep(1)
print(f"compose-smoke: Prometheus scrapes {sorted(health)}: {health}", flush=True)
EOF

# --- Prometheus: its secrets in 0600 files on a tmpfs, none in its process environment ---
compose exec -T prometheus sh -c '
    ! tr "\0" "\n" </proc/1/environ | grep -q "^STACK_" &&
    [ "$(stat -c %a /run/prometheus/api-key /run/prometheus/flower-password | sort -u)" = 600 ]' \
    || { log "Prometheus has a secret in its environment, or a secret file not 0600"; exit 1; }
log "Prometheus reads its credentials from 0600 files, none in its environment"

log "passed in $(( $(date +%s) - started )) s"
