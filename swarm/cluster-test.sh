#!/usr/bin/env bash
# `make swarm-cluster-test`: EMS on three Swarm nodes on this machine, a node
# killed mid-stream three times, nothing lost. From nothing it:
#   1. starts dockerd if needed and registers a runc wrapper as runtime
#      ems-cluster-runc (swarm/cluster/runc-wrapper.py: privileged containers
#      fail here without it);
#   2. builds the images from Debian's packages on the local base (shared with
#      `make swarm-test`) and pushes them to a registry (Debian's docker-registry)
#      on the test's own network;
#   3. starts three privileged Docker-in-Docker nodes (node1-3), forms a swarm of
#      three managers, labels them ems.node=1|2|3; node N publishes its gateway's
#      HTTPS on 127.0.0.1:809N (HTTP on 127.0.0.1:808N) and its Docker API as a
#      socket under $RUN_DIR, and nothing else;
#   4. creates a local CA and the gateway's certificate, the secrets, and deploys
#      swarm/stack.yml + swarm/stack.cluster.yml, the images pulled from the registry;
#   5. runs swarm/cluster_check.py (kills and restarts nodes; its last line is
#      `cluster: lost=N double=N kills=N worst_resume_s=N`), then tears down.
# Everything it makes is named ems-cluster*, apart from the single-node test's
# names, so both can run on one dockerd.
#   EMS_CLUSTER_KEEP=1   leave the cluster running afterwards
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PREFIX=ems-cluster
BASE=ems-test/base:bookworm
NETWORK=$PREFIX-net
REGISTRY=$PREFIX-registry
REGISTRY_HOST_PORT=${EMS_CLUSTER_REGISTRY_PORT:-5055}
RUNTIME=$PREFIX-runc
RUNTIME_PATH=/usr/local/lib/$PREFIX/runc-wrapper
RUN_DIR=/run/$PREFIX
STACK=ems
NODES=(1 2 3)
PYTHON=${PYTHON:-.venv/bin/python}
CHECK_OUTPUT=/tmp/$PREFIX-check.out
# shellcheck source=swarm/phases.sh
source swarm/phases.sh  # the working directory is the repository
node_docker() {  # N docker-args...: the docker CLI against node N's dockerd
  local node=$1; shift
  docker -H "unix://$RUN_DIR/node$node/docker.sock" "$@"
}

# Left behind when this machine cannot run dockerd at all: .ci/run then skips the test.
DOCKERD_UNAVAILABLE_MARKER=/tmp/ems-dockerd-unavailable

ensure_dockerd() {
  command -v dockerd >/dev/null || {
    step "Installing docker.io and debootstrap"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap >/dev/null
  }
  docker info >/dev/null 2>&1 && return
  step "Starting dockerd"
  setsid nohup dockerd >/var/log/ems-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
  tail -20 /var/log/ems-dockerd.log >&2
  touch "$DOCKERD_UNAVAILABLE_MARKER"
  exit 1
}

ensure_runtime() {
  # dockerd reads its runtimes again on SIGHUP: no restart, nothing else running is touched.
  install -D -m 0755 swarm/cluster/runc-wrapper.py "$RUNTIME_PATH"
  docker info --format '{{json .Runtimes}}' | grep -q "\"$RUNTIME\"" && return
  step "Registering runtime $RUNTIME with dockerd (daemon.json, SIGHUP)"
  mkdir -p /etc/docker
  python3 - "$RUNTIME" "$RUNTIME_PATH" <<'PY'
import json, os, sys
path = "/etc/docker/daemon.json"
config = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
config.setdefault("runtimes", {})[sys.argv[1]] = {"path": sys.argv[2]}
with open(path, "w") as file:
    json.dump(config, file, indent=2)
PY
  kill -HUP "$(pidof dockerd)"
  for _ in $(seq 1 20); do
    docker info --format '{{json .Runtimes}}' | grep -q "\"$RUNTIME\"" && return
    sleep 1
  done
  echo "dockerd did not take runtime $RUNTIME from /etc/docker/daemon.json" >&2
  exit 1
}

build_image() {  # tag context [build args...]
  local tag=$1 context=$2; shift 2
  DOCKER_BUILDKIT=0 docker build -q -t "$tag" --build-arg "BASE=$BASE" "$@" "$context" \
    >/dev/null 2>"/tmp/$PREFIX-build.log" || { cat "/tmp/$PREFIX-build.log" >&2; exit 1; }
}

build_images() {
  step "Images from Debian's packages on the local base"
  bash swarm/base-image.sh "$BASE"
  local name
  # The single-node test's images (same tags, same files): Caddy and RabbitMQ are
  # the cluster images' bases, Node.js builds the EMS image's assets.
  for name in rabbitmq caddy node; do build_image "ems-test/$name:latest" "swarm/images/$name"; done
  for name in node registry galera haproxy rabbitmq gateway; do
    build_image "$PREFIX/$name:latest" "swarm/cluster/$name"
  done
  bash swarm/build.sh "$PREFIX/ems:latest" --build-arg "PYTHON_IMAGE=$BASE" \
    --build-arg "NODE_IMAGE=ems-test/node:latest"
  phase_done "images"
}

start_registry() {
  step "Registry $REGISTRY (127.0.0.1:$REGISTRY_HOST_PORT here, $REGISTRY:5000 for the nodes)"
  docker network inspect "$NETWORK" >/dev/null 2>&1 || docker network create "$NETWORK" >/dev/null
  docker run -d --name "$REGISTRY" --network "$NETWORK" --restart unless-stopped \
    -p "127.0.0.1:$REGISTRY_HOST_PORT:5000" -v "$REGISTRY-data:/var/lib/docker-registry" \
    "$PREFIX/registry:latest" >/dev/null
  for _ in $(seq 1 30); do curl -fs "http://127.0.0.1:$REGISTRY_HOST_PORT/v2/" >/dev/null && break; sleep 1; done
  local name pushes=()
  for name in ems galera haproxy rabbitmq gateway; do
    docker tag "$PREFIX/$name:latest" "127.0.0.1:$REGISTRY_HOST_PORT/$PREFIX/$name:latest"
    docker push -q "127.0.0.1:$REGISTRY_HOST_PORT/$PREFIX/$name:latest" >/dev/null &
    pushes+=($!)
  done
  for push in "${pushes[@]}"; do wait "$push"; done
  phase_done "registry + push"
}

start_nodes() {
  step "Three Docker-in-Docker nodes"
  local node
  for node in "${NODES[@]}"; do
    mkdir -p "$RUN_DIR/node$node"
    docker run -d --name "$PREFIX-node$node" --hostname "node$node" --privileged --runtime "$RUNTIME" \
      --network "$NETWORK" --network-alias "$PREFIX-broker" -e "EMS_REGISTRY=$REGISTRY:5000" \
      -v "$PREFIX-node$node:/var/lib/docker" -v "$RUN_DIR/node$node:/ems-host" \
      -p "127.0.0.1:809$node:443" -p "127.0.0.1:808$node:80" \
      "$PREFIX/node:latest" >/dev/null
  done
  for node in "${NODES[@]}"; do
    for _ in $(seq 1 60); do node_docker "$node" info >/dev/null 2>&1 && break; sleep 1; done
    node_docker "$node" info >/dev/null
  done
  phase_done "nodes"
  step "A swarm of three managers"
  local address token
  address=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$NETWORK\").IPAddress}}" "$PREFIX-node1")
  node_docker 1 swarm init --advertise-addr "$address" >/dev/null
  token=$(node_docker 1 swarm join-token -q manager)
  for node in 2 3; do node_docker "$node" swarm join --token "$token" "$address:2377" >/dev/null; done
  for node in "${NODES[@]}"; do node_docker 1 node update --label-add "ems.node=$node" "node$node" >/dev/null; done
  node_docker 1 node ls
  phase_done "swarm"
}

make_certificates() {  # directory: a CA and the gateway's certificate for localhost and 127.0.0.1
  local dir=$1
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=EMS cluster test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$dir/gateway.key" \
    -out "$dir/gateway.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$dir/gateway.ext"
  openssl x509 -req -in "$dir/gateway.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/gateway.ext" -out "$dir/gateway.crt" 2>/dev/null
}

deploy() {
  step "Secrets, certificates, deploy (swarm/stack.yml + swarm/stack.cluster.yml)"
  make_certificates "$RUN_DIR"
  export DOCKER_HOST="unix://$RUN_DIR/node1/docker.sock"
  # The device stream outside the swarm publishes as the simulator's broker user.
  head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32 >"$RUN_DIR/simulator-password"
  docker secret create --label ems-cluster=1 ems_amqp_password_simulator "$RUN_DIR/simulator-password" >/dev/null
  EMS_SECRET_LABEL=ems-cluster=1 bash swarm/secrets.sh >/dev/null
  head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | docker secret create ems_erlang_cookie - >/dev/null
  docker secret create ems_tls_cert "$RUN_DIR/gateway.crt" >/dev/null
  docker secret create ems_tls_key "$RUN_DIR/gateway.key" >/dev/null
  EMS_REGISTRY="$REGISTRY:5000" EMS_IMAGE="$REGISTRY:5000/$PREFIX/ems:latest" \
    EMS_PUBLIC_URL=https://127.0.0.1:8091 EMS_SOCKETS_PER_USER=64 \
    docker stack deploy --resolve-image never -c swarm/stack.yml -c swarm/stack.cluster.yml "$STACK" >/dev/null
  unset DOCKER_HOST
  phase_done "deploy"
}

remove_all() {
  local node
  for node in "${NODES[@]}"; do docker rm -f "$PREFIX-node$node" >/dev/null 2>&1 || true; done
  docker rm -f "$REGISTRY" >/dev/null 2>&1 || true
  for node in "${NODES[@]}"; do docker volume rm "$PREFIX-node$node" >/dev/null 2>&1 || true; done
  docker volume rm "$REGISTRY-data" >/dev/null 2>&1 || true
  docker network rm "$NETWORK" >/dev/null 2>&1 || true
  rm -rf "$RUN_DIR"
}

teardown() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    phase_done "failed phase"
    echo "swarm-cluster-test failed; tasks and recent logs:" >&2
    node_docker 1 stack ps "$STACK" --no-trunc --format '{{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}' 2>/dev/null \
      | head -80 >&2 || true
  fi
  if [ "${EMS_CLUSTER_KEEP:-}" = 1 ]; then
    echo "EMS_CLUSTER_KEEP=1: the cluster still runs; docker -H unix://$RUN_DIR/node1/docker.sock ..."
  else
    step "Tearing down"
    remove_all
    phase_done "teardown"
  fi
  report_timings swarm-cluster-test
  # The check's summary closes the output, as a test runner's does.
  grep -E '^cluster: ' "$CHECK_OUTPUT" 2>/dev/null | tail -1 || echo "cluster: lost=? double=? kills=0 worst_resume_s=?"
  exit "$status"
}

main() {
  ensure_dockerd
  ensure_runtime
  phase_done "dockerd + runtime"
  build_images
  remove_all  # what an interrupted earlier run may have left
  trap teardown EXIT
  start_registry
  start_nodes
  deploy
  step "Checking the cluster"
  "$PYTHON" swarm/cluster_check.py --stack "$STACK" --run-dir "$RUN_DIR" --prefix "$PREFIX" \
    --ca "$RUN_DIR/ca.crt" ${EMS_CLUSTER_CHECK_ARGS:-} | tee "$CHECK_OUTPUT"
  phase_done "checks"
}

# Sourced (`. swarm/cluster-test.sh`), it only defines its functions: one step at a time.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main; fi
