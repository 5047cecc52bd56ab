#!/bin/sh
# Entry point of the EMS image: wait for what the service needs (EMS_WAIT_FOR,
# e.g. "db,broker,migrations"), then become the service's own command.
set -e
if [ -n "${EMS_WAIT_FOR:-}" ]; then
  python /app/swarm/wait.py
fi
exec "$@"
