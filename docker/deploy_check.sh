#!/usr/bin/env bash
# `make deploy-check`: the Docker deployment, proved end to end from a clean clone (docker/README.md,
# "make deploy-check"). This half prepares the engine and the images; docker/deploy_check.py (plain
# python3, standard library only) brings the stack up, drives it and checks it.
#
#   1. engine     the one that answers (DOCKER_HOST or /var/run/docker.sock), else a dockerd of its
#                 own (data root, exec root, socket and pid file under a scratch folder, stopped by
#                 its pid at the end); neither possible: prints why and exits 0 (SKIPPED)
#   2. bases      python:3.11-slim and postgres:15 where they can be pulled, else local stand-ins:
#                 a debootstrapped Debian bookworm (Python 3.11) imported as PYTHON_IMAGE and
#                 docker/postgres-standin built on it; both cached as tarballs keyed by their recipe
#   3. build      docker/Dockerfile from a temporary context (git's files + the .dockerignore
#                 allow-list), torch from the machine's local wheel when pip has one, the machine's
#                 CA bundle in a builder-only base when TLS needs it (never in the final image)
#   4. stack      docker/deploy_check.py: compose up, GraphQL runs, warehouse/MLflow/gate checks,
#                 restart, persistence, secrets, users, timings table
#   5. cleanup    always (trap): compose down -v, the images it built or loaded, its dockerd and
#                 data root; the base-image cache stays
#
# Environment (all optional):
#   DEPLOY_CHECK_CACHE           base-image cache (default /var/cache/stock_assets-deploy when
#                                writable, else ~/.cache/stock_assets-deploy)
#   DEPLOY_CHECK_TMP             parent of the scratch folder (default /var/tmp); keep it outside
#                                the repository (the build context)
#   DEPLOY_CHECK_REQUIRE_ENGINE  1: fail instead of skipping when no engine can be started
#   DEPLOY_CHECK_DEBIAN_MIRROR   debootstrap's mirror (default: the machine's apt source)
#   DEPLOY_CHECK_KEEP            1: on failure leave the stack and engine up for inspection
#   DEPLOY_CHECK_HELM_SCHEMA     the Helm chart's values.schema.json: validate docker/helm/values.yaml
#                                against it too (host python3 with PyYAML and jsonschema)
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T0=$(date +%s)
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
OFFICIAL_PYTHON=python:3.11-slim
OFFICIAL_POSTGRES=postgres:15
STANDIN_VERSION=1   # bump to invalidate every cached stand-in
TORCH_VERSION=$(sed -n 's/^ARG TORCH_VERSION=//p' "$REPO/docker/Dockerfile")

log() { printf '%s deploy-check: %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "FAILED: $*"; exit 1; }

skip() {
  if [ "${DEPLOY_CHECK_REQUIRE_ENGINE:-0}" = 1 ]; then die "no Docker engine: $*"; fi
  echo "======================================================================"
  echo "deploy-check: SKIPPED: no Docker engine can be started here: $*"
  echo "======================================================================"
  SKIPPED=1
  exit 0
}

SCRATCH=$(mktemp -d "${DEPLOY_CHECK_TMP:-/var/tmp}/stock_assets-deploy-XXXXXX")
case "$SCRATCH/" in "$REPO"/*) die "scratch folder $SCRATCH lies inside the repository (the build context)" ;; esac
TAG=$(basename "$SCRATCH" | sed 's/.*-//' | tr '[:upper:]' '[:lower:]' | tr -cd 'a-z0-9')
PROJECT=sa_check_$TAG
APP_IMAGE=stock_assets:check-$TAG
BUILDER_BASE=stock_assets-check/builder-base:$TAG
TIMINGS=$SCRATCH/timings
: > "$TIMINGS"

if [ -z "${DEPLOY_CHECK_CACHE:-}" ]; then
  if mkdir -p /var/cache/stock_assets-deploy 2>/dev/null && [ -w /var/cache/stock_assets-deploy ]; then
    DEPLOY_CHECK_CACHE=/var/cache/stock_assets-deploy
  else
    DEPLOY_CHECK_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/stock_assets-deploy
  fi
fi
CACHE=$DEPLOY_CHECK_CACHE
mkdir -p "$CACHE"

OWN_ENGINE=0
DOCKERD_PID=
CREATED_IMAGES=()   # removed at the end (on an engine of our own the data root goes anyway)
STACK_STARTED=0
SKIPPED=0

phase_start() { PHASE=$1; PHASE_T0=$(date +%s); log "$2"; }
phase_end() {
  local s=$(($(date +%s) - PHASE_T0))
  echo "$PHASE $s" >> "$TIMINGS"
  log "  ${2:-done} (${s} s)"
}

compose() {
  "${COMPOSE[@]}" -p "$PROJECT" -f "$REPO/docker/docker-compose.yml" --env-file "$SCRATCH/stack.env" "$@"
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ "$rc" != 0 ] && [ "${DEPLOY_CHECK_KEEP:-0}" = 1 ]; then
    log "DEPLOY_CHECK_KEEP=1: leaving everything up: DOCKER_HOST=${DOCKER_HOST:-} project $PROJECT, scratch $SCRATCH"
    exit "$rc"
  fi
  [ "$SKIPPED" = 1 ] || log "cleanup: removing the stack, its volumes and images${DOCKERD_PID:+, the engine and its data root}"
  if [ "$STACK_STARTED" = 1 ]; then
    # Run containers the launcher left (a failed check may leave one running) hold the network.
    docker ps -aq --filter "network=${PROJECT}_default" | xargs -r docker rm -f >/dev/null 2>&1
    compose down -v --remove-orphans -t 20 >"$SCRATCH/down.log" 2>&1 || tail -5 "$SCRATCH/down.log"
  fi
  if [ "${#CREATED_IMAGES[@]}" -gt 0 ] && [ "$OWN_ENGINE" = 0 ]; then
    docker image rm -f "${CREATED_IMAGES[@]}" >/dev/null 2>&1
  fi
  if [ -n "$DOCKERD_PID" ]; then
    kill -TERM "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$DOCKERD_PID" 2>/dev/null && kill -KILL "$DOCKERD_PID" 2>/dev/null
    # Mounts an unclean stop may leave under the scratch folder (overlay, shm, netns): deepest first.
    awk -v d="$SCRATCH/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  fi
  rm -rf "$SCRATCH"
  local total=$(($(date +%s) - T0))
  if [ "$SKIPPED" = 1 ]; then
    :
  elif [ "$rc" = 0 ]; then
    log "PASSED in $((total / 60)) min $((total % 60)) s (everything it created is removed; base-image cache: $CACHE)"
  else
    log "FAILED after $((total / 60)) min $((total % 60)) s (exit $rc)"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------------
# 1. The engine
# ------------------------------------------------------------------------------------------------
command -v docker >/dev/null || skip "the docker client is not installed (Debian: apt-get install docker.io)"
if docker info >/dev/null 2>&1; then
  log "engine: the one that answers (${DOCKER_HOST:-unix:///var/run/docker.sock})"
else
  command -v dockerd >/dev/null || skip "none answers and dockerd is not installed (Debian: apt-get install docker.io)"
  [ "$(id -u)" = 0 ] || skip "none answers and starting dockerd needs root"
  ENGINE=$SCRATCH/engine
  mkdir -p "$ENGINE"
  log "engine: none answers; starting dockerd (data root $ENGINE/data, socket $ENGINE/docker.sock)"
  # nice: the whole engine (builds, the stack, the runs) yields to other work on the machine.
  setsid nice -n 10 dockerd --data-root "$ENGINE/data" --exec-root "$ENGINE/exec" \
    --pidfile "$ENGINE/dockerd.pid" --storage-driver overlay2 --iptables=false --bridge=none \
    -H "unix://$ENGINE/docker.sock" >"$ENGINE/dockerd.log" 2>&1 </dev/null &
  DOCKERD_PID=$!
  OWN_ENGINE=1
  export DOCKER_HOST=unix://$ENGINE/docker.sock
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.5
  done
  if ! docker info >/dev/null 2>&1; then
    tail -5 "$ENGINE/dockerd.log" | sed 's/^/  dockerd: /'
    kill -0 "$DOCKERD_PID" 2>/dev/null || DOCKERD_PID=
    skip "dockerd did not start (log above)"
  fi
  log "  dockerd $(docker version -f '{{.Server.Version}}') up, pid $DOCKERD_PID"
fi
export DOCKER_BUILDKIT=0   # the classic builder: no buildx here; reads the context's root .dockerignore
SOCKET=${DOCKER_HOST:-unix:///var/run/docker.sock}
case "$SOCKET" in
  unix://*) SOCKET=${SOCKET#unix://} ;;
  *) die "DOCKER_HOST=$SOCKET: the check mounts the engine's Unix socket into the daemon, so it needs a local socket" ;;
esac
SOCKET_GID=$(stat -c %g "$SOCKET")

if command -v docker-compose >/dev/null; then
  COMPOSE=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
else
  die "neither docker-compose nor the compose plugin is installed (Debian: apt-get install docker-compose)"
fi

# ------------------------------------------------------------------------------------------------
# 2. Base images: the official ones where they can be pulled, else cached or freshly built stand-ins
# ------------------------------------------------------------------------------------------------
pullable() {  # $1: image; true when present or pulled
  docker image inspect "$1" >/dev/null 2>&1 && return 0
  timeout 300 docker pull -q "$1" >"$SCRATCH/pull.log" 2>&1
}

load_or_build() {  # $1 tag, $2 cache file, $3 build function
  if docker image inspect "$1" >/dev/null 2>&1; then
    log "  $1: already on the engine"
  elif [ -s "$2" ]; then
    docker load -q -i "$2" >/dev/null || die "docker load -i $2"
    CREATED_IMAGES+=("$1")
    log "  $1: from the cache ($2)"
  else
    "$3"
    CREATED_IMAGES+=("$1")
    docker save -o "$2.tmp.$$" "$1" && mv "$2.tmp.$$" "$2"
    # Stand-ins of older recipes are stale: one cache file per kind.
    find "$(dirname "$2")" -maxdepth 1 -name "$(basename "${2%-*}")-*.tar" ! -name "$(basename "$2")" -delete
    log "  $1: built and cached ($2)"
  fi
}

MIRROR=${DEPLOY_CHECK_DEBIAN_MIRROR:-}
if [ -z "$MIRROR" ]; then
  MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian
fi
BASE_INCLUDE=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
BASE_RECIPE="v$STANDIN_VERSION debootstrap --variant=minbase --include=$BASE_INCLUDE bookworm $MIRROR; import ENV PATH LANG=C.UTF-8"
BASE_KEY=$(printf '%s' "$BASE_RECIPE" | sha256sum | cut -c1-12)

build_python_standin() {
  command -v debootstrap >/dev/null || die "debootstrap is not installed (Debian: apt-get install debootstrap)"
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  log "  debootstrap bookworm (Python 3.11) from $MIRROR ..."
  local root=$SCRATCH/rootfs-python
  nice -n 10 debootstrap --variant=minbase --include="$BASE_INCLUDE" bookworm "$root" "$MIRROR" \
    >"$SCRATCH/debootstrap.log" 2>&1 || { tail -20 "$SCRATCH/debootstrap.log"; die "debootstrap"; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$PYTHON_IMAGE" >/dev/null
  rm -rf "$root"
}

build_postgres_standin() {
  log "  building docker/postgres-standin on $PYTHON_STANDIN ..."
  nice -n 10 docker build --network host --build-arg "BASE_IMAGE=$PYTHON_STANDIN" -t "$POSTGRES_IMAGE" \
    "$REPO/docker/postgres-standin" >"$SCRATCH/postgres-standin.log" 2>&1 \
    || { tail -20 "$SCRATCH/postgres-standin.log"; die "building the PostgreSQL stand-in"; }
}

phase_start bases "base images"
PYTHON_STANDIN=stock_assets-standin/python:3.11-bookworm-$BASE_KEY
if pullable "$OFFICIAL_PYTHON"; then
  PYTHON_IMAGE=$OFFICIAL_PYTHON
  log "  PYTHON_IMAGE: the official $OFFICIAL_PYTHON"
else
  log "  $OFFICIAL_PYTHON cannot be pulled ($(tail -1 "$SCRATCH/pull.log" | cut -c1-100)): using a local stand-in"
  PYTHON_IMAGE=$PYTHON_STANDIN
  load_or_build "$PYTHON_IMAGE" "$CACHE/python-bookworm-$BASE_KEY.tar" build_python_standin
fi
if pullable "$OFFICIAL_POSTGRES"; then
  POSTGRES_IMAGE=$OFFICIAL_POSTGRES
  log "  POSTGRES_IMAGE: the official $OFFICIAL_POSTGRES"
else
  log "  $OFFICIAL_POSTGRES cannot be pulled: using the local stand-in docker/postgres-standin"
  if [ "$PYTHON_IMAGE" != "$PYTHON_STANDIN" ]; then  # the stand-in builds on the bookworm stand-in
    load_or_build "$PYTHON_STANDIN" "$CACHE/python-bookworm-$BASE_KEY.tar" build_python_standin
  fi
  PG_KEY=$( { echo "$BASE_KEY"; cat "$REPO/docker/postgres-standin/Dockerfile" "$REPO/docker/postgres-standin/docker-entrypoint.sh"; } | sha256sum | cut -c1-12)
  POSTGRES_IMAGE=stock_assets-standin/postgres:15-bookworm-$PG_KEY
  load_or_build "$POSTGRES_IMAGE" "$CACHE/postgres-15-bookworm-$PG_KEY.tar" build_postgres_standin
fi
phase_end bases "bases ready"

# ------------------------------------------------------------------------------------------------
# 3. The app image
# ------------------------------------------------------------------------------------------------
phase_start build "app image $APP_IMAGE from docker/Dockerfile"
BUILD_ARGS=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")

# TLS from a build container: a probe without, then with, the machine's CA bundle.
probe_tls() {
  docker run --rm --network host "$@" "$PYTHON_IMAGE" python3 -c \
    "import urllib.request; urllib.request.urlopen('https://pypi.org/simple/pip/', timeout=30)" >/dev/null 2>&1
}
if probe_tls; then
  log "  TLS to the package index works from a container: no CA bundle in the build"
elif [ -s "$CA_BUNDLE" ] && probe_tls -v "$CA_BUNDLE:/tmp/ca.crt:ro" -e SSL_CERT_FILE=/tmp/ca.crt; then
  log "  TLS to the package index needs this machine's CA bundle: a builder-only base ($BUILDER_BASE)"
  mkdir -p "$SCRATCH/builder-base"
  cp "$CA_BUNDLE" "$SCRATCH/builder-base/build-ca.crt"
  cat >"$SCRATCH/builder-base/Dockerfile" <<'EOF'
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY build-ca.crt /usr/local/share/stock_assets-build-ca.crt
ENV PIP_CERT=/usr/local/share/stock_assets-build-ca.crt \
    SSL_CERT_FILE=/usr/local/share/stock_assets-build-ca.crt \
    REQUESTS_CA_BUNDLE=/usr/local/share/stock_assets-build-ca.crt
EOF
  docker build -q --build-arg "BASE_IMAGE=$PYTHON_IMAGE" -t "$BUILDER_BASE" "$SCRATCH/builder-base" \
    >"$SCRATCH/builder-base.log" 2>&1 || { cat "$SCRATCH/builder-base.log"; die "building the builder base"; }
  CREATED_IMAGES+=("$BUILDER_BASE")
  BUILD_ARGS+=(--build-arg "BUILDER_IMAGE=$BUILDER_BASE")
else
  die "a build container cannot reach the package index over TLS (with or without $CA_BUNDLE)"
fi

# The build context: the repository's files (tracked, and untracked ones git does not ignore), so
# that uncommitted work is what gets built; the root .dockerignore then trims it to the allow-list.
CONTEXT=$SCRATCH/context
mkdir -p "$CONTEXT"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
   | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
   | tar --null -T - -cf -) | tar -C "$CONTEXT" -xf -
[ -f "$CONTEXT/.dockerignore" ] || die "no .dockerignore at the repository root"

if python3 -m pip download -q --no-index --no-deps --only-binary=:all: --python-version 3.11 \
     -d "$CONTEXT/docker/wheelhouse" "torch==$TORCH_VERSION" >"$SCRATCH/wheel.log" 2>&1; then
  log "  torch $TORCH_VERSION: the CPU wheel pip holds locally ($(cd "$CONTEXT/docker/wheelhouse" && ls torch-*.whl))"
  BUILD_ARGS+=(--build-arg TORCH_WHEELHOUSE=docker/wheelhouse)
else
  log "  torch $TORCH_VERSION: from the PyTorch CPU index (pip holds no local wheel)"
fi
# A fresh engine has no layer cache; on a shared one, never reuse layers of an earlier build.
[ "$OWN_ENGINE" = 1 ] || BUILD_ARGS+=(--no-cache)
CREATED_IMAGES+=("$APP_IMAGE")
if ! nice -n 10 docker build --network host -f "$CONTEXT/docker/Dockerfile" -t "$APP_IMAGE" \
     "${BUILD_ARGS[@]}" "$CONTEXT" >"$SCRATCH/build.log" 2>&1; then
  tail -40 "$SCRATCH/build.log"
  die "docker build"
fi
log "  $(grep -m1 '^Sending build context' "$SCRATCH/build.log" || true)"
log "  $(grep -m1 '^torch ' "$SCRATCH/build.log" || true)"
docker image prune -f >/dev/null 2>&1 || true   # the builder stage's dangling layers
phase_end build "built"

# The Kubernetes values, on paper: docker/helm/check_values.py in the image just built (PyYAML);
# with DEPLOY_CHECK_HELM_SCHEMA (the chart's values.schema.json) on the host (needs jsonschema too).
phase_start helm "helm values (docker/helm/values.yaml, search-workers-job.yaml)"
if [ -n "${DEPLOY_CHECK_HELM_SCHEMA:-}" ]; then
  python3 "$REPO/docker/helm/check_values.py" --schema "$DEPLOY_CHECK_HELM_SCHEMA" >"$SCRATCH/helm.log" 2>&1 \
    || { cat "$SCRATCH/helm.log"; die "docker/helm/check_values.py"; }
else
  docker run --rm --network none --entrypoint python -v "$REPO/docker:/docker:ro" "$APP_IMAGE" \
    /docker/helm/check_values.py >"$SCRATCH/helm.log" 2>&1 || { cat "$SCRATCH/helm.log"; die "docker/helm/check_values.py"; }
fi
phase_end helm "$(tail -1 "$SCRATCH/helm.log")"

# ------------------------------------------------------------------------------------------------
# 4. The stack (docker/deploy_check.py)
# ------------------------------------------------------------------------------------------------
STACK_STARTED=1
python3 "$REPO/docker/deploy_check.py" \
  --repo "$REPO" --scratch "$SCRATCH" --project "$PROJECT" --compose "${COMPOSE[*]}" \
  --app-image "$APP_IMAGE" --postgres-image "$POSTGRES_IMAGE" --python-image "$PYTHON_IMAGE" \
  --builder-base "$( [[ " ${BUILD_ARGS[*]} " == *BUILDER_IMAGE=* ]] && echo "$BUILDER_BASE" )" \
  --ca-bundle "$CA_BUNDLE" --socket "$SOCKET" --socket-gid "$SOCKET_GID" \
  --timings "$TIMINGS" --own-engine "$OWN_ENGINE"
