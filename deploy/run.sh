#!/usr/bin/env bash
# Quick start, command one: set up the local services and run sluice as a Cloudify sidecar
# (no configuration file: cloudify-monitoring -> sluice.metrics -> InfluxDB database `cloudify`,
# the manager's event and log exchanges -> Elasticsearch, its policies -> its REST API).
# Extra arguments go to `sluice run`, e.g. `deploy/run.sh --config my.toml`.
# `deploy/run.sh --demo ...` also starts a demo feed (`sluice-load demo`: what a small manager
# sends, live), for a first look without a manager; it stops with sluice.
# `deploy/run.sh --tier ...` runs the example standalone tier instead (deploy/examples/tier.toml:
# Graphite, InfluxDB line protocol and Prometheus remote_write in; InfluxDB 1 and 3 out). When
# nothing listens on 127.0.0.1:8181 it starts `fake-influxdb3` there, the test double standing in
# for InfluxDB 3 Core (in memory only); a real InfluxDB 3 on that port is used as it is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=sidecar
case ${1:-} in
--demo)
    mode=demo
    shift
    ;;
--tier)
    mode=tier
    shift
    ;;
esac

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

deploy/services.sh
case $mode in
sidecar) cargo build --release --locked --bin sluice ;;
demo) cargo build --release --locked --bin sluice --bin sluice-load ;;
tier) cargo build --release --locked --bin sluice --bin fake-influxdb3 ;;
esac
# The rule stage checkpoints into /var/lib/sluice/rules by default, which only root can create;
# other users get a directory of their own (set SLUICE_RULES__STATE_DIR to choose another).
if [ "$(id -u)" -ne 0 ]; then
    export SLUICE_RULES__STATE_DIR="${SLUICE_RULES__STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/sluice/rules}"
fi
if [ "$mode" = sidecar ]; then
    exec target/release/sluice run "$@"
fi

# Everything started below stops with sluice (or with Ctrl-C).
pids=()
trap 'if [ "${#pids[@]}" -gt 0 ]; then kill -TERM "${pids[@]}" 2>/dev/null || true; fi; wait' EXIT INT TERM

if [ "$mode" = demo ]; then
    target/release/sluice run "$@" &
    sluice_pid=$!
    pids+=("$sluice_pid")
    # The feed publishes to the manager's exchanges; sluice declares them as the manager does,
    # and so does the feed, so which starts first does not matter.
    target/release/sluice-load demo >&2 &
    pids+=("$!")
    wait "$sluice_pid"
    exit
fi

if port_open 8181; then
    echo "influxdb3: something already listens on 127.0.0.1:8181; the example's v3 sink writes to it"
else
    echo "influxdb3: starting fake-influxdb3, the InfluxDB 3 Core test double, on 127.0.0.1:8181"
    target/release/fake-influxdb3 127.0.0.1:8181 &
    pids+=("$!")
    # It binds at once; sluice's v3 sink retries until it answers in any case.
    for _ in $(seq 1 50); do
        if port_open 8181; then break; fi
        sleep 0.1
    done
fi
target/release/sluice run --config deploy/examples/tier.toml "$@" &
sluice_pid=$!
pids+=("$sluice_pid")
wait "$sluice_pid"
