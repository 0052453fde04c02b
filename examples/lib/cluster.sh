# shellcheck shell=bash
# examples/lib/cluster.sh — what every example's test.sh shares.
#
# example_database NAME ROLE: make sure a PostgreSQL 15 with quota installed
# is running, then (re)create database NAME with the extension and a login
# role ROLE that has only USAGE on schema quota, as an application would.
#
# Inside the project's test command (test/run.sh) a cluster is already
# running and QUOTA_CLUSTER names it: it is reused.  Run on its own, the
# example builds and installs quota and starts a throwaway cluster, stopped
# when the script exits.
. "$(dirname "${BASH_SOURCE[0]}")/../../test/lib/cluster.sh"

example_cluster() {
    if [ -n "${QUOTA_CLUSTER:-}" ]; then
        # A cluster was named: use it, never build and install behind the caller's back.
        pg_isready -q -h "$QUOTA_CLUSTER" -p "$QUOTA_PORT" ||
            { echo "QUOTA_CLUSTER=$QUOTA_CLUSTER (port $QUOTA_PORT) does not answer" >&2; exit 1; }
        export PGHOST=$QUOTA_CLUSTER PGPORT=$QUOTA_PORT PGUSER=postgres
        return
    fi
    quota_setup "$@"
    quota_start_cluster
}

example_database() {
    local db=$1 role=$2
    psql -X -q -v ON_ERROR_STOP=1 -d postgres <<SQL
DROP DATABASE IF EXISTS "$db";
CREATE DATABASE "$db";
DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
        CREATE ROLE "$role" LOGIN;
    END IF;
END \$\$;
SQL
    psql -X -q -v ON_ERROR_STOP=1 -d "$db" <<SQL
CREATE EXTENSION quota;
GRANT USAGE ON SCHEMA quota TO "$role";
SQL
    export PGDATABASE=$db
}

# Node.js 18 or later and npm: Debian's packages when the machine has none.
example_node() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        say "installing nodejs and npm"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
}

# example_node_tests DIR DB ROLE: a Node example's whole test run — cluster,
# database DB with app role ROLE (passed to the tests as APP_ROLE), npm ci,
# node --test.
example_node_tests() {
    local dir=$1 db=$2 role=$3
    example_node
    example_cluster
    example_database "$db" "$role"
    cd "$dir"
    say "npm ci (pg)"
    npm ci --no-audit --no-fund --loglevel=error
    say "node --test ($(basename "$dir"))"
    APP_ROLE=$role node --test --test-reporter=spec --test-concurrency=1 test/
}
