#!/usr/bin/env bash
# Tests the packages (see "Packages" in README.md) on this machine, as root:
#   1. the Kubernetes manifests validate offline against Kubernetes' schemas, the Dockerfile
#      passes hadolint, and the configurations the manifests and the image carry pass
#      `sluice validate` (the image itself cannot be built: no Docker engine runs here);
#   2. the .deb builds, installs, creates its user, state directory and conffiles;
#   3. its service starts as the unit says and /readyz answers 200; SIGTERM stops it with exit 0;
#   4. `dpkg --purge` removes the user, the state and the files.
# Needs RabbitMQ and InfluxDB on loopback (deploy/services.sh); deploy/test.sh runs it last.
# Idempotent: everything it installs or creates is removed on exit, failed or not.
#
# SLUICE_PACKAGE_PROFILE=release tests a release package; the default, dev, packages a debug
# build, which reuses most of what deploy/test.sh's `cargo test` has just compiled, to keep CI
# short.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_INCREMENTAL=0

started=$SECONDS
profile=${SLUICE_PACKAGE_PROFILE:-dev}
work=target/package-test
mkdir -p "$work"
work=$(cd "$work" && pwd)
sluice_log="$work/sluice.log"
rm -f "$sluice_log"
influx_url=${INFLUX_URL:-http://127.0.0.1:8086}
# Names of the test's own, so that it neither takes nor leaves anything in what other tests or a
# running sidecar use.
test_name=sluice.package-test
test_database=sluice_package_test

say() { echo "test-package: $*" >&2; }
fail() {
    say "FAILED: $*"
    exit 1
}

if [ "$(id -u)" -ne 0 ]; then
    fail "run as root: it installs and purges the sluice package (dpkg -i, dpkg --purge)"
fi

# Installed, or purgeable (removed with its conffiles left, half-installed...).
installed() {
    local status
    status=$(dpkg-query -W -f='${db:Status-Status}' sluice 2>/dev/null) || return 1
    [ -n "$status" ] && [ "$status" != not-installed ]
}

systemd_runs() { [ -d /run/systemd/system ]; }

sluice_pid=
stop_by_hand() {
    if [ -n "$sluice_pid" ] && kill -0 "$sluice_pid" 2>/dev/null; then
        kill -KILL "$sluice_pid" 2>/dev/null || true
        wait "$sluice_pid" 2>/dev/null || true
    fi
    sluice_pid=
}

cleanup() {
    local status=$?
    trap - EXIT
    stop_by_hand
    if systemd_runs; then systemctl stop sluice 2>/dev/null || true; fi
    if installed; then dpkg --purge sluice >/dev/null 2>&1 || say "cleanup: dpkg --purge sluice failed"; fi
    if command -v rabbitmqctl >/dev/null; then
        # The metrics exchange is auto-delete and goes with its queue; the dead-letter exchange
        # stays, empty and unbound, under the same name every run.
        for queue in "$test_name" "$test_name.dead-letter"; do
            rabbitmqctl -q delete_queue "$queue" >/dev/null 2>&1 || true
        done
    fi
    curl -fsS -o /dev/null -XPOST "$influx_url/query" --data-urlencode "q=DROP DATABASE $test_database" 2>/dev/null || true
    if [ "$status" -ne 0 ] && [ -s "$sluice_log" ]; then
        say "the last lines of sluice's log ($sluice_log):"
        tail -n 30 "$sluice_log" >&2
    fi
    say "took $((SECONDS - started)) s"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. Kubernetes manifests and the Dockerfile, offline -------------------------------------
# The validators, pinned; reinstalled only when their requirements change.
venv="$work/venv"
requirements=(deploy/kubernetes/requirements.txt deploy/docker/requirements.txt)
wanted=$(cat "${requirements[@]}" | sha256sum)
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/hadolint" ] ||
    [ "$(cat "$venv/requirements.sha256" 2>/dev/null)" != "$wanted" ]; then
    say "installing the validators (${requirements[*]})"
    rm -rf "$venv"
    python3 -m venv "$venv"
    for file in "${requirements[@]}"; do
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$file"
    done
    echo "$wanted" >"$venv/requirements.sha256"
fi
manifests=()
for file in deploy/kubernetes/*.yaml; do
    # kustomize's own file is not a Kubernetes object.
    [ "$(basename "$file")" = kustomization.yaml ] || manifests+=("$file")
done
# Without a network, so that a validator that fetched its schemas would fail here rather than
# pass by downloading them.
offline=()
if unshare --net true 2>/dev/null; then offline=(unshare --net); fi
"${offline[@]}" "$venv/bin/kubernetes-validate" --strict --quiet "${manifests[@]}" ||
    fail "the Kubernetes manifests do not validate"
say "kubernetes: ${#manifests[@]} manifests valid against the schemas bundled in $("$venv/bin/kubernetes-validate" --version)${offline:+ (offline)}"
"${offline[@]}" "$venv/bin/hadolint" --no-color deploy/docker/Dockerfile ||
    fail "hadolint finds fault with deploy/docker/Dockerfile"
say "docker: deploy/docker/Dockerfile passes hadolint $("$venv/bin/hadolint" --version | awk '{print $NF}') (not built: no Docker engine here)"
"$venv/bin/python" - deploy/kubernetes/kustomization.yaml <<'EOF' || fail "kustomization.yaml names a missing file"
import os, sys, yaml
path = sys.argv[1]
for resource in yaml.safe_load(open(path))["resources"]:
    if not os.path.isfile(os.path.join(os.path.dirname(path), resource)):
        sys.exit(f"{path}: {resource} does not exist")
EOF

# --- 2. The package ---------------------------------------------------------------------------
say "building the .deb (profile $profile)"
deb=$(deploy/debian/build-deb.sh --profile "$profile" 2>"$work/build-deb.log" | tail -n 1) || {
    tail -n 30 "$work/build-deb.log" >&2
    fail "deploy/debian/build-deb.sh failed"
}
[ -f "$deb" ] || fail "build-deb.sh named $deb, which does not exist"
say "built $deb ($(du -h "$deb" | cut -f1))"
if ! command -v lintian >/dev/null; then
    say "installing lintian (Debian's package checker)"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lintian >/dev/null 2>&1 || true
fi
if command -v lintian >/dev/null; then
    # Suppressed: the placeholder maintainer address (the project has none to give), no bug to
    # close and no copyright line (not a Debian archive upload), and /etc/default/sluice's 0600,
    # which is on purpose (credentials).
    lintian --fail-on error,warning --allow-root \
        --suppress-tags bogus-mail-host,bogus-mail-host-in-debian-changelog,initial-upload-closes-no-bugs,copyright-without-copyright-notice,non-standard-file-perm \
        "$deb" >&2 || fail "lintian finds fault with the package"
    say "lintian: no errors or warnings"
else
    fail "lintian could not be installed (apt-get install lintian)"
fi

# The configurations the image and the ConfigMap carry, checked by the binary just packaged.
target_dir=$(dirname "$(dirname "$deb")")
case $profile in dev) bin=$target_dir/debug/sluice ;; *) bin=$target_dir/$profile/sluice ;; esac
configmap_toml="$work/configmap-sluice.toml"
"$venv/bin/python" -c 'import sys, yaml; sys.stdout.write(yaml.safe_load(open(sys.argv[1]))["data"]["sluice.toml"])' \
    deploy/kubernetes/configmap.yaml >"$configmap_toml"
SLUICE_AMQP__URL='amqp://u:p@rabbitmq:5672/%2f' "$bin" validate --config "$configmap_toml" >/dev/null ||
    fail "the ConfigMap's sluice.toml does not validate"
SLUICE_ADMIN__LISTEN=0.0.0.0:9598 "$bin" validate --config deploy/debian/sluice.toml >/dev/null ||
    fail "the image's configuration (deploy/debian/sluice.toml with its ENV) does not validate"

if installed; then
    say "a sluice package is already installed (left by an interrupted run?): purging it first"
    dpkg --purge sluice >/dev/null
fi
dpkg -i "$deb" >"$work/dpkg-install.log" 2>&1 || {
    cat "$work/dpkg-install.log" >&2
    fail "dpkg -i failed"
}
say "installed: $(dpkg-query -W -f='${Package} ${Version}' sluice)"

user_entry=$(getent passwd sluice) || fail "postinst did not create the user sluice"
IFS=: read -r _ _ uid gid _ home shell <<<"$user_entry"
[ "$uid" -lt 1000 ] || fail "sluice is not a system user (uid $uid)"
[ "$(getent group sluice | cut -d: -f3)" = "$gid" ] || fail "sluice's primary group is not sluice"
[[ $home == /var/lib/sluice && $shell == /usr/sbin/nologin ]] ||
    fail "sluice's home and shell are $home and $shell"
[ "$(stat -c '%U:%G %a' /var/lib/sluice)" = "sluice:sluice 750" ] ||
    fail "/var/lib/sluice is $(stat -c '%U:%G %a' /var/lib/sluice)"
[ "$(stat -c '%U %a' /etc/default/sluice)" = "root 600" ] || fail "/etc/default/sluice is not root's, 0600"
for file in /usr/bin/sluice /usr/lib/systemd/system/sluice.service /etc/sluice/sluice.toml \
    /usr/share/man/man1/sluice.1.gz /usr/share/man/man1/sluice-run.1.gz \
    /usr/share/bash-completion/completions/sluice /usr/share/zsh/vendor-completions/_sluice \
    /usr/share/fish/vendor_completions.d/sluice.fish; do
    [ -f "$file" ] || fail "$file is not installed"
done
conffiles=$(dpkg-query -W -f='${Conffiles}' sluice)
for conffile in /etc/sluice/sluice.toml /etc/default/sluice; do
    grep -q " $conffile " <<<"$conffiles" || fail "$conffile is not a conffile"
done
# Enabled for the next boot even where systemd does not run now, as dh_installsystemd does.
if command -v deb-systemd-helper >/dev/null; then
    [ -L /etc/systemd/system/multi-user.target.wants/sluice.service ] || fail "postinst did not enable the unit"
fi
# The default file changes nothing: what `sluice validate` says of no file at all.
runuser -u sluice -- /usr/bin/sluice validate --config /etc/sluice/sluice.toml >/dev/null ||
    fail "the installed /etc/sluice/sluice.toml does not validate"
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify --man=no /usr/lib/systemd/system/sluice.service ||
        fail "systemd-analyze verify finds fault with the installed unit"
fi

# --- 3. The service -------------------------------------------------------------------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The administrator's way to change the service's settings: the EnvironmentFile. No
# Elasticsearch runs here, so the events path is off (otherwise /readyz stays 503).
cat >>/etc/default/sluice <<EOF

# Added by deploy/test-package.sh
SLUICE_EVENTS__ENABLED=false
SLUICE_ADMIN__LISTEN=127.0.0.1:$port
SLUICE_METRICS__EXCHANGE=$test_name
SLUICE_METRICS__QUEUE=$test_name
SLUICE_METRICS__QUEUE_MAX_LENGTH=1000
SLUICE_DEAD_LETTER__EXCHANGE=$test_name.dead-letter
SLUICE_DEAD_LETTER__QUEUE=$test_name.dead-letter
SLUICE_INFLUX__URL=$influx_url
SLUICE_INFLUX__DATABASE=$test_database
EOF

unit=/usr/lib/systemd/system/sluice.service
unit_value() { sed -n "s/^$1=//p" "$unit"; }
if systemd_runs; then
    # postinst has started it with the settings of before; the new ones need a restart.
    systemctl daemon-reload
    systemctl restart sluice
    main_pid() { systemctl show -p MainPID --value sluice; }
else
    # systemd is not PID 1 here (a VM whose init is something else), so nothing would run the
    # unit: start what it says, as it says. ExecStart, User and Group, Environment= and then
    # EnvironmentFile= (later wins, as in systemd), the working directory / and a clean
    # environment. The sandboxing directives need systemd and are not applied.
    exec_start=$(unit_value ExecStart)
    user=$(unit_value User)
    group=$(unit_value Group)
    [[ -n $exec_start && -n $user ]] || fail "$unit has no ExecStart or User"
    environment=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
    while IFS= read -r assignment; do
        environment+=("$assignment")
    done < <(unit_value Environment)
    while IFS= read -r file; do
        file=${file#-}
        [ -r "$file" ] || continue
        while IFS= read -r line; do
            if [[ $line =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; then environment+=("$line"); fi
        done <"$file"
    done < <(unit_value EnvironmentFile)
    read -r -a command <<<"$exec_start"
    (cd / && exec setpriv --reuid="$user" --regid="${group:-$user}" --init-groups --no-new-privs \
        env -i "${environment[@]}" "${command[@]}") 2>>"$sluice_log" &
    sluice_pid=$!
    main_pid() { echo "$sluice_pid"; }
fi

deadline=$((SECONDS + 60))
ready=
while [ "$SECONDS" -lt "$deadline" ]; do
    pid=$(main_pid)
    if [ -z "$pid" ] || [ "$pid" = 0 ] || ! kill -0 "$pid" 2>/dev/null; then
        fail "sluice exited before it was ready"
    fi
    code=$(curl -s -o "$work/readyz" -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true)
    if [ "$code" = 200 ]; then
        ready=yes
        break
    fi
    sleep 0.2
done
[ -n "$ready" ] || fail "/readyz did not answer 200 within 60 s (last: ${code:-none} $(cat "$work/readyz" 2>/dev/null))"
say "/readyz answered 200 after $((60 - deadline + SECONDS)) s"
pid=$(main_pid)
[ "$(ps -o user= -p "$pid" | tr -d ' ')" = sluice ] || fail "sluice runs as $(ps -o user= -p "$pid"), not sluice"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")" = 200 ] || fail "/healthz is not 200"
curl -fsS "http://127.0.0.1:$port/metrics" | grep -q '^sluice_' || fail "/metrics serves no sluice_ series"

# SIGTERM, as the unit's KillSignal, within its TimeoutStopSec.
stop_seconds=$(unit_value TimeoutStopSec)
if systemd_runs; then
    systemctl stop sluice
    [ "$(systemctl show -p ExecMainStatus --value sluice)" = 0 ] || fail "sluice did not exit 0 on stop"
else
    kill -TERM "$sluice_pid"
    deadline=$((SECONDS + ${stop_seconds:-45}))
    while kill -0 "$sluice_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    kill -0 "$sluice_pid" 2>/dev/null && fail "sluice was still running ${stop_seconds:-45} s after SIGTERM"
    exit_code=0
    wait "$sluice_pid" || exit_code=$?
    sluice_pid=
    [ "$exit_code" -eq 0 ] || fail "sluice exited $exit_code on SIGTERM"
fi
grep -q 'stopped cleanly' "$sluice_log" || fail "sluice's log does not say it stopped cleanly"
# The rule stage checkpoints at a clean stop, as sluice, into the unit's state directory.
[ "$(stat -c %U /var/lib/sluice/rules/rules.json 2>/dev/null)" = sluice ] ||
    fail "no checkpoint of sluice's own in /var/lib/sluice/rules"
say "SIGTERM: exit 0, stopped cleanly, checkpoint written"

# --- 4. Purge ---------------------------------------------------------------------------------
dpkg --purge sluice >"$work/dpkg-purge.log" 2>&1 || {
    cat "$work/dpkg-purge.log" >&2
    fail "dpkg --purge failed"
}
! getent passwd sluice >/dev/null || fail "the user sluice is still there after the purge"
! getent group sluice >/dev/null || fail "the group sluice is still there after the purge"
for path in /var/lib/sluice /etc/sluice /etc/default/sluice /usr/bin/sluice \
    /usr/lib/systemd/system/sluice.service /etc/systemd/system/multi-user.target.wants/sluice.service; do
    [ ! -e "$path" ] || fail "$path is still there after the purge"
done
say "purged: no user, group, state or files left"
say "ok"
