#!/usr/bin/env bash
# `make swarm-test`: the production stack, for real, on this machine where no
# image can be pulled. Starts dockerd (installing docker.io and debootstrap if
# missing), builds a Debian base with debootstrap + `docker import` (cached),
# the EMS image on it (same Dockerfile, base as build argument), RabbitMQ,
# MariaDB, Caddy and Prometheus images from Debian's packages, deploys swarm/stack.yml
# with swarm/stack.test.yml, runs swarm/check.py through the gateway, tears down.
#   EMS_SWARM_KEEP=1  leave the stack running afterwards (for a look around)
#   EMS_TEST_HTTP_PORT  the gateway's port here (default 8090)
#   EMS_TEST_PROMETHEUS_PORT  Prometheus' port here (default 19090)
set -euo pipefail
cd "$(dirname "$0")/.."

STACK=ems
BASE=ems-test/base:bookworm
export EMS_IMAGE=ems-test/ems:latest
export EMS_TEST_HTTP_PORT=${EMS_TEST_HTTP_PORT:-8090}
export EMS_TEST_PROMETHEUS_PORT=${EMS_TEST_PROMETHEUS_PORT:-19090}
PYTHON=${PYTHON:-.venv/bin/python}
CHECK_OUTPUT=$(mktemp)
# shellcheck source=swarm/phases.sh
source swarm/phases.sh  # the working directory is the repository

ensure_tools() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v docker >/dev/null || missing+=(docker.io)
  if [ ${#missing[@]} -gt 0 ]; then
    step "Installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  fi
}

# Left behind when this machine cannot run dockerd at all: .ci/run then skips the stack test.
DOCKERD_UNAVAILABLE_MARKER=/tmp/ems-dockerd-unavailable
rm -f "$DOCKERD_UNAVAILABLE_MARKER"

ensure_dockerd() {
  docker info >/dev/null 2>&1 && return
  step "Starting dockerd"
  setsid nohup dockerd >/var/log/ems-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
  echo "dockerd did not start; its log:" >&2
  tail -20 /var/log/ems-dockerd.log >&2
  touch "$DOCKERD_UNAVAILABLE_MARKER"
  exit 1
}

ensure_swarm() {
  [ "$(docker info -f '{{.Swarm.LocalNodeState}}')" = active ] && return
  step "Creating a one-node swarm"
  docker swarm init >/dev/null 2>&1 || docker swarm init --advertise-addr 127.0.0.1 >/dev/null
}

refuse_production() {
  # Never tear down a real deployment: the test reuses the stack's names.
  local image
  image=$(docker service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "${STACK}_web" 2>/dev/null || true)
  if [ -n "$image" ] && [[ $image != ems-test/* ]]; then
    echo "a '$STACK' stack runs here with image $image: swarm-test would replace it; refusing" >&2
    exit 1
  fi
  if [ -n "$(docker secret ls -q -f name=ems_ | head -1)" ] && [ -z "$(docker secret ls -q -f label=ems-test=1)" ]; then
    echo "EMS secrets that swarm-test did not make exist here; refusing to touch them" >&2
    exit 1
  fi
}

build_images() {
  step "Base image from Debian's packages (debootstrap, cached)"
  bash swarm/base-image.sh "$BASE"
  phase_done "base image"
  step "RabbitMQ, MariaDB, Caddy, Node.js and Prometheus images from Debian's packages"
  local name
  for name in rabbitmq mariadb caddy node prometheus; do
    DOCKER_BUILDKIT=0 docker build -q -t "ems-test/$name:latest" --build-arg "BASE=$BASE" \
      "swarm/images/$name" >/dev/null 2>/tmp/ems-build-$name.log \
      || { cat /tmp/ems-build-$name.log >&2; exit 1; }
  done
  phase_done "service images"
  step "EMS image (swarm/Dockerfile on the local base)"
  bash swarm/build.sh "$EMS_IMAGE" --build-arg "PYTHON_IMAGE=$BASE" --build-arg "NODE_IMAGE=ems-test/node:latest"
  phase_done "EMS image"
}

remove_stack() {
  docker stack rm "$STACK" >/dev/null 2>&1 || true
  # The stack's networks go last; volumes can only go once their containers have.
  for _ in $(seq 1 90); do
    [ -z "$(docker ps -q -f "label=com.docker.stack.namespace=$STACK")" ] \
      && [ -z "$(docker network ls -q -f label=com.docker.stack.namespace=$STACK)" ] && break
    sleep 1
  done
  # Finished job tasks leave their exited containers behind.
  docker ps -aq -f "label=com.docker.stack.namespace=$STACK" | xargs -r docker rm -f >/dev/null
  # Swarm frees a removed network's addresses a moment after it disappears; a
  # network of the same name created in between is left half-allocated.
  sleep 5
  docker volume rm "${STACK}_db_data" "${STACK}_rabbitmq_data" "${STACK}_letsencrypt" "${STACK}_prometheus_data" >/dev/null 2>&1 || true
  local secret
  for secret in $(docker secret ls -q -f label=ems-test=1); do docker secret rm "$secret" >/dev/null || true; done
}

teardown() {
  local status=$?
  [ "$status" -ne 0 ] && phase_done "failed phase"
  if [ "$status" -ne 0 ]; then
    echo "swarm-test failed; service states and recent logs:" >&2
    docker stack ps "$STACK" --no-trunc --format '{{.Name}} {{.CurrentState}} {{.Error}}' 2>/dev/null | head -60 >&2 || true
    for service in $(docker stack services "$STACK" --format '{{.Name}}' 2>/dev/null); do
      echo "--- $service" >&2
      docker service logs --raw --tail 15 "$service" 2>&1 | tail -15 >&2 || true
    done
  fi
  if [ "${EMS_SWARM_KEEP:-}" = 1 ]; then
    echo "EMS_SWARM_KEEP=1: the stack is still running (make swarm-down, then remove its volumes)"
  else
    step "Tearing down"
    remove_stack
    phase_done "teardown"
  fi
  report_timings swarm-test
  # The count of checks closes the output, as a test runner's summary does.
  grep -E '^swarm-checks: [0-9]+ passed, [0-9]+ failed$' "$CHECK_OUTPUT" || echo "swarm-checks: 0 passed, 1 failed"
  rm -f "$CHECK_OUTPUT"
  exit "$status"
}

ensure_tools
ensure_dockerd
ensure_swarm
refuse_production
phase_done "dockerd + swarm"
build_images

step "Deploying the stack (swarm/stack.yml + swarm/stack.test.yml)"
remove_stack  # what an interrupted earlier run may have left
trap teardown EXIT
EMS_SECRET_LABEL=ems-test=1 bash swarm/secrets.sh
docker stack deploy --resolve-image never -c swarm/stack.yml -c swarm/stack.test.yml "$STACK" >/dev/null
phase_done "deploy"

step "Checking the stack through the gateway on :$EMS_TEST_HTTP_PORT"
"$PYTHON" swarm/check.py --stack "$STACK" --url "http://127.0.0.1:$EMS_TEST_HTTP_PORT" \
  --prometheus "http://127.0.0.1:$EMS_TEST_PROMETHEUS_PORT" | tee "$CHECK_OUTPUT"
phase_done "checks"
