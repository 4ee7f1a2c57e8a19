#!/usr/bin/env bash
# Quick start, command two: set up the local services and run every check CI runs:
# formatting, lints, the whole test suite against the real RabbitMQ and InfluxDB (and, for the
# status page, Debian's headless Chromium; for the ingestion tier, the real clients of
# deploy/clients.sh), and the packages (deploy/test-package.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

deploy/services.sh
deploy/browser.sh
deploy/clients.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The .deb installed, started and purged on this machine, and the Kubernetes manifests validated
# offline. dpkg needs root, which CI has; elsewhere it is skipped, out loud.
if [ "$(id -u)" -eq 0 ]; then
    deploy/test-package.sh
else
    echo "deploy/test.sh: skipping deploy/test-package.sh, which needs root (dpkg -i): run it with sudo" >&2
fi
