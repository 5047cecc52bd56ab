#!/usr/bin/env bash
# Scale the monitor replicas to N and keep the balancer's EMS_MONITOR_REPLICAS in
# step, so every ingest.n queue the balancer feeds has its replica n (task slot n).
#   usage: swarm/scale-monitors.sh N        (stack name: SWARM_STACK, default ems)
# Up: monitors first, then the balancer starts feeding the new queues.
# Down: the balancer first stops feeding ingest.N+1..; those queues are drained
# by their replicas before the replicas go.
set -euo pipefail
N=${1:?usage: swarm/scale-monitors.sh N}
STACK=${SWARM_STACK:-ems}
case $N in ''|*[!0-9]*|0) echo "N must be a positive integer, got '$N'" >&2; exit 2;; esac

current=$(docker service inspect -f '{{.Spec.Mode.Replicated.Replicas}}' "${STACK}_monitor")

set_balancer() {
  docker service update --quiet --detach=false --env-add "EMS_MONITOR_REPLICAS=$1" "${STACK}_balancer" >/dev/null
  echo "balancer now feeds ingest.1..ingest.$1"
}

queue_depth() {  # queue -> ready + unacknowledged messages (needs the broker task on this node)
  local broker
  broker=$(docker ps -q -f "label=com.docker.swarm.service.name=${STACK}_rabbitmq" | head -1)
  [ -n "$broker" ] || { echo "the RabbitMQ task is not on this node: drain $1 by hand" >&2; return 1; }
  docker exec "$broker" rabbitmqctl -q list_queues name messages | awk -v q="$1" '$1 == q {print $2}'
}

running_slots() {
  docker service ps "${STACK}_monitor" -f desired-state=running --format '{{.Name}}' \
    | sed 's/.*\.//' | sort -n | xargs
}

scale_monitors() {
  # Each replica checks its slot against the count, so both change together.
  docker service update --quiet --detach=false --replicas "$1" --env-add "EMS_MONITOR_REPLICAS=$1" \
    "${STACK}_monitor" >/dev/null
}

if [ "$N" -ge "$current" ]; then
  scale_monitors "$N"
  set_balancer "$N"
else
  set_balancer "$N"
  for slot in $(seq $((N + 1)) "$current"); do
    for _ in $(seq 1 120); do
      depth=$(queue_depth "ingest.$slot")
      [ "${depth:-0}" = "0" ] && break
      sleep 1
    done
    [ "${depth:-0}" = "0" ] || { echo "ingest.$slot still holds $depth messages" >&2; exit 1; }
  done
  scale_monitors "$N"
fi

slots=$(running_slots)
if [ "$slots" != "$(seq 1 "$N" | xargs)" ]; then
  echo "monitor tasks run slots [$slots], expected 1..$N: run 'docker service update --force ${STACK}_monitor'" >&2
  exit 1
fi
echo "monitor replicas: $N (slots $slots)"
