#!/usr/bin/env bash
# DDL that a superuser runs on quota's tables while credits are being spent
# (SPEC, "Security": indexes a superuser adds are honoured; "Guarantees under
# concurrency": no deadlocks, exactly once).  pgbench (8 clients) spends on
# 100 plain accounts and on slotted ones while a DDL session runs:
#   (a) REINDEX TABLE quota.accounts / quota.holds / quota.slots, over and
#       over (two rounds in three CONCURRENTLY): no client and no REINDEX may
#       see any error, 40P01 (deadlock detected) or other;  first with
#       charges and reserve+commit on plain accounts, then on slotted ones;
#   (b) CREATE INDEX on quota.slots (used), quota.accounts (used) and
#       quota.holds (state) (two rounds in three CONCURRENTLY), checked with
#       amcheck right after the calls that waited for it have run, dropped,
#       and made again; the last round's indexes stay while spending goes on.
# In half the rounds a "holder" transaction keeps a slot row, an account row
# and a hold written for 0.4 s, so the DDL has to wait for it and the
# clients' calls queue behind the DDL (or, CONCURRENTLY, meet a catalog that
# changes under them): the calls then run against a table that has changed
# since their backend last looked at it.
# After each phase: amcheck's bt_index_check(heapallindexed => true) passes
# on every index of quota.accounts, quota.slots and quota.holds, none is left
# invalid, and every account's used and held equal what the granted calls add
# up to (each granted charge and commit is logged in the caller's transaction).
#
# Needs PGHOST/PGPORT/PGUSER of a running cluster with the extension and
# contrib's amcheck installed, max_connections >= 20 (test/run.sh sets it up).
# DDL_RACE_SECONDS (default 9): length of each of the three phases;
# DDL_RACE_PHASES (default "a b"): which phases;
# DDL_RACE_CONCURRENTLY (default "alternate"; "never", "always"): whether the
# DDL is CONCURRENTLY.
set -euo pipefail
cd /

db=quota_ddl_race
seconds=${DDL_RACE_SECONDS:-9}
phases=${DDL_RACE_PHASES:-a b}
concurrently_mode=${DDL_RACE_CONCURRENTLY:-alternate}
dir=$(mktemp -d)
chmod 755 "$dir"
ddl_pid=
cleanup() {
    [ -n "$ddl_pid" ] && kill "$ddl_pid" 2>/dev/null
    rm -rf "$dir"
    dropdb --if-exists "$db" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap "exit 1" INT TERM
failures=0
fail() {
    echo "ddl_race: FAIL: $*"
    failures=$((failures + 1))
}
psql_in() { psql -X -q -v ON_ERROR_STOP=1 -At -d "$db" -c "$1"; }

# ---------------------------------------------------------------- set-up
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION quota;
CREATE EXTENSION amcheck;
-- What the granted calls add up to, written in the caller's transaction.
CREATE UNLOGGED TABLE ddl_log (team text NOT NULL, kind text NOT NULL, amount bigint NOT NULL);
SELECT quota.set_account('acct' || i, 1000000000) FROM generate_series(0, 99) i;
-- Two hot slotted accounts: one that never runs out, one that does (so the
-- calls that lock the account row and every slot run too).
SELECT quota.set_account('hot0', 1000000000);
SELECT quota.set_slots('hot0', 4);
SELECT quota.set_account('hot1', 600);
SELECT quota.set_slots('hot1', 4);
-- Many slotted accounts, each spent from now and then: a slot row written
-- with a wrong picture of the table's indexes stays the newest version for
-- a while, long enough for amcheck to see it.
SELECT quota.set_account('slotted' || i, 1000000000) FROM generate_series(0, 99) i;
SELECT quota.set_slots('slotted' || i, 2) FROM generate_series(0, 99) i;
SQL

# One charge on a plain account.
cat >"$dir/charge.sql" <<'SQL'
\set n random(0, 99)
INSERT INTO ddl_log SELECT 'acct' || :n, 'charge', 1 FROM quota.charge_credit('acct' || :n, 1) g WHERE g.granted;
SQL
# A reservation and its commit (or release) in one transaction, on a plain account.
cat >"$dir/reserve_commit.sql" <<'SQL'
\set n random(0, 99)
\set amount random(1, 5)
\set actual random(0, 6)
\set settle random(0, 3)
BEGIN;
SELECT coalesce(reservation, 0) AS r FROM quota.reserve_credit('acct' || :n, :amount) \gset
\if :r > 0
\if :settle > 0
INSERT INTO ddl_log SELECT 'acct' || :n, 'commit', :actual FROM quota.commit_credit(:r, :actual) g WHERE g.granted;
\else
SELECT quota.release_credit(:r);
\endif
\endif
END;
SQL
# A charge on one of the many slotted accounts.
cat >"$dir/slotted_charge.sql" <<'SQL'
\set s random(0, 99)
INSERT INTO ddl_log SELECT 'slotted' || :s, 'charge', 1 FROM quota.charge_credit('slotted' || :s, 1) g WHERE g.granted;
SQL
# On the hot slotted accounts: a charge; a reservation, then its commit
# (never more than the hold: hot1 must stay within its limit) or release in
# a transaction of its own.
cat >"$dir/hot_charge.sql" <<'SQL'
\set h random(0, 1)
\set amount random(1, 3)
INSERT INTO ddl_log SELECT 'hot' || :h, 'charge', :amount FROM quota.charge_credit('hot' || :h, :amount) g WHERE g.granted;
SQL
cat >"$dir/hot_reserve_commit.sql" <<'SQL'
\set h random(0, 1)
\set amount random(1, 3)
\set actual random(0, :amount)
\set settle random(0, 3)
SELECT coalesce(reservation, 0) AS r FROM quota.reserve_credit('hot' || :h, :amount) \gset
\if :r > 0
\if :settle > 0
INSERT INTO ddl_log SELECT 'hot' || :h, 'commit', :actual FROM quota.commit_credit(:r, :actual) g WHERE g.granted;
\else
SELECT quota.release_credit(:r);
\endif
\endif
SQL

# pgbench for $seconds with the given options and scripts; any error fails.
spend() {
    local name=$1 out=$dir/$1.pgbench rc=0
    shift
    pgbench -n -c 8 -j 2 -T "$seconds" --failures-detailed --verbose-errors "$@" "$db" >"$out" 2>&1 || rc=$?
    local tx failed deadlocks
    tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
    deadlocks=$(sed -n 's/^number of deadlock failures: \([0-9]*\).*/\1/p' "$out")
    echo "ddl_race: $name: pgbench: ${tx:-?} transactions, ${failed:-?} failed (${deadlocks:-?} deadlocks), exit status $rc"
    if [ "$rc" -ne 0 ] || [ "${failed:-x}" != 0 ] || grep -q 'ERROR' "$out"; then
        fail "$name: pgbench clients saw errors:"
        grep -E 'ERROR|aborted' "$out" | sed 's/client [0-9]*/client N/' | sort | uniq -c | sort -rn | head -n 15 || true
    fi
}

# A transaction that has written a slot row, an account row and a hold and
# keeps them for 0.4 s; returns once it holds them.  Its credits are logged.
start_holder() {
    PGAPPNAME=ddl_race_holder psql -X -q -v ON_ERROR_STOP=1 -d "$db" >"$dir/holder.out" 2>&1 <<'SQL' &
DO $$
BEGIN
    INSERT INTO ddl_log SELECT 'slotted0', 'charge', 1 FROM quota.charge_credit('slotted0', 1) g WHERE g.granted;
    INSERT INTO ddl_log SELECT 'acct0', 'charge', 1 FROM quota.charge_credit('acct0', 1) g WHERE g.granted;
    INSERT INTO ddl_log SELECT 'acct1', 'commit', 1
      FROM quota.commit_credit((quota.reserve_credit('acct1', 2)).reservation, 1) g WHERE g.granted;
    PERFORM pg_sleep(0.4);
END
$$;
SQL
    holder_pid=$!
    for _ in $(seq 1 100); do
        [ "$(psql_in "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ddl_race_holder' AND wait_event = 'PgSleep'")" = 1 ] &&
            return 0
        kill -0 "$holder_pid" 2>/dev/null || return 0 # finished (or failed: see finish_holder)
        sleep 0.02
    done
}
finish_holder() {
    wait "$holder_pid" && return 0
    echo "the holder transaction: $(cat "$dir/holder.out")"
    return 1
}

# The DDL session: rounds until $dir/stop exists.  A round that fails is
# reported (the first one in full) and the next one starts.
# $1: phase name; $2: function running round N (prints what went wrong).
ddl_loop() {
    local name=$1 round=$2 rounds=0 failed=0 out
    while [ ! -e "$dir/stop" ]; do
        rounds=$((rounds + 1))
        if ! out=$($round "$rounds" 2>&1); then
            failed=$((failed + 1))
            [ "$failed" -eq 1 ] && echo "ddl_race: FAIL: $name: the DDL session, round $rounds: $out"
        fi
        sleep 0.2
    done
    if [ "$failed" -gt 0 ]; then
        echo "ddl_race: FAIL: $name: $failed of $rounds DDL rounds failed"
        return 1
    fi
    echo "ddl_race: $name: the DDL session ran $rounds rounds without an error"
    [ "$rounds" -ge 3 ] || { echo "ddl_race: FAIL: $name: only $rounds DDL rounds"; return 1; }
}

# The statements on stdin, in one session; in rounds 1, 2, 5, 6, ... while
# a holder is running (rounds 3, 4, 7, 8, ... run back to back with the
# clients' calls, which meets them at other moments).  $1: the round.
ddl_with_holder() {
    local rc=0 holder=$(($1 % 4 == 1 || $1 % 4 == 2))
    [ "$holder" -eq 0 ] || start_holder
    psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$db" 2>&1 || rc=$?
    if [ "$holder" -eq 1 ]; then finish_holder || rc=1; fi
    return "$rc"
}

# "CONCURRENTLY" or nothing, for round $1 (by default rounds 1, 4, 7, ...
# are not: the CONCURRENTLY ones change the catalog more often, in the
# middle of the calls).
concurrently() {
    case $concurrently_mode in
    always) echo CONCURRENTLY ;;
    never) ;;
    *) [ $(($1 % 3)) -eq 1 ] || echo CONCURRENTLY ;;
    esac
}

reindex_round() {
    local c
    c=$(concurrently "$1")
    ddl_with_holder "$1" <<SQL
REINDEX TABLE $c quota.accounts;
REINDEX TABLE $c quota.holds;
REINDEX TABLE $c quota.slots;
SQL
}

# The new indexes are checked once the calls that queued behind them have
# run, before most rows are written again; then dropped, except the last.
create_index_round() {
    local c
    c=$(concurrently "$1")
    ddl_with_holder "$1" <<SQL
DROP INDEX IF EXISTS quota.ddl_slots_used;
DROP INDEX IF EXISTS quota.ddl_accounts_used;
DROP INDEX IF EXISTS quota.ddl_holds_state;
CREATE INDEX $c ddl_slots_used ON quota.slots (used);
CREATE INDEX $c ddl_accounts_used ON quota.accounts (used);
CREATE INDEX $c ddl_holds_state ON quota.holds (state);
SELECT pg_sleep(0.2);
SELECT bt_index_check('quota.ddl_slots_used', heapallindexed => true);
SELECT bt_index_check('quota.ddl_accounts_used', heapallindexed => true);
SELECT bt_index_check('quota.ddl_holds_state', heapallindexed => true);
SQL
}

# pgbench and the DDL session side by side.
race() {
    local name=$1 round=$2 rc=0
    shift 2
    rm -f "$dir/stop"
    ddl_loop "$name" "$round" &
    ddl_pid=$!
    spend "$name" "$@"
    touch "$dir/stop"
    wait "$ddl_pid" || rc=$?
    ddl_pid=
    [ "$rc" -eq 0 ] || failures=$((failures + 1))
}

# Every index of the three tables is valid and sound; every account adds up.
audit() {
    local name=$1 index out invalid checked=0 total
    invalid=$(psql_in "SELECT string_agg(indexrelid::regclass::text, ', ') FROM pg_index
                        WHERE indrelid IN ('quota.accounts'::regclass, 'quota.slots'::regclass, 'quota.holds'::regclass)
                          AND NOT (indisvalid AND indisready)")
    [ -z "$invalid" ] || fail "$name: invalid indexes left behind: $invalid"
    for index in $(psql_in "SELECT indexrelid::regclass FROM pg_index
                             WHERE indrelid IN ('quota.accounts'::regclass, 'quota.slots'::regclass, 'quota.holds'::regclass)
                               AND indisvalid AND indisready ORDER BY 1"); do
        checked=$((checked + 1))
        out=$(psql_in "SELECT bt_index_check('$index', heapallindexed => true)" 2>&1) ||
            fail "$name: bt_index_check('$index', heapallindexed => true): $out"
    done
    # used = the logged charges and commits; held = the open holds; the
    # holds' committed credits = the logged commits; hot1 within its limit.
    out=$(psql_in "
        WITH logged AS (
            SELECT team, sum(amount) AS used, sum(amount) FILTER (WHERE kind = 'commit') AS committed
              FROM ddl_log GROUP BY team),
        holds AS (
            SELECT team, sum(amount) FILTER (WHERE state = 'open') AS open,
                   sum(committed) FILTER (WHERE state = 'committed') AS committed
              FROM quota.holds GROUP BY team)
        SELECT string_agg(format('%s: used %s held %s (limit %s); logged used %s, open holds %s, committed by holds %s, logged commits %s',
                                 u.team, u.used, u.held, u.credit_limit, coalesce(l.used, 0), coalesce(h.open, 0),
                                 coalesce(h.committed, 0), coalesce(l.committed, 0)), E'\n' ORDER BY u.team)
          FROM quota.usage u LEFT JOIN logged l USING (team) LEFT JOIN holds h USING (team)
         WHERE u.used <> coalesce(l.used, 0) OR u.held <> coalesce(h.open, 0)
            OR coalesce(h.committed, 0) <> coalesce(l.committed, 0)
            OR (u.team = 'hot1' AND u.used + u.held > u.credit_limit)")
    [ -z "$out" ] || fail "$name: accounts do not add up:
$out"
    total=$(psql_in "SELECT sum(used) || ' credits used, ' || sum(held) || ' held' FROM quota.usage")
    echo "ddl_race: $name: amcheck (heapallindexed) on $checked indexes and the totals checked ($total)"
}

case $concurrently_mode in
always) how="CONCURRENTLY" ;;
never) how="not CONCURRENTLY" ;;
*) how="two rounds in three CONCURRENTLY" ;;
esac

if [[ " $phases " == *" a "* ]]; then
    echo "ddl_race: (a) REINDEX TABLE quota.accounts, quota.holds, quota.slots ($how) while 8 clients spend on plain accounts, ${seconds}s"
    race "REINDEX, plain accounts" reindex_round -f "$dir/charge.sql@1" -f "$dir/reserve_commit.sql@1"
    audit "REINDEX, plain accounts"

    echo "ddl_race: (a) the same on slotted accounts (quota.set_slots), ${seconds}s"
    race "REINDEX, slotted accounts" reindex_round -f "$dir/hot_charge.sql@1" -f "$dir/hot_reserve_commit.sql@1" \
        -f "$dir/slotted_charge.sql@1"
    audit "REINDEX, slotted accounts"
fi

if [[ " $phases " == *" b "* ]]; then
    echo "ddl_race: (b) CREATE INDEX on quota.slots, quota.accounts, quota.holds ($how), checked and dropped, while 8 clients spend, ${seconds}s"
    # At a steady rate, so that rows are not all rewritten at once.
    race "CREATE INDEX" create_index_round -R 300 -f "$dir/charge.sql@1" -f "$dir/reserve_commit.sql@1" \
        -f "$dir/slotted_charge.sql@3" -f "$dir/hot_charge.sql@1" -f "$dir/hot_reserve_commit.sql@1"
    # The indexes of the last round stay while the clients spend a while longer.
    seconds=$(((seconds + 2) / 3))
    echo "ddl_race: (b) the last round's indexes kept, ${seconds}s more of spending"
    spend "after CREATE INDEX" -R 300 -f "$dir/charge.sql@1" -f "$dir/reserve_commit.sql@1" \
        -f "$dir/slotted_charge.sql@3" -f "$dir/hot_charge.sql@1" -f "$dir/hot_reserve_commit.sql@1"
    [ "$(psql_in "SELECT count(*) FROM pg_indexes WHERE schemaname = 'quota' AND indexname LIKE 'ddl\_%'")" = 3 ] ||
        fail "the indexes made by the DDL session are not all there"
    audit "CREATE INDEX"
fi

if [ "$failures" -gt 0 ]; then
    echo "ddl_race: $failures check(s) failed"
    exit 1
fi
echo "ddl_race: ok (REINDEX and CREATE INDEX while spending: no error, no deadlock, indexes sound, totals exact)"
