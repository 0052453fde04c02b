#!/usr/bin/env bash
# Read-only transactions and a hot standby (SPEC, "Bad input" and
# "Security"): every writing call fails with 25006 read_only_sql_transaction
# and changes nothing, while is_team_limited and quota.usage keep answering.
#   (a) on the primary, in BEGIN READ ONLY transactions and under
#       default_transaction_read_only = on (in fresh sessions and in sessions
#       that have already spent, so the extension's per-backend caches are warm);
#   (b) on a hot standby made with pg_basebackup -R: the same calls, and the
#       reads agree with the primary.
# Needs PGHOST/PGPORT/PGUSER of a running primary with the extension installed
# (test/run.sh sets them; the cluster allows local replication connections, as
# initdb's pg_hba.conf does).  The standby lives in a directory of its own
# (under $QUOTA_CLUSTER when set) with its own socket, on port PGPORT+1, and
# is stopped and removed at the end, also when a check fails.
set -euo pipefail
# shellcheck source=lib/cluster.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib/cluster.sh"
cd /

db=quota_standby
standby_dir=
failures=0

cleanup() {
    if [ -n "$standby_dir" ] && [ -d "$standby_dir" ]; then
        if [ -f "$standby_dir/data/postmaster.pid" ]; then
            as_cluster_user pg_ctl -D "$standby_dir/data" -m immediate stop >/dev/null 2>&1 || true
        fi
        rm -rf "$standby_dir"
    fi
    dropdb --if-exists "$db" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap "exit 1" INT TERM

fail() {
    echo "standby: FAIL: $*"
    failures=$((failures + 1))
}
# psql on the primary ($1 = database), or on the standby (psql_standby).
psql_in() { psql -X -q -v ON_ERROR_STOP=1 -At -d "$1" -c "$2"; }
standby_port=$((PGPORT + 1))
psql_standby() { PGHOST=$standby_dir PGPORT=$standby_port psql -X -q -v ON_ERROR_STOP=1 -At -d "$db" -c "$1"; }

# Everything the extension stores, as text: compared before and after.
tables="SELECT concat_ws(E'\n',
   (SELECT string_agg(row(a.*)::text, E'\n' ORDER BY team, resource) FROM quota.accounts a),
   (SELECT string_agg(row(h.*)::text, E'\n' ORDER BY id) FROM quota.holds h),
   (SELECT string_agg(row(s.*)::text, E'\n' ORDER BY team, resource, slot) FROM quota.slots s))"
# What readers see.
reads="SELECT concat_ws(E'\n',
   (SELECT string_agg(row(u.*)::text, E'\n' ORDER BY team, resource) FROM quota.usage u),
   (SELECT string_agg(team || '/' || resource || ' limited=' || quota.is_team_limited(team, resource), E'\n' ORDER BY team, resource)
      FROM quota.accounts))"

# Run a script; it must fail with SQLSTATE 25006 and nothing else.
# $1: label, $2: script (fed to psql on stdin), rest: env for psql.
expect_25006() {
    local label=$1 script=$2 out
    shift 2
    out=$(env "$@" psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$db" 2>&1 <<<"$script") && {
        fail "$label: succeeded, want 25006 (read_only_sql_transaction)"
        return 0
    }
    if ! grep -q '^ERROR:  25006:' <<<"$out"; then
        fail "$label: want 25006, got: $(grep -m1 '^ERROR:' <<<"$out" || echo "$out")"
    fi
}

# ---------------------------------------------------------------- set-up
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION quota;
SELECT quota.set_account('plain', 100);
SELECT quota.set_account('monthly', 50, period => '1 month', anchor => '2024-01-31 00:00+00');
SELECT quota.set_account('full', 3);
SELECT quota.set_account('free', 0, unlimited => true);
SELECT quota.set_account('hot', 40);
SELECT quota.set_slots('hot', 4);
SELECT quota.set_account('lapsed', 10);
SELECT quota.charge_credit('plain', 7);
SELECT quota.charge_credit('monthly', 5);
SELECT quota.charge_credit('full', 3);
SELECT quota.charge_credit('free', 9);
SELECT quota.charge_credit('hot', 3);
SELECT quota.charge_credit('hot', 2);
SELECT quota.reserve_credit('plain', 4, hold_for => NULL, idempotency_key => 'plain-open');
SELECT quota.reserve_credit('plain', 2, hold_for => NULL, idempotency_key => 'plain-open-2');
SELECT quota.reserve_credit('hot', 5, hold_for => NULL, idempotency_key => 'hot-open');
SELECT quota.reserve_credit('hot', 1, hold_for => NULL, idempotency_key => 'hot-open-2');
SELECT quota.commit_credit((quota.reserve_credit('plain', 1, idempotency_key => 'plain-done')).reservation);
SELECT quota.release_credit((quota.reserve_credit('plain', 1, idempotency_key => 'plain-gone')).reservation);
SELECT quota.reserve_credit('lapsed', 2, hold_for => '1 second');
SQL
sleep 1.2 # the hold of 'lapsed' expires: expire_holds() has one to release
plain_hold=$(psql_in "$db" "SELECT id FROM quota.holds WHERE idempotency_key = 'plain-open'")
plain_hold2=$(psql_in "$db" "SELECT id FROM quota.holds WHERE idempotency_key = 'plain-open-2'")
hot_hold=$(psql_in "$db" "SELECT id FROM quota.holds WHERE idempotency_key = 'hot-open'")
hot_hold2=$(psql_in "$db" "SELECT id FROM quota.holds WHERE idempotency_key = 'hot-open-2'")
done_hold=$(psql_in "$db" "SELECT id FROM quota.holds WHERE idempotency_key = 'plain-done'")
gone_hold=$(psql_in "$db" "SELECT id FROM quota.holds WHERE idempotency_key = 'plain-gone'")

# Every writing call: most would change something if they ran; the last
# ones would not (a denial, an idempotent repeat, a settled hold settled
# again), and are refused all the same.
calls=(
    "SELECT quota.set_account('plain', 200)"
    "SELECT quota.set_account('newcomer', 10)"
    "SELECT quota.set_slots('hot', 2)"
    "SELECT quota.set_slots('plain', 4)"
    "SELECT quota.set_slots('hot', 0)"
    "SELECT quota.reserve_credit('plain', 1)"
    "SELECT quota.reserve_credit('plain', 1, idempotency_key => 'ro-key')"
    "SELECT quota.reserve_credit('hot', 1)"
    "SELECT quota.reserve_credit('free', 1)"
    "SELECT quota.commit_credit($plain_hold)"
    "SELECT quota.commit_credit($plain_hold, 1)"
    "SELECT quota.commit_credit($hot_hold)"
    "SELECT quota.commit_credit($hot_hold, 0)"
    "SELECT quota.release_credit($plain_hold2)"
    "SELECT quota.release_credit($hot_hold2)"
    "SELECT quota.charge_credit('plain')"
    "SELECT quota.charge_credit('monthly', 2)"
    "SELECT quota.charge_credit('hot', 1)"
    "SELECT quota.charge_credit('hot', 30)"
    "SELECT quota.charge_credit('free', 5)"
    "SELECT quota.charge_credit('full', 5, allow_overdraft => true)"
    "SELECT quota.charge_credit('plain', 1000, allow_overdraft => true)"
    "SELECT quota.charge_credit('hot', 1000, allow_overdraft => true)"
    "SELECT quota.expire_holds()"
    "SET quota.default_limit = 10; SELECT quota.charge_credit('stranger')"
    "SET quota.default_limit = 10; SELECT quota.reserve_credit('stranger', 2)"
    "SELECT quota.charge_credit('full')"
    "SELECT quota.reserve_credit('plain', 4, hold_for => NULL, idempotency_key => 'plain-open')"
    "SELECT quota.commit_credit($done_hold)"
    "SELECT quota.release_credit($gone_hold)"
)
# A session that has already spent (rolled back: no trace) has its caches warm.
warm="\\o /dev/null
BEGIN; SELECT quota.charge_credit('plain'); SELECT quota.charge_credit('hot'); SELECT quota.reserve_credit('hot'); SELECT quota.is_team_limited('plain'); ROLLBACK;
\\o
"

tables_before=$(psql_in "$db" "$tables")
reads_before=$(psql_in "$db" "$reads")

# ---------------------------------------------------------------- (a) read-only transactions
echo "standby: (a) ${#calls[@]} writing calls in BEGIN READ ONLY / default_transaction_read_only = on, cold and warm sessions: 25006"
for call in "${calls[@]}"; do
    # COMMIT, not ROLLBACK: a call that wrongly succeeds would leave its trace.
    expect_25006 "BEGIN READ ONLY: $call" "BEGIN READ ONLY; $call; COMMIT;"
    expect_25006 "warm session, BEGIN READ ONLY: $call" "$warm BEGIN READ ONLY; $call; COMMIT;"
    expect_25006 "SET default_transaction_read_only = on: $call" "SET default_transaction_read_only = on; $call;"
    expect_25006 "warm session, SET default_transaction_read_only = on: $call" "$warm SET default_transaction_read_only = on; $call;"
    expect_25006 "PGOPTIONS=-c default_transaction_read_only=on: $call" "$call;" PGOPTIONS="-c default_transaction_read_only=on"
done
tables_now=$(psql_in "$db" "$tables")
[ "$tables_now" = "$tables_before" ] || fail "read-only transactions changed quota's tables"

echo "standby: (a) is_team_limited and quota.usage answer in read-only transactions, as outside them"
reads_before=$(psql_in "$db" "$reads") # (the same as before, unless a call above wrongly wrote)
ro_reads=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" 2>&1 <<<"BEGIN READ ONLY; $reads; COMMIT;") ||
    fail "reads in a read-only transaction: $ro_reads"
[ "$ro_reads" = "$reads_before" ] || fail "reads in a read-only transaction differ: $ro_reads"
ro_reads=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" 2>&1 <<<"$warm SET default_transaction_read_only = on; $reads;") ||
    fail "reads under default_transaction_read_only: $ro_reads"
[ "$ro_reads" = "$reads_before" ] || fail "reads under default_transaction_read_only differ: $ro_reads"
ro_reads=$(PGOPTIONS="-c default_transaction_read_only=on -c quota.default_limit=10" psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" \
    -c "SELECT quota.is_team_limited('stranger')" 2>&1) || fail "is_team_limited of an unknown account with quota.default_limit, read-only: $ro_reads"
[ "$ro_reads" = f ] || fail "is_team_limited of an unknown account with quota.default_limit, read-only: $ro_reads"
# And the session is still usable for writes once read-only is off again.
out=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" 2>&1 <<<"BEGIN READ ONLY; SELECT quota.is_team_limited('plain'); COMMIT; BEGIN; SELECT granted FROM quota.charge_credit('free'); ROLLBACK;") ||
    fail "a charge after a read-only transaction: $out"
[ "$(tail -n1 <<<"$out")" = t ] || fail "a charge after a read-only transaction: $out"
[ "$(psql_in "$db" "$tables")" = "$tables_now" ] || fail "reads in read-only transactions changed quota's tables"

# ---------------------------------------------------------------- (b) hot standby
echo "standby: (b) pg_basebackup -R, hot standby on port $standby_port"
standby_dir=$(mktemp -d "${QUOTA_CLUSTER:-/tmp}/standby.XXXXXX")
chmod 700 "$standby_dir"
[ "$(id -u)" -eq 0 ] && chown "$(cluster_user):" "$standby_dir"
as_cluster_user pg_basebackup -D "$standby_dir/data" -R -X stream -c fast -d "host=$PGHOST port=$PGPORT user=$PGUSER" ||
    { fail "pg_basebackup"; exit 1; }
# The standby needs at least the primary's settings for these.
settings=
for name in max_connections max_worker_processes max_wal_senders max_prepared_transactions max_locks_per_transaction; do
    settings+=" -c $name=$(psql_in postgres "SHOW $name")"
done
as_cluster_user pg_ctl -D "$standby_dir/data" -l "$standby_dir/server.log" -w -t 60 \
    -o "-p $standby_port -k $standby_dir -c listen_addresses='' -c hot_standby=on$settings" start >/dev/null ||
    { cat "$standby_dir/server.log"; fail "the standby did not start"; exit 1; }
[ "$(psql_standby "SELECT pg_is_in_recovery()")" = t ] || { fail "the standby is not in recovery"; exit 1; }

# Something written after the base backup: the standby must replay it.
psql_in "$db" "SELECT quota.charge_credit('monthly', 1); SELECT quota.charge_credit('hot', 1)" >/dev/null
tables_before=$(psql_in "$db" "$tables")
reads_before=$(psql_in "$db" "$reads")
lsn=$(psql_in postgres "SELECT pg_current_wal_lsn()")
for _ in $(seq 1 300); do
    [ "$(psql_standby "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && break
    sleep 0.1
done
[ "$(psql_standby "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] || { fail "the standby did not replay up to $lsn"; exit 1; }

echo "standby: (b) is_team_limited and quota.usage on the standby agree with the primary"
standby_reads=$(psql_standby "$reads" 2>&1) || fail "reads on the standby: $standby_reads"
[ "$standby_reads" = "$reads_before" ] || fail "reads on the standby differ from the primary:
--- primary
$reads_before
--- standby
$standby_reads"
[ "$(psql_standby "$tables")" = "$tables_before" ] || fail "the standby's tables differ from the primary's"
out=$(PGHOST=$standby_dir PGPORT=$standby_port PGOPTIONS="-c quota.default_limit=10" psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" \
    -c "SELECT quota.is_team_limited('stranger')" 2>&1) || fail "is_team_limited of an unknown account with quota.default_limit, on the standby: $out"
[ "$out" = f ] || fail "is_team_limited of an unknown account with quota.default_limit, on the standby: $out"

echo "standby: (b) ${#calls[@]} writing calls on the standby, cold and warm sessions: 25006"
for call in "${calls[@]}"; do
    expect_25006 "standby: $call" "$call;" PGHOST="$standby_dir" PGPORT="$standby_port"
    # A standby session whose caches were filled by reads first.
    expect_25006 "standby, after reads: $call" "$reads; $call;" PGHOST="$standby_dir" PGPORT="$standby_port"
done
[ "$(psql_standby "$reads")" = "$reads_before" ] || fail "reads on the standby changed after the writing calls"
[ "$(psql_in "$db" "$tables")" = "$tables_before" ] || fail "the primary's tables changed"
grep -E 'PANIC|TRAP|terminated by signal' "$standby_dir/server.log" && fail "the standby's log shows a crash"

if [ "$failures" -gt 0 ]; then
    echo "standby: $failures check(s) failed"
    exit 1
fi
echo "standby: ok (read-only transactions and a hot standby: writing calls 25006, nothing changed, reads agree)"
