#!/bin/sh
# Install the Erlang cookie from its secret (EMS_ERLANG_COOKIE_FILE) where the
# server and the CLI tools read it, then run the server as the rabbitmq user.
# On its first start (empty data), a node other than the first waits until the
# first answers, so that classic peer discovery joins it rather than forming a
# second cluster of one.
set -e
cookie=/var/lib/rabbitmq/.erlang.cookie
rm -f "$cookie"
cp "${EMS_ERLANG_COOKIE_FILE:-/run/secrets/ems_erlang_cookie}" "$cookie"
chown rabbitmq:rabbitmq "$cookie" /var/lib/rabbitmq
chmod 0400 "$cookie"
first=${EMS_RABBITMQ_FIRST:-rabbitmq1}
if [ "$(hostname)" != "$first" ] && [ ! -d /var/lib/rabbitmq/mnesia ]; then
  echo "rabbitmq-cluster-entrypoint: first start; waiting for $first"
  until timeout 2 bash -c "</dev/tcp/$first/25672" 2>/dev/null; do sleep 2; done
fi
exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$@"
