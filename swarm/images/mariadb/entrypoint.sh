#!/bin/bash
# First start: create the system tables, the application user and run the
# init scripts with the server listening on a private socket only; then serve.
set -euo pipefail
DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/init.sock

sql_string() { printf "'%s'" "$(printf '%s' "$1" | sed -e "s/\\\\/\\\\\\\\/g" -e "s/'/\\\\'/g")"; }

initialize() {
  echo "entrypoint: initializing $DATADIR"
  mariadb-install-db --user=mysql --datadir="$DATADIR" --skip-test-db \
    --auth-root-authentication-method=normal >/dev/null
  mariadbd --user=mysql --datadir="$DATADIR" --skip-networking --socket="$SOCKET" &
  local pid=$!
  for _ in $(seq 1 60); do
    mariadb-admin --socket="$SOCKET" ping --silent 2>/dev/null && break
    sleep 1
  done
  local health_password root_password=""
  health_password=$(head -c 24 /dev/urandom | base64)
  printf '[mariadb-client]\nuser=healthcheck\npassword=%s\nhost=127.0.0.1\n' "$health_password" \
    >"$DATADIR/.my-healthcheck.cnf"
  chown mysql:mysql "$DATADIR/.my-healthcheck.cnf"
  chmod 0600 "$DATADIR/.my-healthcheck.cnf"
  if [ "${MARIADB_RANDOM_ROOT_PASSWORD:-}" != "" ]; then
    root_password=$(head -c 24 /dev/urandom | base64)
  elif [ -n "${MARIADB_ROOT_PASSWORD_FILE:-}" ]; then
    root_password=$(cat "$MARIADB_ROOT_PASSWORD_FILE")
  fi
  {
    echo "DELETE FROM mysql.global_priv WHERE User = '' OR (User = 'root' AND Host <> 'localhost');"
    [ -n "$root_password" ] && echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $(sql_string "$root_password");"
    if [ -n "${MARIADB_USER:-}" ]; then
      local password=${MARIADB_PASSWORD:-}
      [ -n "${MARIADB_PASSWORD_FILE:-}" ] && password=$(cat "$MARIADB_PASSWORD_FILE")
      echo "CREATE USER $(sql_string "$MARIADB_USER")@'%' IDENTIFIED BY $(sql_string "$password");"
    fi
    # As the official image does: a USAGE-only user for healthcheck.sh.
    echo "CREATE USER 'healthcheck'@'127.0.0.1' IDENTIFIED BY $(sql_string "$health_password");"
    echo "FLUSH PRIVILEGES;"
  } | mariadb --socket="$SOCKET" -uroot
  for script in /docker-entrypoint-initdb.d/*.sql; do
    [ -e "$script" ] || continue
    echo "entrypoint: running $script"
    mariadb --socket="$SOCKET" -uroot ${root_password:+-p"$root_password"} <"$script"
  done
  kill "$pid"
  wait "$pid" || true
  echo "entrypoint: initialized"
}

if [ "$1" = "mariadbd" ]; then
  [ -d "$DATADIR/mysql" ] || initialize
  exec mariadbd --user=mysql --datadir="$DATADIR"
fi
exec "$@"
