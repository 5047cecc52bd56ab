#!/usr/bin/env bash
# Scale the monitor replicas to N: what `docker service scale ems_monitor=N` does, then
# wait until the queues of the slots that went away are emptied and deleted.
#   usage: swarm/scale-monitors.sh N        (stack name: SWARM_STACK, default ems)
# Nothing else needs to change: replica n (task slot n) declares ingest.n and announces
# itself to the balancer, which routes to it within seconds. A replica told to stop
# says it is draining, works its queue empty and exits 0; whatever is left in it the
# balancer moves to the live replicas before it deletes the queue (README "Scaling out").
set -euo pipefail
N=${1:?usage: swarm/scale-monitors.sh N}
STACK=${SWARM_STACK:-ems}
case $N in ''|*[!0-9]*|0) echo "N must be a positive integer, got '$N'" >&2; exit 2;; esac

ingest_queues() {  # the ingest.n queues that exist (needs the broker task on this node)
  local broker
  broker=$(docker ps -q -f "label=com.docker.swarm.service.name=${STACK}_rabbitmq" | head -1)
  [ -n "$broker" ] || return 1
  docker exec "$broker" rabbitmqctl -q list_queues name | awk '/^ingest\.[0-9]+$/ {sub("ingest.", ""); print}' \
    | sort -n | xargs
}

running_slots() {
  docker service ps "${STACK}_monitor" -f desired-state=running --format '{{.Name}}' \
    | sed 's/.*\.//' | sort -n | xargs
}

docker service scale --detach=false "${STACK}_monitor=$N" >/dev/null

slots=$(running_slots)
if [ "$slots" != "$(seq 1 "$N" | xargs)" ]; then
  echo "monitor tasks run slots [$slots], expected 1..$N: run 'docker service update --force ${STACK}_monitor'" >&2
  exit 1
fi
# The balancer looks at a left queue every 2 s and deletes it once empty; give it a minute.
for _ in $(seq 1 60); do
  queues=$(ingest_queues) || { echo "the RabbitMQ task is not on this node: queues not checked" >&2; break; }
  extra=$(echo "$queues" | tr ' ' '\n' | awk -v n="$N" '$1 > n' | xargs)
  [ -z "$extra" ] && break
  sleep 1
done
[ -z "${extra:-}" ] || { echo "ingest queues of slots above $N still there: $extra" >&2; exit 1; }
echo "monitor replicas: $N (slots $slots)"
