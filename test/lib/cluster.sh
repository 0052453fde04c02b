# shellcheck shell=bash
# test/lib/cluster.sh — set-up shared by test/demo.sh and test/run.sh:
# install what is missing with apt, build and install the extension, run a
# throwaway PostgreSQL 15 cluster on a private port and socket directory.
#
# Source it, then: quota_setup; quota_start_cluster; ...; (stops on exit).

QUOTA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
QUOTA_PG_BIN=/usr/lib/postgresql/15/bin
QUOTA_PORT=${QUOTA_PORT:-54329}
export PATH="$QUOTA_PG_BIN:$PATH"

say() { printf '\n==> %s\n' "$*"; }

# Run as root directly, otherwise through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The user that owns the cluster: PostgreSQL refuses to run as root.
cluster_user() {
    if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

# pg_ctl as the cluster's user, as one command line (for programs that restart the server).
cluster_pg_ctl() {
    if [ "$(id -u)" -eq 0 ]; then echo "runuser -u postgres -- $QUOTA_PG_BIN/pg_ctl"; else echo "$QUOTA_PG_BIN/pg_ctl"; fi
}

# From /, so that a checkout the cluster's user cannot enter (under /root) is no working directory of its.
as_cluster_user() {
    if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# Debian packages the build and the tests need; apt only when one is missing.
quota_install_packages() {
    local wanted=(build-essential postgresql-15 postgresql-server-dev-15 postgresql-client-15 cppcheck "$@")
    local missing=() p
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${missing[*]} (apt; a minute or two on a fresh machine)"
        echo "apt-get update"
        as_root apt-get update -qq
        # One line per package fetched and set up, so a slow mirror shows progress.
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" 2>&1 |
            { grep --line-buffered -E '^(Get:|Setting up |E: )' | sed -u 's/^/  /' || true; }
        [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "apt-get install failed"; return 1; }
    fi
}

# Build warning-free (-Werror) and install into PostgreSQL 15.
quota_build_install() {
    say "building quota (-Wall -Wextra -Werror) and installing it"
    make -C "$QUOTA_ROOT" -s clean >/dev/null
    make -C "$QUOTA_ROOT" -s PG_CONFIG="$QUOTA_PG_BIN/pg_config" QUOTA_WERROR=-Werror
    as_root make -C "$QUOTA_ROOT" -s PG_CONFIG="$QUOTA_PG_BIN/pg_config" install >/dev/null
}

quota_setup() {
    quota_install_packages "$@"
    quota_build_install
}

quota_stop_cluster() {
    if [ -n "${QUOTA_CLUSTER:-}" ] && [ -d "$QUOTA_CLUSTER" ]; then
        as_cluster_user pg_ctl -D "$QUOTA_CLUSTER/data" -m fast stop >/dev/null 2>&1 || true
        rm -rf "$QUOTA_CLUSTER"
    fi
    QUOTA_CLUSTER=
}

# A fresh cluster, started; PGHOST/PGPORT/PGUSER point psql and pg_regress at it.
quota_start_cluster() {
    QUOTA_CLUSTER=$(mktemp -d /tmp/quota-cluster.XXXXXX)
    export QUOTA_CLUSTER
    chmod 755 "$QUOTA_CLUSTER"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$QUOTA_CLUSTER"
    trap quota_stop_cluster EXIT
    say "starting a throwaway cluster in $QUOTA_CLUSTER (port $QUOTA_PORT, user $(cluster_user))"
    as_cluster_user initdb -D "$QUOTA_CLUSTER/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    as_cluster_user pg_ctl -D "$QUOTA_CLUSTER/data" -l "$QUOTA_CLUSTER/server.log" -w \
        -o "-p $QUOTA_PORT -k $QUOTA_CLUSTER -c listen_addresses='' -c max_connections=120 -c max_prepared_transactions=10 $*" start >/dev/null
    export PGHOST=$QUOTA_CLUSTER PGPORT=$QUOTA_PORT PGUSER=postgres PGDATABASE=postgres
}

quota_restart_cluster() {
    as_cluster_user pg_ctl -D "$QUOTA_CLUSTER/data" -l "$QUOTA_CLUSTER/server.log" -w "$@" restart >/dev/null
}
