#!/usr/bin/env bash
# build-redis-image.sh: build a Redis container image OFFLINE, from the host's own
# redis-server binary, for machines whose Docker engine cannot pull `redis:7`.
#
# Why: the pytest harness (stack_redis) runs Redis in a testcontainers container
# when a Docker engine answers; without registry access there is no image to run.
# This script packs /usr/bin/redis-server (apt-get install redis-server) and the
# shared libraries `ldd` lists into a minimal root filesystem and `docker import`s
# it with a command (an imported image has none) and `--protected-mode no` (the
# published port is reached through the Docker bridge, not loopback).
#
# Usage:  docker/build-redis-image.sh [--force] [--tag TAG] [--binary PATH]
#   --force    rebuild even when the tag already exists (default: skip, idempotent)
#   --tag      image tag (default: celery-stack/redis:7-local, or $STACK_REDIS_IMAGE)
#   --binary   the redis-server to pack (default: redis-server on PATH)
# Prints the tag on stdout (last line); progress goes to stderr.
# Then:   STACK_REDIS_BACKEND=docker STACK_REDIS_IMAGE=celery-stack/redis:7-local pytest
set -euo pipefail

TAG="${STACK_REDIS_IMAGE:-celery-stack/redis:7-local}"
BINARY=""
FORCE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1 ;;
        --tag) TAG="$2"; shift ;;
        --binary) BINARY="$2"; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "build-redis-image: $*" >&2; }

command -v docker >/dev/null || { log "docker CLI not found: apt-get install docker.io"; exit 1; }
docker info >/dev/null 2>&1 || { log "the Docker engine does not answer: start dockerd"; exit 1; }

if [ "$FORCE" = 0 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
    log "$TAG already present (use --force to rebuild)"
    echo "$TAG"
    exit 0
fi

OLD_ID="$(docker image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)"
BINARY="${BINARY:-$(command -v redis-server || true)}"
[ -n "$BINARY" ] || { log "no redis-server binary: apt-get install redis-server"; exit 1; }
REAL="$(readlink -f "$BINARY")"  # Debian's redis-server is a symlink to redis-check-rdb

ROOT="$(mktemp -d)"
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT/usr/local/bin" "$ROOT/data" "$ROOT/tmp" "$ROOT/etc"
chmod 1777 "$ROOT/tmp"
# Copied under the name redis-server: Redis picks its mode from argv[0].
cp "$REAL" "$ROOT/usr/local/bin/redis-server"
# Every library ldd resolves (and the loader), at the same path, symlinks followed.
ldd "$REAL" | grep -oE '/[^ ]+' | sort -u | while read -r lib; do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
done
echo "root:x:0:0:root:/root:/bin/false" >"$ROOT/etc/passwd"
echo "root:x:0:" >"$ROOT/etc/group"

VERSION="$("$BINARY" --version | grep -oE 'v=[0-9.]+' | cut -d= -f2)"
log "packing redis-server $VERSION from $REAL into $TAG"
tar -C "$ROOT" -c . | docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'WORKDIR /data' \
    --change 'EXPOSE 6379' \
    --change 'CMD ["redis-server", "--protected-mode", "no"]' \
    --message "redis-server $VERSION packed from the host by celery-stack" \
    - "$TAG" >/dev/null

# Prove it: a container from the image answers PING on a published loopback port.
CID="$(docker run -d --rm -p 127.0.0.1::6379 "$TAG")"
PORT="$(docker port "$CID" 6379/tcp | head -1 | sed 's/.*://')"
REPLY=""
for _ in $(seq 50); do
    if { exec 3<>"/dev/tcp/127.0.0.1/$PORT"; } 2>/dev/null; then
        printf 'PING\r\n' >&3
        read -r -t 2 REPLY <&3 || true
        exec 3>&- 3<&-
        case "$REPLY" in +PONG*) break ;; esac
    fi
    sleep 0.1
done
docker rm -f "$CID" >/dev/null 2>&1 || true
case "$REPLY" in
    +PONG*) ;;
    *) docker rmi "$TAG" >/dev/null 2>&1 || true  # so that the next run does not skip it
       log "the image $TAG was built but its Redis does not answer PING (got: ${REPLY:-nothing})"
       exit 1 ;;
esac
# A --force rebuild leaves the previous image untagged: remove it.
NEW_ID="$(docker image inspect --format '{{.Id}}' "$TAG")"
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$NEW_ID" ]; then docker rmi "$OLD_ID" >/dev/null 2>&1 || true; fi
log "built $TAG (redis-server $VERSION), answers PING"
echo "$TAG"
