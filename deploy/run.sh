#!/usr/bin/env bash
# Quick start, command one: set up the local services and run sluice as a Cloudify sidecar
# (no configuration file: cloudify-monitoring -> sluice.metrics -> InfluxDB database `cloudify`,
# the manager's event and log exchanges -> Elasticsearch, its policies -> its REST API).
# Extra arguments go to `sluice run`, e.g. `deploy/run.sh --config my.toml`.
# `deploy/run.sh --demo ...` also starts a demo feed (`sluice-load demo`: what a small manager
# sends, live), for a first look without a manager; it stops with sluice.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

demo=false
if [[ ${1:-} == --demo ]]; then
    demo=true
    shift
fi

deploy/services.sh
if $demo; then
    cargo build --release --locked --bin sluice --bin sluice-load
else
    cargo build --release --locked --bin sluice
fi
# The rule stage checkpoints into /var/lib/sluice/rules by default, which only root can create;
# other users get a directory of their own (set SLUICE_RULES__STATE_DIR to choose another).
if [ "$(id -u)" -ne 0 ]; then
    export SLUICE_RULES__STATE_DIR="${SLUICE_RULES__STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/sluice/rules}"
fi
if ! $demo; then
    exec target/release/sluice run "$@"
fi

target/release/sluice run "$@" &
sluice_pid=$!
# The feed publishes to the manager's exchanges; sluice declares them as the manager does, and
# so does the feed, so which starts first does not matter.
target/release/sluice-load demo >&2 &
demo_pid=$!
trap 'kill -TERM "$demo_pid" "$sluice_pid" 2>/dev/null || true; wait' EXIT INT TERM
wait "$sluice_pid"
