#!/usr/bin/env bash
# Build the EMS image from the files git knows (tracked or new, never ignored:
# no .venv, node_modules or vendor copies), so the build context stays small
# with any Docker CLI, with or without BuildKit.
#   usage: swarm/build.sh IMAGE [docker build options...]
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:?usage: swarm/build.sh IMAGE [docker build options...]}
shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' path; do [ -f "$path" ] && printf '%s\0' "$path"; done \
  | tar --null -T - -c \
  | DOCKER_BUILDKIT=0 docker build -q -f swarm/Dockerfile -t "$IMAGE" "$@" - >/dev/null 2>"$log" \
  || { grep -v "legacy builder is deprecated\|BuildKit is currently disabled\|environment-variable" "$log" >&2; exit 1; }
echo "built $IMAGE"
