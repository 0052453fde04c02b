#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what it
# needs with apt, builds with -Werror, runs static analysis, installs the
# extension, starts a throwaway cluster, runs every test against it, and
# stops it.  Exits non-zero if anything failed.
#
#   test/run.sh
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/cluster.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib/citus.sh"
cd "$QUOTA_ROOT"

passed=0
failed=0
failures=()

# Run one suite; record whether it passed.
suite() {
    local name=$1
    shift
    say "$name"
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures+=("$name")
    fi
}

show_diffs() {
    local file
    for file in "$@"; do
        if [ -s "$file" ]; then
            echo "---- $file"
            cat "$file"
        fi
    done
}

regression() {
    rm -rf results regression.diffs regression.out
    make -s PG_CONFIG="$QUOTA_PG_BIN/pg_config" regresscheck || { show_diffs regression.diffs; return 1; }
}

isolation() {
    rm -rf output_iso
    make -s PG_CONFIG="$QUOTA_PG_BIN/pg_config" isolationcheck || { show_diffs output_iso/regression.diffs; return 1; }
}

# The bad-input fuzzer, with a fresh seed each run (printed, so a failure can be replayed).
fuzz() {
    /usr/bin/python3 test/fuzz.py --calls "${QUOTA_FUZZ_CALLS:-3000}"
}

# One run of the stress audit in a database of its own.
stress() {
    dropdb --if-exists quota_stress && createdb quota_stress &&
        psql -X -q -d quota_stress -c "CREATE EXTENSION quota" &&
        PGDATABASE=quota_stress QUOTA_PGDATA="$QUOTA_CLUSTER/data" QUOTA_PGCTL="$(cluster_pg_ctl)" \
            /usr/bin/python3 test/stress/audit.py "$@"
}

# The stress audit of parent budgets and caps (a three-level tree), in a database of its own.
stress_tree() {
    dropdb --if-exists quota_tree && createdb quota_tree &&
        psql -X -q -d quota_tree -c "CREATE EXTENSION quota" &&
        PGDATABASE=quota_tree QUOTA_PGDATA="$QUOTA_CLUSTER/data" QUOTA_PGCTL="$(cluster_pg_ctl)" \
            /usr/bin/python3 test/stress/tree.py "$@"
}

set -e
quota_setup clang-tidy python3-psycopg2 python3-django postgresql-15-cron $CITUS_BUILD_PACKAGES
set +e

# Citus for test/citus.sh: installed already, or built from the tarball in the
# background while the first suites run (about 2 minutes of one core).
citus_log=$(mktemp /tmp/quota-citus-build.XXXXXX)
citus_pid=
if ! citus_available; then
    say "building Citus in the background (log: $citus_log)"
    citus_install >"$citus_log" 2>&1 &
    citus_pid=$!
fi
citus_suite() {
    if [ -n "$citus_pid" ]; then
        wait "$citus_pid" || true
        cat "$citus_log"
    fi
    test/citus.sh
}

suite "static analysis (cppcheck, clang-tidy)" test/lint.sh

quota_start_cluster
suite "regression tests (pg_regress: sql/ against expected/)" regression
suite "isolation tests (test/specs against test/expected)" isolation
suite "README's psql output equals expected/inspection.out" test/readme_output.sh
suite "pg_dump and restore" test/dump_restore.sh
suite "CREATE EXTENSION refuses someone else's schema" test/schema_owner.sh
suite "read-only transactions and a hot standby refuse writes (25006)" test/standby.sh
suite "REINDEX and CREATE INDEX while spending: no deadlock, indexes sound" test/ddl_race.sh
suite "randomized bad input (test/fuzz.py): contract SQLSTATEs only, nothing changed" fuzz
suite "upgrade path: ALTER EXTENSION quota UPDATE from every version" test/upgrade.sh
suite "pg_cron runs expire_holds, purge_holds and purge_history" test/cron.sh
suite "Citus: quota.distribute() and the contract through a coordinator and two workers, a shard moved mid-load (builds Citus when missing)" citus_suite
suite "example: Node.js chat backend (node --test)" examples/node-chat/test.sh
suite "example: LLM gateway (node --test)" examples/llm-gateway/test.sh
suite "example: Django recipes app (manage.py test)" examples/django-recipes/test.sh
suite "stress audit: 16 connections, 20 s" stress --workers 16 --seconds 20
suite "stress audit across a crash (immediate restart half way)" stress --workers 16 --seconds 20 --crash
suite "stress audit of a tree with caps: org > 4 teams > 12 users, 16 connections, 12 s" stress_tree --workers 16 --seconds 12
suite "stress audit of a tree with caps across a crash" stress_tree --workers 16 --seconds 12 --crash
quota_stop_cluster

echo
if [ "$failed" -gt 0 ]; then
    echo "failed: ${failures[*]}"
fi
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
