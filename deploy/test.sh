#!/usr/bin/env bash
# Quick start, command two: set up the local services and run every check CI runs:
# formatting, lints, and the whole test suite against the real RabbitMQ and InfluxDB (and, for
# the status page, Debian's headless Chromium).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

deploy/services.sh
deploy/browser.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
