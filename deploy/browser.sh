#!/usr/bin/env bash
# Installs (from Debian's packages, where missing) the headless browser the status page's test
# drives: Chromium and its ChromeDriver (`/usr/bin/chromium`, `/usr/bin/chromedriver`).
# Idempotent: nothing is installed when both are there.
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    echo "browser: $(chromium --version 2>/dev/null | head -n1), $(chromedriver --version | head -n1)"
    exit 0
fi
echo "browser: installing chromium and chromium-driver"
# Another apt run on the machine (an engineer's, unattended upgrades) holds the lock for a while.
as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
echo "browser: $(chromium --version 2>/dev/null | head -n1), $(chromedriver --version | head -n1)"
