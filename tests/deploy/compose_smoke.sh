#!/usr/bin/env bash
# The compose stack for real (outside `make test`: it needs a Docker engine, root and a few minutes):
#   sudo tests/deploy/compose_smoke.sh
# 1. Docker engine: uses the running one (`docker info`); otherwise, as root, installs Debian's docker.io if
#    needed and starts a private dockerd (own data root, socket and exec root under $SMOKE_STATE) that it stops
#    again at the end. It runs with --iptables=false --bridge=none: compose's own project network (a Linux bridge
#    with Docker's embedded DNS, and the userland proxy for the published port) needs neither NAT rules nor
#    docker0, so the stack keeps its normal bridge networking; network_mode: host is NOT needed and would not do
#    (two replicas cannot both bind 8001 on one host network).
# 2. Base images: where no registry is reachable (checked with one `docker pull`), builds local stand-ins for
#    python:3.11-slim-bookworm and nginx with `debootstrap` (Debian bookworm, minbase; Debian's python3 +
#    python3-venv, resp. Debian's nginx) + `docker import`, from the Debian mirror apt uses. They are kept in the
#    private engine's data root, so later runs reuse them.
# 3. Builds the CPU image from wheelhouse/ (`make wheelhouse`, rebuilt from this checkout every run) with
#    BuildKit, and prints its size.
# 4. `docker compose up --wait` (replicas healthy, then the balancer), runs the `loadtest` profile against the
#    balancer (asserts zero errors from its JSON report), runs tests/deploy/check_results.py in a container of
#    the stack (streamed == whole-sequence run through the balancer), runs it again and SIGKILLs one replica
#    halfway through (every stream resumes on the other replica through the shared Redis, outputs identical),
#    then `compose down` and, if it started the engine, stops it: nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
STATE=${SMOKE_STATE:-/var/tmp/seqserve-smoke}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PROJECT=seqserve-smoke
COMPOSE_BIN=${COMPOSE_BIN:-$REPO/.venv/bin/docker-compose}
OUR_DOCKERD_PID=
say() { printf '\n== %s\n' "$*"; }

cleanup() {
    local status=$?
    set +e
    if [ -n "${COMPOSE_READY:-}" ]; then
        if [ "$status" != 0 ]; then
            say "failed (exit $status): the stack's last log lines"
            compose logs --no-color --tail 40
        fi
        say "compose down"
        compose --profile loadtest down --volumes --remove-orphans --timeout 20
    fi
    if [ -n "$OUR_DOCKERD_PID" ]; then
        say "stopping the dockerd this script started (pid $OUR_DOCKERD_PID)"
        kill "$OUR_DOCKERD_PID" && while kill -0 "$OUR_DOCKERD_PID" 2>/dev/null; do sleep 1; done
    fi
}
trap cleanup EXIT

compose() { "$COMPOSE_BIN" -p "$PROJECT" -f "$REPO/docker-compose.yml" "$@"; }

# A client that can build with BuildKit: `docker build` through the buildx plugin, or else Debian's docker 20.10
# client, which has BuildKit built in (DOCKER_BUILDKIT=1).
build_client() {
    if docker buildx version >/dev/null 2>&1; then echo docker; else echo /usr/bin/docker; fi
}

start_engine() {
    if docker info >/dev/null 2>&1; then
        echo "using the running Docker engine"
        return
    fi
    [ "$(id -u)" = 0 ] || { echo "no Docker engine running and not root: cannot start one" >&2; exit 1; }
    if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io debootstrap
    fi
    mkdir -p "$STATE"
    export DOCKER_HOST="unix://$STATE/docker.sock"
    dockerd --data-root "$STATE/root" --exec-root "$STATE/exec" --host "$DOCKER_HOST" \
        --pidfile "$STATE/dockerd.pid" --iptables=false --bridge=none >"$STATE/dockerd.log" 2>&1 &
    OUR_DOCKERD_PID=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done  # no event to wait on here
    docker info >/dev/null || { tail -20 "$STATE/dockerd.log"; exit 1; }
    echo "started dockerd (pid $OUR_DOCKERD_PID, data root $STATE/root)"
}

# debootstrap a minimal bookworm with the given packages and import it as an image.
local_base() {
    local tag=$1 packages=$2 change=$3 rootfs="$STATE/rootfs-${1//[:\/]/-}"
    if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag: already built"; return; fi
    rm -rf "$rootfs"
    nice debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log"; exit 1; }
    tar -C "$rootfs" --exclude='./var/cache/apt/archives/*.deb' --exclude='./var/lib/apt/lists/*' \
        --exclude='./usr/share/doc/*' --exclude='./usr/share/man/*' -c . | docker import --change "$change" - "$tag"
    rm -rf "$rootfs"
    echo "$tag: built with debootstrap"
}

base_images() {
    if timeout 30 docker pull -q python:3.11-slim-bookworm >/dev/null 2>&1 \
        && timeout 30 docker pull -q nginx:1.27-bookworm >/dev/null 2>&1 \
        && timeout 30 docker pull -q redis:7-bookworm >/dev/null 2>&1; then
        PYTHON_IMAGE=python:3.11-slim-bookworm NGINX_IMAGE=nginx:1.27-bookworm REDIS_IMAGE=redis:7-bookworm
        return
    fi
    echo "no registry reachable: building the base images locally"
    PYTHON_IMAGE=seqserve-local/python:3.11-bookworm NGINX_IMAGE=seqserve-local/nginx:bookworm
    REDIS_IMAGE=seqserve-local/redis:bookworm
    local_base "$PYTHON_IMAGE" python3,python3-venv 'CMD ["python3"]'
    local_base "$NGINX_IMAGE" nginx 'CMD ["nginx", "-g", "daemon off;"]'
    local_base "$REDIS_IMAGE" redis-server,redis-tools 'CMD ["redis-server"]'
}

say "Docker engine"
start_engine
say "base images"
base_images
export PYTHON_IMAGE NGINX_IMAGE REDIS_IMAGE SEQSERVE_IMAGE=seqserve:cpu

say "CPU image from the wheelhouse"
# Rebuilt from this checkout every run, seqserve's wheel and its dependencies' (pip's cache keeps the downloads
# quick): a wheelhouse left over from an earlier checkout would put old code in the image, or miss a new dependency.
rm -rf wheelhouse
make wheelhouse
# --network host: BuildKit's RUN steps would otherwise need docker0, which --bridge=none leaves out (the build
# itself downloads nothing).
DOCKER_BUILDKIT=1 nice "$(build_client)" build --quiet --network host --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" \
    --build-arg REVISION="$(git rev-parse --short HEAD)" -t "$SEQSERVE_IMAGE" .
docker image ls "$SEQSERVE_IMAGE" --format 'image {{.Repository}}:{{.Tag}} size {{.Size}}'

say "stack up (replicas healthy, then the balancer)"
COMPOSE_READY=1
compose up --detach --no-build --wait --wait-timeout 300
compose ps --format 'table {{.Name}}\t{{.Status}}'

say "load test profile through the balancer"
OUT="$STATE/out" && rm -rf "$OUT" && mkdir -p "$OUT" && chmod 777 "$OUT"
LOADTEST_ARGS="--model vowels_lstm --streams 16 --chunk 10 --duration 15 --json /out/loadtest.json" \
    compose --profile loadtest run --rm --no-deps --volume "$OUT:/out" loadtest
python3 - "$OUT/loadtest.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
print(f"loadtest: {report['throughput_chunks_per_s']:.0f} chunks/s, p50 {report['p50_ms']:.2f} ms, "
      f"p99 {report['p99_ms']:.2f} ms, errors {report['errors']}")
sys.exit(1 if report["errors"] else 0)
EOF

say "results through the balancer equal whole-sequence runs"
compose --profile loadtest run --rm --no-deps --volume "$REPO/tests/deploy:/checks:ro" \
    --entrypoint python loadtest /checks/check_results.py --target balancer:8001 --streams 16

say "a replica killed under load: the streams resume on the other one with identical outputs"
rm -f "$OUT/check.in" "$OUT/check.log" && mkfifo "$OUT/check.in" && : >"$OUT/check.log"
compose --profile loadtest run --rm --no-deps -T --volume "$REPO/tests/deploy:/checks:ro" \
    --entrypoint python loadtest /checks/check_results.py --target balancer:8001 --streams 16 --pause-after 2 \
    <"$OUT/check.in" >"$OUT/check.log" 2>&1 &
check_pid=$!
exec 7>"$OUT/check.in"  # the check's stdin stays open until we say go
timeout 300 grep -m1 -q PAUSED <(tail -f "$OUT/check.log") || { cat "$OUT/check.log"; exit 1; }
victim=$(compose ps -q seqserve | sed -n 1p)  # (sed reads to the end: head could leave compose a broken pipe)
docker kill --signal KILL "$victim" >/dev/null && echo "killed replica ${victim:0:12} (SIGKILL)"
echo go >&7
exec 7>&-
wait "$check_pid" || { cat "$OUT/check.log"; exit 1; }
grep check_results "$OUT/check.log"
compose up --detach --no-build --wait --wait-timeout 300  # the replica back (restart: unless-stopped does it too)

say "smoke test passed"
