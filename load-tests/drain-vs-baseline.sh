#!/usr/bin/env bash
# One round of "sluice's drain as a ratio to the broker alone", in one session:
#   1. pre-load N Diamond bodies into sluice.metrics (sluice stopped) and the same N into a
#      baseline queue;
#   2. start sluice and time its drain into InfluxDB, with its CPU and peak RSS;
#   3. drain the baseline queue with sluice-load's null consumer, and print both and the ratios.
#
# Usage: load-tests/drain-vs-baseline.sh [COUNT] [JSON_FILE]
# Needs RabbitMQ and InfluxDB (deploy/services.sh) and release builds of sluice and sluice-load;
# BIN_DIR (default target/release) says where they are; BROKER_PID (default: the oldest
# beam.smp of the rabbitmq user) whose CPU to report beside each drain. sluice-load also reports
# InfluxDB's CPU (the oldest influxd), how busy the cores were, and the ratio the cores allow.
# sluice's drain is timed to its last ack (its /metrics on the default admin.listen), and
# InfluxDB is counted once after it: counting it while it grows would load it more than the
# writes do. Where rabbitmqctl may eval on the node (root, or the rabbitmq user), each drain also
# reports its queue process's garbage collection (broker-queue-gc.sh; BROKER_GC=off skips it).
set -euo pipefail

count=${1:-100000}
json=${2:-}
bin_dir=${BIN_DIR:-target/release}
influx_url=${INFLUX_URL:-http://127.0.0.1:8086}
broker_pid=${BROKER_PID:-$(pgrep -o -u rabbitmq beam.smp || true)}
database="drain_vs_baseline_$(date +%s)_$$"
baseline_queue="sluice-load.baseline"
state_dir=$(mktemp -d)
sluice_env=(SLUICE_EVENTS__ENABLED=false SLUICE_RULES__STATE_DIR="$state_dir"
    SLUICE_INFLUX__DATABASE="$database")

sluice_pid=""
stop_sluice() {
    if [[ -n $sluice_pid ]]; then
        kill -TERM "$sluice_pid" 2>/dev/null || true
        wait "$sluice_pid" 2>/dev/null || true
        sluice_pid=""
    fi
}
gc_pids=()
stop_all() {
    stop_sluice
    for pid in "${gc_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT

# sluice declares sluice.metrics and binds it on its first start: run it once, briefly.
env "${sluice_env[@]}" "$bin_dir/sluice" run >"$state_dir/sluice-declare.log" 2>&1 &
sluice_pid=$!
sleep 2
stop_sluice

"$bin_dir/sluice-load" --count "$count" --database "$database" --publish-only \
    --baseline-queue "$baseline_queue"

# Let the broker settle after 200,000 publishes, as sluice-load does before the null consumer.
sleep 5
# Each tracer waits for a consumer of its queue: sluice's now, the null consumer's after it.
if [[ ${BROKER_GC:-on} != off ]] && rabbitmqctl -q eval 'ok.' >/dev/null 2>&1; then
    for queue in sluice.metrics "$baseline_queue"; do
        "$(dirname "$0")/broker-queue-gc.sh" "$queue" >"$state_dir/gc-$queue.txt" 2>&1 &
        gc_pids+=($!)
    done
    # The tracers read the queues' depth once before they wait; rabbitmqctl takes about 1.5 s
    # to start, and sluice must not have taken anything by then.
    sleep 4
fi
env "${sluice_env[@]}" "$bin_dir/sluice" run >"$state_dir/sluice.log" 2>&1 &
sluice_pid=$!
"$bin_dir/sluice-load" --count "$count" --database "$database" --drain-only \
    --sluice-pid "$sluice_pid" --baseline-queue "$baseline_queue" \
    ${broker_pid:+--broker-pid "$broker_pid"} ${json:+--json "$json"}
stop_sluice
if ((${#gc_pids[@]})); then
    wait "${gc_pids[@]}" || true
    gc_pids=()
    cat "$state_dir"/gc-*.txt
fi
rm -rf "$state_dir"
# The points were only there to be counted.
curl -sS -o /dev/null -XPOST "$influx_url/query" --data-urlencode "q=DROP DATABASE \"$database\""
