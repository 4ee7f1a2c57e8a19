#!/usr/bin/env bash
# Runs every fuzz target for N seconds (default 600), one after another (each takes one core),
# and prints the executions and findings of each. Findings are written by libFuzzer to
# artifacts/<target>/; a target stops at its first. New inputs that reach new code are added to
# corpus/<target>/ (minimise with `cargo +nightly fuzz cmin --sanitizer none <target>` when it
# grows). Both are replayed on stable by `cargo test -p sluice-fuzz-targets`.
#
# The sanitizer is off: every sluice crate forbids unsafe code, so AddressSanitizer would only
# slow the runs down; overflow checks and debug assertions stay on (cargo-fuzz's default).
set -euo pipefail

seconds="${1:-600}"
cd "$(dirname "$0")"
targets=$(cargo +nightly fuzz list)

cargo +nightly fuzz build --sanitizer none
printf '%-24s %8s %14s %9s\n' target seconds executions findings
for target in $targets; do
    mkdir -p "corpus/$target" "artifacts/$target"
    before=$(find "artifacts/$target" -type f | wc -l)
    log=$(mktemp)
    # A finding makes libFuzzer exit non-zero; the loop goes on to the next target.
    cargo +nightly fuzz run --sanitizer none "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || true
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    after=$(find "artifacts/$target" -type f | wc -l)
    printf '%-24s %8s %14s %9s\n' "$target" "$seconds" "${executions:-?}" "$((after - before))"
    if [ "$after" -gt "$before" ]; then
        grep -m1 -A3 "panicked at\|ERROR: libFuzzer" "$log" | sed 's/^/    /' || true
    fi
    rm -f "$log"
done
