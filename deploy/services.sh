#!/usr/bin/env bash
# Installs (from Debian's packages, where missing) and starts the services sluice talks to, on
# loopback: RabbitMQ on 127.0.0.1:5672 and InfluxDB 1.x on 127.0.0.1:8086.
# Idempotent: a service that already answers is left alone.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log_dir="${SLUICE_SERVICE_LOG_DIR:-/var/log/sluice-services}"
mkdir -p "$log_dir"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=false
install_packages() {
    if [ "$apt_updated" = false ]; then
        as_root apt-get update -qq
        apt_updated=true
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_for() {
    local what=$1 seconds=$2
    shift 2
    for _ in $(seq 1 "$((seconds * 5))"); do
        if "$@"; then return 0; fi
        sleep 0.2
    done
    echo "error: $what did not come up within ${seconds}s; see $log_dir" >&2
    return 1
}

influx_ready() {
    curl -fsS -o /dev/null "http://127.0.0.1:8086/ping" 2>/dev/null
}

command -v curl >/dev/null || install_packages curl ca-certificates

# RabbitMQ
if port_open 5672; then
    echo "rabbitmq: already running on 127.0.0.1:5672"
else
    command -v rabbitmq-server >/dev/null || install_packages rabbitmq-server
    echo "rabbitmq: starting"
    as_root env RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached
    wait_for rabbitmq 120 port_open 5672
fi

# InfluxDB 1.x (Debian's `influxdb` package)
if influx_ready; then
    echo "influxdb: already running on 127.0.0.1:8086"
else
    command -v influxd >/dev/null || install_packages influxdb influxdb-client
    data_dir="${SLUICE_INFLUXDB_DATA_DIR:-/var/lib/influxdb}"
    mkdir -p "$data_dir"
    echo "influxdb: starting (data in $data_dir)"
    INFLUXDB_META_DIR="$data_dir/meta" INFLUXDB_DATA_DIR="$data_dir/data" \
        INFLUXDB_DATA_WAL_DIR="$data_dir/wal" \
        nohup influxd -config "$here/influxdb.conf" >>"$log_dir/influxdb.log" 2>&1 &
    wait_for influxdb 60 influx_ready
fi
