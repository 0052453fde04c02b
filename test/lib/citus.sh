# shellcheck shell=bash
# test/lib/citus.sh — a throwaway local Citus cluster: a coordinator and two
# workers on localhost ports, each with citus preloaded and quota installed.
# Source test/lib/cluster.sh first.
#
#   citus_available        true when PostgreSQL 15 has Citus (installed, or built here from
#                          ../shared/deps/citus-13.0.5.tar.gz by citus_install)
#   citus_start_cluster DB start the three nodes (ports CITUS_PORT, +1, +2), create DB on each
#                          with citus and quota, add the workers; PGHOST/PGPORT point at the coordinator
#   citus_database DB      another database on the running nodes, set up the same way
#   citus_stop_cluster     stop them and delete their files (also on exit)

CITUS_PORT=${CITUS_PORT:-54511}
# The source tarball: beside the checkout (../shared/deps, as in the project's workspace), else /work/shared/deps.
if [ -z "${CITUS_TARBALL:-}" ]; then
    CITUS_TARBALL=$QUOTA_ROOT/../shared/deps/citus-13.0.5.tar.gz
    [ -f "$CITUS_TARBALL" ] || CITUS_TARBALL=/work/shared/deps/citus-13.0.5.tar.gz
fi

citus_available() {
    [ -f "$QUOTA_PG_BIN/../lib/citus.so" ] || [ -f /usr/lib/postgresql/15/lib/citus.so ]
}

# What building Citus needs beyond quota's own packages (test/run.sh installs them up front).
CITUS_BUILD_PACKAGES="liblz4-dev libzstd-dev libcurl4-openssl-dev libkrb5-dev libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev"

# Build Citus 13.0.5 from the tarball when PostgreSQL 15 has none (about 2 minutes on 2 cores).
citus_install() {
    citus_available && return 0
    [ -f "$CITUS_TARBALL" ] || { echo "no Citus installed and no tarball at $CITUS_TARBALL"; return 1; }
    # shellcheck disable=SC2086
    quota_install_packages $CITUS_BUILD_PACKAGES
    local dir
    dir=$(mktemp -d /tmp/citus-build.XXXXXX)
    say "building Citus from $(basename "$CITUS_TARBALL") (about 2 minutes)"
    tar xzf "$CITUS_TARBALL" -C "$dir"
    (cd "$dir"/citus-* && ./configure --quiet >/dev/null && make -s -j2 >/dev/null 2>&1 && as_root make -s install >/dev/null) ||
        { echo "building Citus failed"; rm -rf "$dir"; return 1; }
    rm -rf "$dir"
}

citus_stop_cluster() {
    local n
    if [ -n "${CITUS_DIR:-}" ] && [ -d "$CITUS_DIR" ]; then
        for n in 0 1 2; do
            as_cluster_user pg_ctl -D "$CITUS_DIR/node$n" -m immediate stop >/dev/null 2>&1 || true
        done
        rm -rf "$CITUS_DIR"
    fi
    CITUS_DIR=
}

citus_start_cluster() {
    local db=$1 n port
    CITUS_DIR=$(mktemp -d /tmp/quota-citus.XXXXXX)
    export CITUS_DIR
    chmod 755 "$CITUS_DIR"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$CITUS_DIR"
    trap citus_stop_cluster EXIT
    say "starting a local Citus cluster in $CITUS_DIR: coordinator on port $CITUS_PORT, workers on $((CITUS_PORT + 1)) and $((CITUS_PORT + 2))"
    for n in 0 1 2; do
        port=$((CITUS_PORT + n))
        as_cluster_user initdb -D "$CITUS_DIR/node$n" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
        as_cluster_user pg_ctl -D "$CITUS_DIR/node$n" -l "$CITUS_DIR/node$n.log" -w \
            -o "-p $port -k $CITUS_DIR -c listen_addresses=localhost -c shared_preload_libraries=citus -c max_connections=200 -c max_prepared_transactions=100 -c citus.max_cached_conns_per_worker=4" start >/dev/null
    done
    citus_database "$db"
    export PGHOST=$CITUS_DIR PGPORT=$CITUS_PORT PGUSER=postgres PGDATABASE=$db
}

# A database on the three nodes, citus and quota in it, the workers added (Citus keeps its nodes per database).
citus_database() {
    local db=$1 n
    for n in 0 1 2; do
        psql -X -q -h "$CITUS_DIR" -p $((CITUS_PORT + n)) -U postgres -d postgres -c "CREATE DATABASE $db" >/dev/null
        psql -X -q -h "$CITUS_DIR" -p $((CITUS_PORT + n)) -U postgres -d "$db" -v ON_ERROR_STOP=1 \
            -c "SET client_min_messages = warning" -c "CREATE EXTENSION citus" -c "CREATE EXTENSION quota" >/dev/null
    done
    psql -X -q -h "$CITUS_DIR" -p "$CITUS_PORT" -U postgres -d "$db" -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT citus_set_coordinator_host('localhost', $CITUS_PORT);
SELECT citus_add_node('localhost', $((CITUS_PORT + 1)));
SELECT citus_add_node('localhost', $((CITUS_PORT + 2)));
SQL
}
