#!/usr/bin/env bash
# Quick start, command one: set up the local services and run sluice as a Cloudify sidecar
# (no configuration file: cloudify-monitoring -> sluice.metrics -> InfluxDB database `cloudify`).
# Extra arguments go to `sluice run`, e.g. `deploy/run.sh --config my.toml`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

deploy/services.sh
cargo build --release --locked --bin sluice
exec target/release/sluice run "$@"
