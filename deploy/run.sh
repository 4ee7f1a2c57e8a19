#!/usr/bin/env bash
# Quick start, command one: set up the local services and run sluice as a Cloudify sidecar
# (no configuration file: cloudify-monitoring -> sluice.metrics -> InfluxDB database `cloudify`,
# the manager's event and log exchanges -> Elasticsearch, its policies -> its REST API).
# Extra arguments go to `sluice run`, e.g. `deploy/run.sh --config my.toml`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

deploy/services.sh
cargo build --release --locked --bin sluice
# The rule stage checkpoints into /var/lib/sluice/rules by default, which only root can create;
# other users get a directory of their own (set SLUICE_RULES__STATE_DIR to choose another).
if [ "$(id -u)" -ne 0 ]; then
    export SLUICE_RULES__STATE_DIR="${SLUICE_RULES__STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/sluice/rules}"
fi
exec target/release/sluice run "$@"
