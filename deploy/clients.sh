#!/usr/bin/env bash
# Installs the real clients the ingestion tier's tests send through sluice, none of them written
# here: Prometheus (Debian's 2.42, `remote_write`), collectd (Debian's, `write_graphite`) and the
# official InfluxDB Python client (PyPI's `influxdb-client`, line protocol to `/api/v2/write`).
# The tests start each client themselves with their own configuration and ports; nothing here
# starts a service. Idempotent: what is there already is left alone.
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
[ -x /usr/sbin/collectd ] || missing+=(collectd-core)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "clients: installing ${missing[*]}"
    # Another apt run on the machine may hold the lock for a while.
    as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
    # policy-rc.d keeps the packages from starting their own daemons on the default ports.
    policy=/usr/sbin/policy-rc.d
    created_policy=false
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod +x "$policy"
        created_policy=true
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
    if [ "$created_policy" = true ]; then as_root rm -f "$policy"; fi
fi

python3 -c 'import influxdb_client' 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check 'influxdb-client>=1.40,<2'

echo "clients: $(prometheus --version 2>&1 | head -n1)"
echo "clients: collectd $(dpkg-query -W -f '${Version}' collectd-core)"
echo "clients: influxdb-client $(python3 -c 'import influxdb_client; print(influxdb_client.__version__)')"
