#!/usr/bin/env bash
# Create the Docker secrets that swarm/stack.yml expects, once per swarm. Values
# come from the environment when given, otherwise strong random ones are made:
#   EMS_JWT_SECRET, EMS_DB_PASSWORD, EMS_AMQP_PASSWORD (the broker's administrator),
#   EMS_LLM_API_KEY (optional); each service's broker password is always random.
# EMS_SECRET_LABEL (default ems=1) labels what this script creates.
# Existing secrets are left alone (Docker secrets are immutable; to rotate one,
# remove the stack, `docker secret rm` it and run this again).
set -euo pipefail

exists() { docker secret inspect "$1" >/dev/null 2>&1; }
random() { head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40; }
create() {  # name value
  printf '%s' "$2" | docker secret create --label "${EMS_SECRET_LABEL:-ems=1}" "$1" - >/dev/null
  echo "created secret $1"
}

exists ems_jwt_secret || create ems_jwt_secret "${EMS_JWT_SECRET:-$(random)}"
exists ems_db_password || create ems_db_password "${EMS_DB_PASSWORD:-$(random)}"
# An empty secret is refused: a lone newline reads as "no LLM key" (settings strip it).
exists ems_llm_api_key || create ems_llm_api_key "${EMS_LLM_API_KEY:-$'\n'}"

# The broker's credentials and the services' AMQP URL are two views of one password.
if exists ems_amqp_url && exists ems_rabbitmq_credentials; then
  :
elif exists ems_amqp_url || exists ems_rabbitmq_credentials; then
  echo "only one of ems_amqp_url / ems_rabbitmq_credentials exists: remove it and run again" >&2
  exit 1
else
  password=${EMS_AMQP_PASSWORD:-$(random)}
  case $password in *[!A-Za-z0-9._~-]*)
    echo "EMS_AMQP_PASSWORD may only use letters, digits and . _ ~ - (it goes into a URL)" >&2
    exit 1;;
  esac
  create ems_rabbitmq_credentials "$(printf 'default_user = ems\ndefault_pass = %s\n' "$password")"
  create ems_amqp_url "amqp://ems:${password}@rabbitmq:5672/%2F"
fi
# Every other task connects as its own service's user (common/broker_users.py), created
# by the migrate job with the password below; it is given the broker's address only.
exists ems_amqp_address || create ems_amqp_address "amqp://rabbitmq:5672/%2F"
for service in web balancer monitor notifier support simulator; do
  exists "ems_amqp_password_$service" || create "ems_amqp_password_$service" "$(random)"
done
