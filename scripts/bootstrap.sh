#!/usr/bin/env bash
# Prepare this machine for EMS: system packages, MariaDB and RabbitMQ running with
# the plugins EMS needs, the Python virtualenv, the local secrets and the browser libraries.
# Safe to run again: every step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
# prometheus: promtool checks the alerting rules in the tests (swarm/prometheus/).
APT_PACKAGES=(caddy chromium mariadb-server rabbitmq-server nodejs npm prometheus)
RABBITMQ_PLUGINS=(rabbitmq_stomp rabbitmq_management)

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

missing_packages() {
  local missing=()
  for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$package")
  done
  echo "${missing[@]}"
}

install_system_packages() {
  local missing
  missing=$(missing_packages)
  # nodejs/npm may come from elsewhere than Debian; only the commands matter.
  command -v node >/dev/null && missing=${missing//nodejs/}
  command -v npm >/dev/null && missing=${missing//npm/}
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] && missing=${missing//mariadb-server/}
  [ -x /usr/sbin/rabbitmq-server ] && missing=${missing//rabbitmq-server/}
  missing=$(echo "$missing" | xargs)
  [ -z "$missing" ] && return
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages: $missing (run as root, or install them, then retry)" >&2
    exit 1
  fi
  step "Installing Debian packages: $missing"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do port_open "$port" && return; sleep 1; done
  echo "$name did not open port $port in 60 s" >&2
  exit 1
}

ensure_mariadb() {
  if ! port_open 3306; then
    step "Starting MariaDB"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    wait_for_port 3306 MariaDB
  fi
}

ensure_rabbitmq() {
  if ! port_open 5672; then
    step "Starting RabbitMQ"
    rabbitmq-server -detached
    rabbitmqctl await_startup >/dev/null
  fi
  local enabled
  enabled=$(rabbitmq-plugins list -e -m 2>/dev/null || true)
  for plugin in "${RABBITMQ_PLUGINS[@]}"; do
    if ! grep -qx "$plugin" <<<"$enabled"; then
      step "Enabling RabbitMQ plugin $plugin"
      rabbitmq-plugins enable "$plugin" >/dev/null
    fi
  done
  wait_for_port 61613 "RabbitMQ STOMP"
}

ensure_virtualenv() {
  local stamp=$VENV/.requirements.sha
  local wanted
  wanted=$(cat requirements/*.txt | sha256sum | cut -d' ' -f1)
  [ -x $VENV/bin/python ] || { step "Creating the virtualenv"; python3 -m venv $VENV; }
  if [ "$(cat $stamp 2>/dev/null)" != "$wanted" ]; then
    step "Installing Python packages"
    # This machine's pip configuration names optional local indexes; their absence is noise.
    $VENV/bin/pip install -q --disable-pip-version-check -r requirements/dev.txt \
      2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    echo "$wanted" >$stamp
  fi
}

ensure_secrets() {
  # Random secrets on first use, in a git-ignored file only its owner can read; every
  # process reads it (common/settings.py), so no secret is ever known in advance. It
  # holds each service's broker password too: `make migrate` creates the users with them.
  $VENV/bin/python -m common.security
}

ensure_browser_assets() {
  local vendor=web/static/vendor
  if [ ! -f $vendor/.installed ] || [ package-lock.json -nt $vendor/.installed ]; then
    step "Installing browser libraries (npm)"
    npm ci --no-audit --no-fund --loglevel=error
    mkdir -p $vendor
    cp node_modules/htmx.org/dist/htmx.min.js $vendor/
    cp node_modules/socket.io-client/dist/socket.io.min.js $vendor/
    touch $vendor/.installed
  fi
}

install_system_packages
ensure_mariadb
ensure_rabbitmq
ensure_virtualenv
ensure_secrets
ensure_browser_assets
