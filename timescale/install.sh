#!/usr/bin/env bash
# Make sure PostgreSQL and the TimescaleDB extension are installed on this machine.
#
# Idempotent: returns at once when the server binaries and the extension are there.
# On Debian-like systems with no TimescaleDB binary package, builds the Apache-licensed
# part from Debian's own source package (trixie), without changing the system's package
# set: apt reads a private sources list holding only that deb-src line.
set -euo pipefail

PG_MAJOR="${SENTINEL_PG_MAJOR:-15}"
TSDB_SUITE="${SENTINEL_TSDB_SUITE:-trixie}"
CACHE="${SENTINEL_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sentinel/timescaledb}"

say() { printf '[timescale] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

pg_bin="/usr/lib/postgresql/${PG_MAJOR}/bin"
pg_config="${pg_bin}/pg_config"
ext_dir="/usr/share/postgresql/${PG_MAJOR}/extension"

have_server() { [[ -x "${pg_bin}/postgres" && -x "${pg_bin}/initdb" ]]; }
have_tsdb() { compgen -G "${ext_dir}/timescaledb.control" >/dev/null \
              && compgen -G "/usr/lib/postgresql/${PG_MAJOR}/lib/timescaledb*.so" >/dev/null; }

if have_server && have_tsdb; then
    exit 0
fi

if [[ ! -r /etc/debian_version ]] || ! command -v apt-get >/dev/null; then
    die "this is not a Debian-like system, so PostgreSQL ${PG_MAJOR} and TimescaleDB cannot be
  installed automatically. Either install them yourself and set DATABASE_URL, or run the
  whole stack with 'docker compose up' (see README.md)."
fi

SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || die "installing packages needs root (or sudo)"
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

apt_updated=""
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    if [[ -z "$apt_updated" ]]; then
        say "apt-get update"
        $SUDO apt-get update -qq
        apt_updated=1
    fi
    say "installing ${missing[*]}"
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install "postgresql-${PG_MAJOR}" "postgresql-client-${PG_MAJOR}"
have_tsdb && exit 0

# A binary package, when the configured repositories have one, beats building.
if apt-cache show "timescaledb-2-postgresql-${PG_MAJOR}" >/dev/null 2>&1; then
    apt_install "timescaledb-2-postgresql-${PG_MAJOR}"
    have_tsdb && exit 0
fi

apt_install "postgresql-server-dev-${PG_MAJOR}" cmake gcc make xz-utils dpkg-dev libssl-dev debian-archive-keyring

# Which Debian mirror does this system already use? Read it from its own sources.
mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | grep -vE '^[[:space:]]*#' \
          | grep -oE '^(URIs:[[:space:]]*|deb(-src)?[[:space:]]+(\[[^]]*\][[:space:]]+)?)https?://[^[:space:]]+' \
          | grep -oE 'https?://[^[:space:]]+' | grep -v -- '-security' | head -n1 || true)"
mirror="${mirror%/}"
[[ -n "$mirror" ]] || die "cannot find the Debian mirror in /etc/apt/sources.list*"

mkdir -p "$CACHE/lists/partial" "$CACHE/src"
printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' "$mirror" "$TSDB_SUITE" > "$CACHE/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$CACHE/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
          -o "Dir::State::Lists=$CACHE/lists" -o "APT::Sandbox::User=root")

if ! compgen -G "$CACHE/src/timescaledb_*.orig.tar.xz" >/dev/null; then
    say "fetching Debian's timescaledb source package from ${TSDB_SUITE}"
    apt-get "${apt_opts[@]}" update -qq
    (cd "$CACHE/src" && apt-get "${apt_opts[@]}" source --download-only timescaledb >/dev/null)
fi
orig="$(ls "$CACHE"/src/timescaledb_*.orig.tar.xz | sort -V | tail -n1)"
version="$(basename "$orig" .orig.tar.xz)"
version="${version#timescaledb_}"
version="${version%%+*}"

work="$CACHE/build-${version}"
rm -rf "$work"
mkdir -p "$work"
tar -xf "$orig" -C "$work" --strip-components=1
say "building TimescaleDB ${version} (Apache-licensed part) for PostgreSQL ${PG_MAJOR}"
(
    cd "$work"
    ./bootstrap -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
        -DSEND_TELEMETRY_DEFAULT=OFF -DPG_CONFIG="$pg_config" >"$work.log" 2>&1
    cd build
    make -j"$(nproc)" >>"$work.log" 2>&1
    $SUDO make install >>"$work.log" 2>&1
) || { tail -n 40 "$work.log" >&2; die "TimescaleDB build failed (full log: $work.log)"; }
rm -rf "$work"
have_tsdb || die "TimescaleDB was built but its files are not where PostgreSQL ${PG_MAJOR} looks"
say "TimescaleDB ${version} installed"
