#!/usr/bin/env bash
# build-images.sh: build every image the compose stack needs, OFFLINE from any registry.
#
# Why: this machine's Docker engine cannot pull (no registry), and HTTPS from inside a
# container fails certificate checks. So nothing is pulled and nothing is downloaded
# inside a build:
#   1. base       Debian bookworm (python3 + venv) by debootstrap on the host, `docker import`ed
#                 (cached: skipped when the tag exists; --force rebuilds)
#   2. wheelhouse `pip wheel` of the project and every dependency, on the host
#   3. app        docker/Dockerfile FROM the base, installed from the wheelhouse only
#   4. redis      docker/build-redis-image.sh (the host's redis-server) + redis-cli for the
#                 healthcheck
#   5. prometheus Debian's prometheus and busybox-static packages (`apt-get download`,
#                 unpacked on the host), `docker import`ed; --no-prometheus skips it
# Where a registry answers, set STACK_BASE_IMAGE=python:3.11-slim-bookworm (and the
# REDIS/PROMETHEUS image variables of docker/compose.yml) and skip this script's imports.
#
# Usage:  docker/build-images.sh [--force] [--no-prometheus]
# Env:    PYTHON (host interpreter with pip; default python3), STACK_BASE_IMAGE,
#         STACK_APP_IMAGE, STACK_COMPOSE_REDIS_IMAGE, STACK_PROMETHEUS_IMAGE, STACK_TARGET_PYTHON,
#         DEBIAN_MIRROR
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
BUILD="$HERE/.build"
PYTHON="${PYTHON:-python3}"
TARGET_PYTHON="${STACK_TARGET_PYTHON:-3.11}"  # the base image's Python (bookworm: 3.11)
BASE_IMAGE="${STACK_BASE_IMAGE:-celery-stack/python:bookworm}"
APP_IMAGE="${STACK_APP_IMAGE:-celery-stack/app:local}"
REDIS_IMAGE="${STACK_COMPOSE_REDIS_IMAGE:-celery-stack/redis:7-compose}"
PROMETHEUS_IMAGE="${STACK_PROMETHEUS_IMAGE:-celery-stack/prometheus:local}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
FORCE=0
PROMETHEUS=1
while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1 ;;
        --no-prometheus) PROMETHEUS=0 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "build-images: $*" >&2; }
have_image() { [ "$FORCE" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }
started=$(date +%s)

docker info >/dev/null 2>&1 || { log "the Docker engine does not answer: start dockerd"; exit 1; }
mkdir -p "$BUILD"

# --- 1. base image -------------------------------------------------------------------
if have_image "$BASE_IMAGE"; then
    log "base $BASE_IMAGE present (cached)"
elif [[ "$BASE_IMAGE" == celery-stack/* ]]; then
    command -v debootstrap >/dev/null || { log "debootstrap missing: apt-get install debootstrap"; exit 1; }
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap bookworm into $rootfs (about 40 s) ..."
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$DEBIAN_MIRROR" \
        >"$BUILD/debootstrap.log" 2>&1 || { log "debootstrap failed: see $BUILD/debootstrap.log"; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
    log "base $BASE_IMAGE imported"
else
    log "base $BASE_IMAGE is not ours to build: it must be present (docker pull it where a registry answers)"
    docker image inspect "$BASE_IMAGE" >/dev/null
fi

# --- 2. wheelhouse -------------------------------------------------------------------
WHEELS="$BUILD/wheelhouse"
rm -f "$WHEELS"/celery_stack-*.whl  # the project itself is always rebuilt
log "pip wheel into $WHEELS ..."
# The project as a wheel, then its dependencies as binary wheels for the IMAGE's Python
# (bookworm: 3.11.2, whose markers differ from a newer host's: redis needs async-timeout
# below 3.11.3), so the host's own interpreter version does not decide what is installed.
{
    "$PYTHON" -m pip wheel --no-deps --wheel-dir "$WHEELS" "$ROOT" &&
    "$PYTHON" -m pip download --dest "$WHEELS" --only-binary=:all: \
        --python-version "$TARGET_PYTHON" --implementation cp --abi "cp${TARGET_PYTHON//./}" \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform "manylinux_2_28_x86_64" "$WHEELS"/celery_stack-*.whl
} >"$BUILD/pip-wheel.log" 2>&1 || { log "pip wheel failed: see $BUILD/pip-wheel.log"; exit 1; }
# pip evaluates markers for the host's interpreter only: let the image's own pip resolve
# (offline, --network none) and fetch on the host whatever it still misses.
for _ in 1 2 3 4 5; do
    missing="$(docker run --rm --network none -v "$WHEELS:/w:ro" "$BASE_IMAGE" sh -c \
        'python3 -m venv /tmp/v >/dev/null && /tmp/v/bin/pip install --quiet --dry-run --no-index --find-links /w celery-stack 2>&1' \
        | sed -n 's/.*No matching distribution found for \(.*\)$/\1/p' | head -n 1 || true)"
    [ -z "$missing" ] && break
    requirement="${missing%%;*}"
    log "the image's Python also needs $requirement: fetching it on the host"
    "$PYTHON" -m pip download --quiet --dest "$WHEELS" --only-binary=:all: "$requirement" \
        >>"$BUILD/pip-wheel.log" 2>&1 || { log "pip download $requirement failed"; exit 1; }
done

# --- 3. app image --------------------------------------------------------------------
log "app image $APP_IMAGE ..."
docker build --quiet --build-arg "BASE_IMAGE=$BASE_IMAGE" -f "$HERE/Dockerfile" -t "$APP_IMAGE" \
    "$BUILD" >/dev/null

# --- 4. redis image (with redis-cli for its healthcheck) ------------------------------
if have_image "$REDIS_IMAGE"; then
    log "redis $REDIS_IMAGE present (cached)"
elif [[ "$REDIS_IMAGE" == celery-stack/* ]]; then
    server_image="$(STACK_REDIS_IMAGE= "$HERE/build-redis-image.sh" | tail -n 1)"
    cli="$(command -v redis-cli)" || { log "redis-cli missing: apt-get install redis-tools"; exit 1; }
    ctx="$BUILD/redis"
    mkdir -p "$ctx"
    cp "$(readlink -f "$cli")" "$ctx/redis-cli"
    printf 'FROM %s\nCOPY redis-cli /usr/local/bin/redis-cli\n' "$server_image" >"$ctx/Dockerfile"
    docker build --quiet -t "$REDIS_IMAGE" "$ctx" >/dev/null
    log "redis $REDIS_IMAGE built from $server_image"
fi

# --- 5. prometheus image ------------------------------------------------------------
if [ "$PROMETHEUS" = 1 ]; then
    if have_image "$PROMETHEUS_IMAGE"; then
        log "prometheus $PROMETHEUS_IMAGE present (cached)"
    elif [[ "$PROMETHEUS_IMAGE" == celery-stack/* ]]; then
        debs="$BUILD/debs"
        rootfs="$BUILD/prometheus-root"
        rm -rf "$debs" "$rootfs"
        mkdir -p "$debs" "$rootfs/bin" "$rootfs/etc/prometheus" "$rootfs/prometheus" "$rootfs/tmp"
        download() { (cd "$debs" && apt-get download prometheus busybox-static) >>"$BUILD/apt-download.log" 2>&1; }
        download || { apt-get update -qq >>"$BUILD/apt-download.log" 2>&1; download; } \
            || { log "apt-get download failed: see $BUILD/apt-download.log"; exit 1; }
        for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$debs/x"; done
        cp "$debs/x/usr/bin/prometheus" "$debs/x/bin/busybox" "$rootfs/bin/"
        # Debian links its Go build against libc: the loader and every library ldd names.
        ldd "$debs/x/usr/bin/prometheus" | grep -oE '/[^ ]+' | sort -u | while read -r lib; do
            mkdir -p "$rootfs$(dirname "$lib")"
            cp -L "$lib" "$rootfs$lib"
        done
        ln -s busybox "$rootfs/bin/wget"
        ln -s busybox "$rootfs/bin/sh"
        chmod 1777 "$rootfs/tmp"
        chown -R 65534:65534 "$rootfs/prometheus"
        tar -C "$rootfs" -c . | docker import \
            --change 'USER 65534' \
            --change 'WORKDIR /prometheus' \
            --change 'ENTRYPOINT ["/bin/prometheus"]' \
            --change 'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]' \
            - "$PROMETHEUS_IMAGE" >/dev/null
        rm -rf "$debs" "$rootfs"
        log "prometheus $PROMETHEUS_IMAGE imported"
    fi
fi

log "done in $(( $(date +%s) - started )) s: base=$BASE_IMAGE app=$APP_IMAGE redis=$REDIS_IMAGE prometheus=$PROMETHEUS_IMAGE"
