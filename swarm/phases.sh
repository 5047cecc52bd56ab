# Progress lines and per-phase timings for the Swarm test scripts (sourced by
# swarm/test.sh and swarm/cluster-test.sh): `step` announces, `phase_done NAME`
# records the seconds since the last phase, `report_timings TITLE` prints them.
started=$(date +%s)
phase_started=$started
declare -a timings=()

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
phase_done() {
  local now; now=$(date +%s)
  timings+=("$(printf '%-28s %4ss' "$1" $((now - phase_started)))")
  phase_started=$now
}
report_timings() {
  echo "$1 timings:"
  printf '  %s\n' "${timings[@]}"
  echo "  total                        $(( $(date +%s) - started ))s"
}
