#!/usr/bin/env bash
# quota on Citus against quota on one node, on the same machine (issue 13):
# charge_credit, reserve_credit + commit_credit, is_team_limited, and the
# bare UPDATE / primary-key SELECT / conditional UPDATE on a table of the
# same shape (distributed by team on Citus), each contender alone on its own
# rows over 10,000 teams, pgbench -M prepared, durable.  Writes
# bench/RESULTS-1.2-citus.md.  Not part of the test suite.
#
#   bench/citus.sh [--seconds 10] [--clients "8 32"] [--out bench/RESULTS-1.2-citus.md]
#   (also: bench/run.sh --citus [the same options])
#
# The Citus cluster is a coordinator and two workers on this machine
# (test/lib/citus.sh, Citus built from ../shared/deps when it is missing).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib/cluster.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib/citus.sh"
origin=$(pwd)

seconds=10
clients_list="8 32"
out="$QUOTA_ROOT/bench/RESULTS-1.2-citus.md"
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) seconds=$2; shift 2 ;;
        --clients) clients_list=$2; shift 2 ;;
        --out) out=$(cd "$origin" && realpath -m "$2"); shift 2 ;;
        *) echo "usage: bench/citus.sh [--seconds N] [--clients \"8 32\"] [--out FILE]" >&2; exit 2 ;;
    esac
done

CONTENDERS=(bare_update conditional_update charge_credit reserve_commit charge_credit_via_citus reserve_commit_via_citus
    pk_select is_team_limited)
# *_via_citus: the same script with quota.citus_shard_access off (the twin's statements go through Citus's
# planner instead of to the team's shards themselves); on one node it is the same call, measured once.
script_of() { echo "${1%_via_citus}"; }
work=$(mktemp -d /tmp/quota-bench-citus.XXXXXX)
chmod 777 "$work"

quota_setup
citus_install || { echo "bench/citus.sh: no Citus and it could not be built"; exit 1; }

# one contender alone: prints its tps
measure() {
    local name=$1 clients=$2 threads=$(($2 < 2 ? 1 : 2)) options=${PGOPTIONS:-}
    local script
    script=$(script_of "$name")
    [ "$script" = "$name" ] || options="$options -c quota.citus_shard_access=off"
    (cd "$work" && PGOPTIONS="$options" pgbench -n -M prepared -c "$clients" -j "$threads" -T "$seconds" -D accounts=10000 \
        -f "$QUOTA_ROOT/bench/scripts/$script.sql" >"$work/$name.out" 2>&1) || { cat "$work/$name.out" >&2; exit 1; }
    sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$work/$name.out"
}

declare -A tps
# every contender at every client count on the cluster PG* points at: tps[TARGET,clients,contender]
measure_all() {
    local clients c
    for clients in $clients_list; do
        for c in "${CONTENDERS[@]}"; do
            if [ "$1" = single ] && [ "$(script_of "$c")" != "$c" ]; then
                continue # one node has no shards: the same call as $(script_of "$c"), filled in below
            fi
            say "$2, $clients clients: $c"
            tps[$1,$clients,$c]=$(measure "$c" "$clients")
        done
        if [ "$1" = single ]; then
            for c in "${CONTENDERS[@]}"; do
                [ "$(script_of "$c")" = "$c" ] || tps[$1,$clients,$c]=${tps[$1,$clients,$(script_of "$c")]}
            done
        fi
    done
}
# One node.
QUOTA_PORT=54330 quota_start_cluster -c shared_buffers=512MB -c max_wal_size=8GB
createdb bench
export PGDATABASE=bench
psql -X -q -v ON_ERROR_STOP=1 -v accounts=10000 -v limit=1000000000000000 -v used=0 -v slots=0 -v alerts=off -v tree=0 \
    -f "$QUOTA_ROOT/bench/setup.sql" >/dev/null
measure_all single "one node"
quota_stop_cluster

# Citus: the same rows, distributed by team.
citus_start_cluster bench
psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE SCHEMA bench;
CREATE TABLE bench.bare (team text PRIMARY KEY, used bigint NOT NULL, credit_limit bigint NOT NULL);
CREATE TABLE bench.cond (LIKE bench.bare INCLUDING ALL);
INSERT INTO bench.bare SELECT g::text, 0, 1000000000000000 FROM generate_series(1, 10000) g;
INSERT INTO bench.cond SELECT * FROM bench.bare;
SELECT create_distributed_table('bench.bare', 'team');
SELECT create_distributed_table('bench.cond', 'team', colocate_with => 'bench.bare');
SELECT count(quota.set_account(p || g, 1000000000000000)) FROM generate_series(1, 10000) g, unnest(ARRAY['c', 'r']) p;
SELECT quota.distribute();
SQL
measure_all citus Citus
citus_stop_cluster

{
    echo "# quota on Citus against one node, on the same machine"
    echo
    echo "Machine: $(nproc) cores, $(uname -sr); PostgreSQL $("$QUOTA_PG_BIN/postgres" --version | awk '{print $3}'), Citus 13.0.5; $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo
    echo "Command: \`bench/citus.sh --seconds $seconds --clients \"$clients_list\"\`. Each contender runs alone for ${seconds}s on"
    echo "its own rows over 10,000 teams, pgbench -M prepared, durable (synchronous_commit on). *One node*: one"
    echo "PostgreSQL server. *Citus*: a coordinator and two workers on the same machine, every table distributed by"
    echo "team (32 shards), pgbench connected to the coordinator. One reserve + commit is two transactions."
    echo "*_via_citus*: the same calls with \`quota.citus_shard_access = off\`, so the call sent to the team's"
    echo "worker runs its statements through Citus's planner instead of on the team's shards themselves (on one"
    echo "node it is the same call: the one-node column repeats it)."
    echo
    echo "| clients | contender | one node tps | Citus tps | Citus ÷ one node | Citus ÷ its bare UPDATE (or PK SELECT) |"
    echo "|---|---|---|---|---|---|"
    for clients in $clients_list; do
        for c in "${CONTENDERS[@]}"; do
            base=bare_update
            case $c in pk_select | is_team_limited) base=pk_select ;; esac
            awk -v n="$clients" -v c="$c" -v s="${tps[single,$clients,$c]}" -v t="${tps[citus,$clients,$c]}" \
                -v b="${tps[citus,$clients,$base]}" \
                'BEGIN { printf "| %s | %s | %.0f | %.0f | **%.2f×** | %.2f× |\n", n, c, s, t, t / s, t / b }'
        done
    done
    echo
    echo "What one 2-core machine can and cannot show: the three Citus nodes and pgbench share 2 cores, so"
    echo "every call through the coordinator pays the coordinator's planning and a localhost round trip to a"
    echo "worker per statement, with no extra cores to spread over. It shows the cost per call of going"
    echo "through the coordinator, not the gain of more machines (README, \"Citus\")."
} >"$out"
cat "$out"
