#!/bin/bash
# Start one node of the Galera cluster; the same decision on every (re)start:
#   no grastate.dat yet (never part of the cluster):
#     - the bootstrap node (EMS_GALERA_BOOTSTRAP, default the first of
#       EMS_GALERA_NODES) creates the database and starts a new cluster, unless a
#       peer already runs (then its volume was lost: it joins like the others);
#     - any other node waits for a running peer and joins it by SST (mariadb-backup).
#   grastate.dat present: join a running peer (IST, or SST when too far behind);
#     with no peer running it starts a new cluster from its own data only when
#     Galera marked it safe_to_bootstrap (it was the last to leave), else waits:
#     after all nodes stopped, see "Run on several machines" in README.md.
# Nothing here ever creates an empty database beside a cluster that has data.
set -euo pipefail
DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/init.sock
SELF=${EMS_GALERA_NAME:-$(hostname)}
IFS=, read -r -a NODES <<<"${EMS_GALERA_NODES:-db1,db2,db3}"
BOOTSTRAP=${EMS_GALERA_BOOTSTRAP:-${NODES[0]}}

log() { echo "galera-entrypoint [$SELF]: $*"; }
sql_string() { printf "'%s'" "$(printf '%s' "$1" | sed -e "s/\\\\/\\\\\\\\/g" -e "s/'/\\\\'/g")"; }

peers() {  # the other nodes whose names resolve now
  local node
  for node in "${NODES[@]}"; do
    [ "$node" != "$SELF" ] && getent hosts "$node" >/dev/null && echo "$node"
  done
  return 0
}
running_peer() {  # the first peer whose Galera port answers
  local node
  for node in $(peers); do
    timeout 2 bash -c "</dev/tcp/$node/4567" 2>/dev/null && { echo "$node"; return 0; }
  done
  return 1
}

initialize() {
  log "initializing $DATADIR"
  mariadb-install-db --user=mysql --datadir="$DATADIR" --skip-test-db \
    --auth-root-authentication-method=socket >/dev/null
  mariadbd --user=mysql --datadir="$DATADIR" --skip-networking --socket="$SOCKET" &
  local pid=$!
  for _ in $(seq 1 60); do
    mariadb-admin --socket="$SOCKET" ping --silent 2>/dev/null && break
    sleep 1
  done
  {
    echo "DELETE FROM mysql.global_priv WHERE User = '';"
    if [ -n "${MARIADB_USER:-}" ]; then
      local password=${MARIADB_PASSWORD:-}
      [ -n "${MARIADB_PASSWORD_FILE:-}" ] && password=$(cat "$MARIADB_PASSWORD_FILE")
      echo "CREATE USER $(sql_string "$MARIADB_USER")@'%' IDENTIFIED BY $(sql_string "$password");"
    fi
    echo "FLUSH PRIVILEGES;"
  } | mariadb --socket="$SOCKET" -uroot
  local script
  for script in /docker-entrypoint-initdb.d/*.sql; do
    [ -e "$script" ] || continue
    log "running $script"
    mariadb --socket="$SOCKET" -uroot <"$script"
  done
  kill "$pid"
  wait "$pid" || true
}

serve() {  # extra mariadbd options...
  local address
  address=$(getent hosts "$(hostname)" | awk '{print $1; exit}')
  /usr/local/bin/clustercheck &
  log "starting mariadbd ($*) at $address"
  # Galera's settings only here: the initialization above runs a plain server.
  exec mariadbd --defaults-extra-file=/etc/mysql/ems-galera.cnf --user=mysql --datadir="$DATADIR" \
    --wsrep-node-name="$SELF" \
    --wsrep-node-address="$address" "$@"
}

join() {  # peer
  local cluster
  cluster=$(peers | paste -sd, -)
  log "joining the cluster through $1 (gcomm://$cluster)"
  serve --wsrep-cluster-address="gcomm://$cluster"
}

if [ "${1:-mariadbd}" != mariadbd ]; then exec "$@"; fi
chown -R mysql:mysql "$DATADIR" /run/mysqld

if [ ! -f "$DATADIR/grastate.dat" ]; then
  if [ "$SELF" = "$BOOTSTRAP" ]; then
    # A first deployment starts every node at once; the others wait for this one.
    for _ in $(seq 1 10); do
      if peer=$(running_peer); then join "$peer"; fi
      sleep 1
    done
    # An initialization cut short leaves files behind: start it again from nothing.
    if [ ! -f "$DATADIR/.ems-initialized" ]; then
      rm -rf "${DATADIR:?}"/*
      initialize
      touch "$DATADIR/.ems-initialized"
    fi
    log "no peer runs: bootstrapping a new cluster"
    serve --wsrep-new-cluster --wsrep-cluster-address="gcomm://"
  fi
  log "waiting for a running peer to join by state transfer"
  until peer=$(running_peer); do sleep 2; done
  rm -rf "${DATADIR:?}"/*
  join "$peer"
fi

while true; do
  if peer=$(running_peer); then join "$peer"; fi
  if grep -q '^safe_to_bootstrap: *1' "$DATADIR/grastate.dat"; then
    log "no peer runs and this node left last (safe_to_bootstrap: 1): bootstrapping from its data"
    serve --wsrep-new-cluster --wsrep-cluster-address="gcomm://"
  fi
  log "no peer runs and this node is not safe to bootstrap; waiting (README: Run on several machines)"
  sleep 5
done
