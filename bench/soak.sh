#!/usr/bin/env bash
# Soak: quota for a while with its retention job (issue 10).  Not part of
# the test suite.  Runs its own throwaway cluster with pg_cron
# (postgresql-15-cron, installed with apt if missing).
#
#   bench/soak.sh [--minutes 10] [--clients 8] [--purge-rows 1000000] [--only-purge] [--pause 50ms]
#                 [--out bench/RESULTS-1.2-soak.md]
#
# (a) reserve + commit at full speed for --minutes, pg_cron running
#     quota.purge_holds(now() - interval '1 minute') every minute; the size of
#     quota.holds and of its indexes every 30 s must level off.
# (b) charge_credit on 10,000 accounts for 30 s alone, then for 60 s with
#     quota.purge_holds() deleting --purge-rows settled holds from 5 s in:
#     tps of the calls that ended while the purge ran against tps without
#     it, and the slowest call of each.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib/cluster.sh"
origin=$(pwd)
minutes=10
clients=8
soak_tps=-
rows=()
pause=default
purge_rows=1000000
out="$QUOTA_ROOT/bench/RESULTS-1.2-soak.md"
while [ $# -gt 0 ]; do
    case $1 in
        --minutes) minutes=$2; shift 2 ;;
        --clients) clients=$2; shift 2 ;;
        --purge-rows) purge_rows=$2; shift 2 ;;
        --only-purge) minutes=0; shift ;;
        --pause) pause=$2; shift 2 ;;
        --out) out=$(cd "$origin" && realpath -m "$2"); shift 2 ;;
        *) echo "usage: bench/soak.sh [--minutes N] [--clients N] [--purge-rows N] [--out FILE]" >&2; exit 2 ;;
    esac
done
work=$(mktemp -d /tmp/quota-soak.XXXXXX)
chmod 777 "$work"

quota_setup postgresql-15-cron
QUOTA_PORT=54331 quota_start_cluster -c shared_buffers=512MB -c max_wal_size=8GB -c checkpoint_timeout=1h \
    -c shared_preload_libraries=pg_cron -c cron.database_name=soak -c cron.use_background_workers=on \
    -c autovacuum_naptime=15s
export PGDATABASE=soak
createdb soak
q() { psql -X -q -v ON_ERROR_STOP=1 -At -c "$1"; }
psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE EXTENSION pg_cron;
CREATE EXTENSION quota;
SELECT count(quota.set_account(p || g, 1000000000000000)) FROM generate_series(1, 10000) g, unnest(ARRAY['c', 'r']) p;
SQL
# Half the reservations carry an idempotency key (so its index grows and is purged too).
cat >"$work/reserve_commit.sql" <<'SQL'
\set n random(1, 10000)
\set k random(1, 2000000000)
\if :k % 2
SELECT reservation AS r FROM quota.reserve_credit('r' || :n::text, idempotency_key => 'k' || :k::text || '-' || :client_id::text) \gset
\else
SELECT reservation AS r FROM quota.reserve_credit('r' || :n::text) \gset
\endif
SELECT granted FROM quota.commit_credit(:r);
SQL
cat >"$work/charge.sql" <<'SQL'
\set n random(1, 10000)
SELECT granted FROM quota.charge_credit('c' || :n::text);
SQL
sizes="SELECT count(*), pg_relation_size('quota.holds'), pg_indexes_size('quota.holds'),
              pg_relation_size('quota.holds_idempotency_key'), (SELECT count(*) FROM cron.job_run_details
                WHERE status = 'succeeded') FROM quota.holds"

# ---------------------------------------------------------------- (a)
if [ "$minutes" -gt 0 ]; then
say "(a) reserve + commit for $minutes minutes, $clients clients; pg_cron purges every minute"
q "SELECT cron.schedule('quota-purge-holds', '* * * * *', \$\$SELECT quota.purge_holds(now() - interval '1 minute')\$\$)" >/dev/null
(cd "$work" && PGOPTIONS="-c synchronous_commit=off" pgbench -n -M prepared -c "$clients" -j 2 -T $((minutes * 60)) \
    -f reserve_commit.sql >"$work/soak.out" 2>&1) &
bench=$!
start=$(date +%s)
while kill -0 "$bench" 2>/dev/null; do
    sleep 30
    kill -0 "$bench" 2>/dev/null || break
    IFS='|' read -r n heap idx key runs <<<"$(q "$sizes")"
    line="| $(( $(date +%s) - start )) s | $n | $((heap / 1024)) kB | $((idx / 1024)) kB | $((key / 1024)) kB | $runs |"
    rows+=("$line")
    echo "$line"
done
wait "$bench"
soak_tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/soak.out")
q "SELECT cron.unschedule('quota-purge-holds')" >/dev/null
fi

# ---------------------------------------------------------------- (b)
say "(b) charge_credit alone, then while purge_holds() deletes $purge_rows settled holds"
q "INSERT INTO quota.holds (team, resource, amount, state, created_at, settled_at, committed)
   SELECT 'r' || (1 + g % 10000), 'credits', 1, 'committed', now() - interval '9 days', now() - interval '8 days', 1
     FROM generate_series(1, $purge_rows) g" >/dev/null
q "VACUUM ANALYZE quota.holds" >/dev/null
charge() {
    rm -f "$work"/log.*
    (cd "$work" && PGOPTIONS="-c synchronous_commit=on" pgbench -n -M prepared -c "$clients" -j 2 -T "$2" -l \
        --log-prefix="$work/log" -f charge.sql >"$work/$1.out" 2>&1)
    local tps max
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/$1.out")
    max=$(cat "$work"/log.* | awk 'BEGIN {m = 0} $3 > m {m = $3} END {printf "%.1f", m / 1000}')
    echo "$tps $max"
}
read -r alone_tps alone_max <<<"$(charge alone 30)"
echo "charge_credit alone: $alone_tps tps, slowest call $alone_max ms"
purge_options=
[ "$pause" = default ] || purge_options="-c quota.purge_pause=$pause"
(sleep 5; start=$(date +%s.%N); n=$(PGOPTIONS="$purge_options" q "SELECT quota.purge_holds()"); end=$(date +%s.%N)
 echo "$n $start $end" >"$work/purge.out") &
purger=$!
read -r run_tps run_max <<<"$(charge during 60)"
wait "$purger"
read -r purged purge_start purge_end <"$work/purge.out"
purge_seconds=$(echo "$purge_end - $purge_start" | bc)
# The calls that ended while the purge ran (pgbench's per-transaction log: ..., epoch s, us), and the slowest of them.
read -r purge_tps purge_max <<<"$(cat "$work"/log.* | awk -v s="$purge_start" -v e="$purge_end" \
    '{t = $5 + $6 / 1e6} t >= s && t <= e {n++; if ($3 > m) m = $3} END {printf "%.0f %.1f", n / (e - s), m / 1000}')"
echo "charge_credit while the purge ran ($purged holds in $purge_seconds s): $purge_tps tps, slowest call $purge_max ms"
echo "(the whole 30 s run: $run_tps tps, slowest call $run_max ms)"

{
    echo "# Soak: retention under load (bench/soak.sh)"
    echo
    echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(pg_config --version); $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo
    echo "## (a) reserve + commit for $minutes minutes, $clients clients, pg_cron purging every minute"
    echo
    echo "\`quota.purge_holds(now() - interval '1 minute')\` every minute from pg_cron; autovacuum at its defaults"
    echo "(naptime 15 s). reserve + commit ran at $soak_tps transactions/s (synchronous_commit off)."
    echo
    echo "| time | rows in quota.holds | heap | all indexes | idempotency index | purge runs |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "## (b) charge_credit while a purge deletes $purge_rows settled holds"
    echo
    echo "10,000 accounts, $clients clients, durable; 30 s alone, then 60 s with the purge started 5 s in;"
    echo "quota.purge_pause: $pause (the default is 50 ms after each batch of 2,000 ids)."
    echo
    echo "| run | tps | slowest call |"
    echo "|---|---|---|"
    echo "| alone (30 s) | $alone_tps | $alone_max ms |"
    echo "| while \`purge_holds()\` ran ($purged holds in $purge_seconds s; calls that ended then) | $purge_tps | $purge_max ms |"
    echo "| the whole 60 s run around the purge | $run_tps | $run_max ms |"
    echo
    echo "Ratio while purging ÷ alone: $(echo "scale=2; $purge_tps / $alone_tps" | bc)."
} >"$out"
say "wrote $out"
cat "$out"
rm -rf "$work"
