#!/usr/bin/env bash
# Builds the sluice .deb (into target/debian/) and prints its path as the last line on stdout.
#
#   deploy/debian/build-deb.sh                    # release build: what to ship
#   deploy/debian/build-deb.sh --profile dev      # reuses the debug build (deploy/test-package.sh)
#
# Other arguments go to `cargo deb` (e.g. --deb-revision 2). The manual pages and completions are
# generated here by the binary being packaged, so they always describe it, and are never
# committed. The packaging itself is [package.metadata.deb] in pipeline/sluice/Cargo.toml and the
# files beside this script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

# Pinned: the metadata, the maintainer-script fragments and the --profile behaviour below are
# those of this version.
CARGO_DEB_VERSION=3.8.0
export CARGO_INCREMENTAL=0

profile=release
if [[ ${1:-} == --profile ]]; then
    profile=$2
    shift 2
fi

if [[ "$(cargo deb --version 2>/dev/null || true)" != "cargo-deb $CARGO_DEB_VERSION" ]]; then
    echo "build-deb: installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked >&2
fi

target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
case $profile in
    dev) profile_dir=debug ;;
    *) profile_dir=$profile ;;
esac
bin="$target_dir/$profile_dir/sluice"

# Always built, so the package never holds a stale binary. After `cargo test --workspace` this
# relinks sluice and builds the few dependencies whose features differ without the test targets
# (about a minute on two cores), rather than reusing the test build's binary.
cargo build --locked --profile "$profile" -p sluice --bin sluice >&2

assets=deploy/debian/generated
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
"$bin" man --dir "$assets/man"
"$bin" completions bash >"$assets/completions/sluice.bash"
"$bin" completions zsh >"$assets/completions/_sluice"
"$bin" completions fish >"$assets/completions/sluice.fish"

if [[ $profile == dev ]]; then
    # cargo-deb warns that dev builds are for testing only, which is what this one is for; the
    # debug binary is large, so strip it and compress quickly.
    extra=(--strip --fast)
else
    # The release profile keeps line tables (for backtraces and profiles): they go into a
    # sluice-dbgsym .ddeb beside the .deb, as Debian ships them, and the binary is stripped.
    extra=(--dbgsym)
fi
output="$target_dir/debian"
mkdir -p "$output"
# cargo deb prints the path of what it made on stdout, the .deb last.
cargo deb -p sluice --no-build --locked --profile "$profile" --output "$output" "${extra[@]}" "$@" |
    tail -n 1
