#!/usr/bin/env bash
# quota on Citus (issue 13): quota.distribute() and the contract through the
# coordinator.  Starts a local Citus cluster of its own (test/lib/citus.sh:
# a coordinator and two workers on localhost ports): uses an installed
# Citus, builds ../shared/deps/citus-13.0.5.tar.gz when there is none, and
# skips with a message when neither is possible.
#
#   1. refusals: distribute() on a worker, with parents, twice; tables
#      distributed by hand (a second database) make every call refuse
#   2. the calls through the coordinator, alone and inside transaction
#      blocks: charge, reserve, commit, release, keyed retries, denials,
#      caps, alerts, expiry, quota.usage, bad input, holds made before
#      distribute(), ids unique over the nodes (calls made on a worker too);
#      each spending call (commit and release included) delegated to its
#      team's worker in one command, there run on the team's shards
#      themselves (none of its statements planned by Citus; with
#      quota.citus_shard_access off, as before), its errors as on one
#      node, the caller's settings sent with it, its alerts notified on the
#      node the application called
#   3. the last credit: 16 connections race for 10 credits, exactly 10 granted
#   4. 16 connections spend through the coordinator while a shard moves
#      between the workers three times (citus_move_shard_placement): no
#      error, nothing lost,
#      the ledger's invariants hold on every account
#   4b. test/stress/audit.py --citus through the coordinator (16 connections,
#      its invariants), a shard moved there and back while it runs
#   5. isolation specs through the coordinator (test/citus/specs): the last
#      credit, commit against release, a cap's last place
#   6. tables distributed by hand: every call refused
#   7. the project's regress files (accounts, spending, holds, settings),
#      unchanged, on a distributed quota of one node (one node's expected
#      output but for the reservation ids, which carry their team's bucket)
#   7b. the same files through the coordinator of the three nodes: one
#      node's expected output but for the reservation ids the workers made
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/cluster.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib/citus.sh"
fail() { echo "citus: FAIL: $*"; exit 1; }

if ! citus_available && ! citus_install; then
    echo "citus: SKIPPED: no Citus for PostgreSQL 15 and it could not be built from $CITUS_TARBALL"
    exit 0
fi
citus_start_cluster quota_citus
q() { psql -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }
# The SQLSTATE of a statement that must fail ('ok' if it did not).
code() {
    { psql -X -q -At -v ON_ERROR_STOP=1 "$@" 2>&1 >/dev/null || true; } | sed -n 's/^ERROR: *\([0-9A-Z]\{5\}\).*/\1/p' | head -1
}
expect_code() {
    local want=$1; shift
    local got
    got=$(code -c "\\set VERBOSITY sqlstate" -c "$1")
    [ "$got" = "$want" ] || fail "$1: SQLSTATE '${got:-none}', not $want"
}
check() { # check LABEL SQL EXPECTED
    local got
    got=$(q "$2")
    [ "$got" = "$3" ] || fail "$1: got '$got', expected '$3'"
}
worker() { psql -X -q -At -h "$CITUS_DIR" -p $((CITUS_PORT + 1)) -U postgres -d quota_citus "$@"; }

# ---------------------------------------------------------------- 1. refusals
q "SELECT quota.set_account(t, 100) FROM unnest(ARRAY['a', 'b', 'c', 'd', 'org']) t" >/dev/null
q "SELECT quota.charge_credit(t, 2) FROM unnest(ARRAY['a', 'b', 'c', 'd']) t" >/dev/null
early=$(q "SELECT reservation FROM quota.reserve_credit('a', 5)")        # made before distribute()
early_released=$(q "SELECT reservation FROM quota.reserve_credit('b', 3)")

got=$({ worker -c "\\set VERBOSITY sqlstate" -c "SELECT quota.distribute()" 2>&1 || true; } | sed -n 's/^ERROR: *\([0-9A-Z]\{5\}\).*/\1/p')
[ "$got" = "55000" ] || fail "distribute() on a worker: '$got', not 55000"
q "SELECT quota.set_slots('d', 2)" >/dev/null
expect_code 0A000 "SELECT quota.distribute()"
q "SELECT quota.set_slots('d', 0)" >/dev/null
q "SELECT quota.set_parent('c', 'org')" >/dev/null
expect_code 0A000 "SELECT quota.distribute()"
check "a refused distribute() distributed nothing" \
    "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid::text LIKE 'quota.%'" 0
q "SELECT quota.set_parent('c', NULL)" >/dev/null
q "SELECT quota.distribute()" >/dev/null
check "distributed tables" \
    "SELECT string_agg(logicalrelid::text || ':' || partmethod::text, ' ' ORDER BY logicalrelid::text) FROM pg_dist_partition WHERE logicalrelid::text LIKE 'quota.%'" \
    "quota.accounts:h quota.alert_settings:h quota.events:h quota.history:h quota.history_purged:n quota.holds:h quota.links:h quota.slots:h"
check "one colocation group" \
    "SELECT count(DISTINCT colocationid) FROM pg_dist_partition WHERE logicalrelid::text LIKE 'quota.%' AND partmethod = 'h'" 1
expect_code 55000 "SELECT quota.distribute()"
echo "citus: refusals ok (on a worker 55000, with slots or parents 0A000 and nothing distributed, twice 55000)"

# ---------------------------------------------------------------- 2. the calls
check "state kept by distribute()" \
    "SELECT string_agg(team || ':' || used || '/' || held, ' ' ORDER BY team) FROM quota.usage" \
    "a:2/5 b:2/3 c:2/0 d:2/0 org:0/0"
check "commit of a hold made before distribute()" "SELECT granted, used, held FROM quota.commit_credit($early, 4)" "t|6|0"
check "release of a hold made before distribute()" \
    "SELECT quota.release_credit($early_released); SELECT held FROM quota.usage WHERE team = 'b'" "t
0"

# Calls alone and inside a transaction block.
check "charge" "SELECT granted, used, remaining FROM quota.charge_credit('c', 10)" "t|12|88"
check "charge in a transaction" \
    "BEGIN; SELECT FROM quota.charge_credit('c', 5); SELECT granted, used FROM quota.charge_credit('c', 1); COMMIT;" "t|18"
check "rolled back" "BEGIN; SELECT FROM quota.charge_credit('c', 50); ROLLBACK; SELECT used FROM quota.usage WHERE team = 'c';" 18
r1=$(q "SELECT reservation FROM quota.reserve_credit('d', 7, idempotency_key => 'job-1')")
check "keyed retry answers the same reservation" "SELECT reservation, held FROM quota.reserve_credit('d', 7, idempotency_key => 'job-1')" "$r1|7"
check "commit through the coordinator" "SELECT granted, used, held FROM quota.commit_credit($r1, 6)" "t|8|0"
check "commit again: the same answer" "SELECT granted, used FROM quota.commit_credit($r1, 6)" "t|8"
expect_code 55000 "SELECT quota.release_credit($r1)"
r2=$(q "BEGIN; SELECT reservation FROM quota.reserve_credit('d', 3); COMMIT;")
check "release in a transaction" \
    "BEGIN; SELECT FROM quota.release_credit($r2); COMMIT; SELECT held FROM quota.usage WHERE team = 'd'" 0
check "denial" "SELECT granted, used, remaining FROM quota.charge_credit('d', 1000)" "f|8|92"
check "denial of a reserve" "SELECT granted, reservation IS NULL FROM quota.reserve_credit('d', 93)" "f|t"
check "is_team_limited" "SELECT quota.is_team_limited('d'), quota.is_team_limited('a')" "f|f"
q "SELECT quota.set_account('lim', 3)" >/dev/null
q "SELECT quota.charge_credit('lim', 3)" >/dev/null
check "limited" "SELECT quota.is_team_limited('lim'), (SELECT limited FROM quota.usage WHERE team = 'lim')" "t|t"
q "SELECT quota.set_account('month', 10, period => '1 month', anchor => now() - interval '40 days')" >/dev/null
check "a period rolled over lazily" "SELECT granted, used, resets_at > now() FROM quota.charge_credit('month', 4)" "t|4|t"

# Bad input: the contract's SQLSTATEs through the coordinator.
expect_code 22004 "SELECT quota.charge_credit(NULL)"
expect_code 22023 "SELECT quota.charge_credit('c', -1)"
expect_code P0002 "SELECT quota.charge_credit('nobody', 1)"
expect_code P0002 "SELECT quota.commit_credit(999999)"
expect_code P0002 "SELECT quota.release_credit(999999)"
expect_code 0A000 "SELECT quota.set_parent('c', 'org')"
expect_code 0A000 "SELECT quota.set_slots('c', 4)"

# Concurrency caps, and expiry.
q "SELECT quota.set_account('capped', 100)" >/dev/null
q "SELECT quota.set_concurrency('capped', 2)" >/dev/null
q "SELECT quota.reserve_credit('capped', 1, hold_for => '4 seconds')" >/dev/null
q "BEGIN; SELECT quota.reserve_credit('capped', 1, hold_for => '4 seconds'); COMMIT;" >/dev/null
check "cap reached" "SELECT granted, retry_after BETWEEN 1 AND 4 FROM quota.reserve_credit('capped', 1)" "f|t"
sleep 4.2
check "expired holds do not count" "SELECT granted FROM quota.reserve_credit('capped', 1, hold_for => '1 second')" "t"
sleep 1.2
check "expire_holds() from the coordinator" "SELECT quota.expire_holds() >= 1" "t"
check "capped account after expiry" "SELECT held FROM quota.usage WHERE team = 'capped'" 0

# Purges from the coordinator: settled holds and closed history go, open holds stay.
q "SELECT quota.reserve_credit('d', 1, hold_for => '1 hour')" >/dev/null
q "SELECT quota.set_account('tick', 10, period => '1 second')" >/dev/null
q "SELECT quota.charge_credit('tick', 2)" >/dev/null
sleep 1.1
# (Summed: on a loaded machine a window may pass between set_account and the first charge.)
check "a closed window in usage_history" "SELECT used FROM quota.charge_credit('tick', 1); SELECT sum(used) FROM quota.usage_history WHERE team = 'tick'" "1
2"
check "purge_holds" "SELECT quota.purge_holds(now() + interval '1 minute'); SELECT count(*) FROM quota.holds WHERE state <> 'open'" "7
0"
check "open holds kept" "SELECT count(*) > 0 FROM quota.holds WHERE state = 'open'" t
check "purge_history" "SELECT quota.purge_history(now() + interval '1 minute') >= 1; SELECT count(*) FROM quota.history" "t
0"
check "the closed window is gone from usage_history" "SELECT count(*) FROM quota.usage_history WHERE team = 'tick'" 0

# A cap changed through a worker: a coordinator session that read it before sees the change at once.
q "SELECT quota.set_account('capped2', 100)" >/dev/null
q "SELECT quota.set_concurrency('capped2', 5)" >/dev/null
got=$(psql -X -q -At -v ON_ERROR_STOP=1 <<SQL
SELECT granted FROM quota.reserve_credit('capped2', 1);
\\! psql -X -q -At -h "$CITUS_DIR" -p $((CITUS_PORT + 1)) -U postgres -d quota_citus -c "SELECT quota.set_concurrency('capped2', 1)" >/dev/null
SELECT granted FROM quota.reserve_credit('capped2', 1);
SQL
)
[ "$(echo $got)" = "t f" ] || fail "a cap changed through a worker: the coordinator session answered $(echo $got), not 't f'"

# Alerts: events stored on the team's shard, once per threshold.
q "SELECT quota.set_account('alerted', 10)" >/dev/null
q "SELECT quota.set_alerts('alerted', '{50,100}')" >/dev/null
q "SELECT quota.charge_credit('alerted', 6)" >/dev/null
q "BEGIN; SELECT quota.charge_credit('alerted', 4); COMMIT;" >/dev/null
check "alert events" "SELECT string_agg(threshold::text, ',' ORDER BY threshold) FROM quota.events WHERE team = 'alerted'" "50,100"

# Delegation: a spending call is one command to its team's worker (Citus logs what it sends).
sent() { psql -X -q -At -v ON_ERROR_STOP=1 -c "SET citus.log_remote_commands = on" -c "SET client_min_messages = log" -c "$1" 2>&1 |
    sed -n 's/^NOTICE: *issuing //p' | grep -v -e '^BEGIN' -e '^COMMIT' -e '^PREPARE' -e '^SELECT assign_distributed_transaction_id' | sed 's/(.*//'; }
[ "$(sent "SELECT quota.charge_credit('c', 1)")" = "SELECT granted, reservation, used, held, credit_limit, remaining, resets_at, retry_after, notices FROM quota_internal.charge_credit_on_shard" ] ||
    fail "charge_credit was not one delegated call: $(sent "SELECT quota.charge_credit('c', 1)")"
[ "$(sent "SELECT quota.reserve_credit('c', 1)")" = "SELECT granted, reservation, used, held, credit_limit, remaining, resets_at, retry_after, notices FROM quota_internal.reserve_credit_on_shard" ] ||
    fail "reserve_credit was not one delegated call"
[ "$(sent "SELECT quota.is_team_limited('c')" | sed 's/_[0-9]* .*//')" = "SELECT credit_limit, unlimited, period, anchor, window_start, resets_at, used, held, next_expiry, slots FROM ONLY quota.accounts" ] ||
    fail "is_team_limited was not one read on the team's shard: $(sent "SELECT quota.is_team_limited('c')")"
[ "$(sent "BEGIN; SELECT quota.charge_credit('c', 1); SELECT quota.charge_credit('d', 1); COMMIT;" | sort -u)" = \
  "SELECT granted, reservation, used, held, credit_limit, remaining, resets_at, retry_after, notices FROM quota_internal.charge_credit_on_shard" ] ||
    fail "charges in a transaction block were not delegated"
# commit and release: one command, to the node that made the reservation (its id says which), which settles it
# on its team's shards; with quota.citus_shard_access off, the team asked of that node, then the call.
r3=$(q "SELECT reservation FROM quota.reserve_credit('c', 2)")
[ "$(sent "SELECT quota.commit_credit($r3)" | sed 's/ r$//; s/.* FROM //' | tr '\n' ' ')" = "quota_internal.commit_credit_on_node " ] ||
    fail "commit_credit was not one command: $(sent "SELECT quota.commit_credit($r3)")"
r3=$(q "SELECT reservation FROM quota.reserve_credit('c', 2)")
[ "$(sent "SELECT quota.release_credit($r3)" | sed 's/ r$//; s/.* FROM //' | tr '\n' ' ')" = "quota_internal.release_credit_on_node " ] ||
    fail "release_credit was not one command: $(sent "SELECT quota.release_credit($r3)")"
r3=$(q "SELECT reservation FROM quota.reserve_credit('c', 2)")
[ "$(sent "SET quota.citus_shard_access = off; SELECT quota.commit_credit($r3)" | sed 's/ r$//; s/.* FROM //' | tr '\n' ' ')" = "quota_internal.hold_team_on_node quota_internal.commit_credit_on_shard " ] ||
    fail "commit_credit with quota.citus_shard_access off was not two commands"
r3=$(q "SELECT reservation FROM quota.reserve_credit('c', 2)")
[ "$(sent "SET quota.citus_shard_access = off; SELECT quota.release_credit($r3)" | sed 's/ r$//; s/.* FROM //' | tr '\n' ' ')" = "quota_internal.hold_team_on_node quota_internal.release_credit_on_shard " ] ||
    fail "release_credit with quota.citus_shard_access off was not two commands"

# A bucket split over shards (a tenant isolated to a shard of its own): its commits are not found where the id's
# bucket points, and take the way by team (three commands), with the same reply.
q "SELECT quota.set_account('iso-tenant', 100)" >/dev/null
r5=$(q "SELECT reservation FROM quota.reserve_credit('iso-tenant', 5)")
q "SET client_min_messages = warning; SELECT isolate_tenant_to_new_shard('quota.accounts', 'iso-tenant', 'CASCADE', shard_transfer_mode => 'block_writes')" >/dev/null
[ "$(sent "SELECT quota.commit_credit($r5, 4)" | sed 's/ r$//; s/.* FROM //' | tr '\n' ' ')" = "quota_internal.commit_credit_on_node quota_internal.hold_team_on_node quota_internal.commit_credit_on_shard " ] ||
    fail "a commit on an isolated tenant's shard did not go by its team"
check "that commit settled the hold" "SELECT used, held FROM quota.usage WHERE team = 'iso-tenant'" "4|0"
r5=$(q "SELECT reservation FROM quota.reserve_credit('iso-tenant', 5)")
check "a hold made after the split, released" "SELECT quota.release_credit($r5); SELECT held FROM quota.usage WHERE team = 'iso-tenant'" "t
0"

# The twins work on their team's shards themselves: no statement of theirs goes through Citus's planner, which
# logs each one it runs on a shard of its own node (citus.log_local_commands, sent back to the client as a
# NOTICE); with quota.citus_shard_access off they all do.
for port in $((CITUS_PORT + 1)) $((CITUS_PORT + 2)); do
    psql -X -q -h "$CITUS_DIR" -p $port -U postgres -d quota_citus -c "ALTER DATABASE quota_citus SET citus.log_local_commands = on"
done
through_citus() { psql -X -q -At -v ON_ERROR_STOP=1 -c "$1" 2>&1 | grep -c "executing the command locally" || true; }
r4=$(q "SELECT reservation FROM quota.reserve_credit('c', 2)")
for call in "SELECT quota.charge_credit('c', 1)" "SELECT quota.reserve_credit('c', 1)" "SELECT quota.commit_credit($r4, 1)"; do
    [ "$(through_citus "$call")" = 0 ] || fail "$call ran statements through Citus on the worker: $(through_citus "$call")"
    n=$(through_citus "SET quota.citus_shard_access = off; ${call/$r4/$(q "SELECT reservation FROM quota.reserve_credit('c', 2)")}")
    [ "$n" -gt 0 ] || fail "$call with quota.citus_shard_access off ran no statement through Citus"
done
for port in $((CITUS_PORT + 1)) $((CITUS_PORT + 2)); do
    psql -X -q -h "$CITUS_DIR" -p $port -U postgres -d quota_citus -c "ALTER DATABASE quota_citus RESET citus.log_local_commands"
done

# A delegated call inside savepoints and an exception block: rolled back with them.
q "SELECT quota.set_account(t, 100) FROM unnest(ARRAY['sp-a', 'sp-b']) t" >/dev/null
q "BEGIN; SAVEPOINT s; SELECT quota.charge_credit('sp-a', 5); ROLLBACK TO s; SELECT quota.charge_credit('sp-a', 1); SAVEPOINT t; SELECT quota.charge_credit('sp-b', 1); RELEASE t; COMMIT;" >/dev/null
q "DO \$\$ BEGIN BEGIN PERFORM quota.charge_credit('sp-b', 7); PERFORM quota.charge_credit('nobody', 1); EXCEPTION WHEN no_data_found THEN NULL; END; PERFORM quota.charge_credit('sp-a', 2); END \$\$" >/dev/null
check "savepoints and an exception block" "SELECT string_agg(team || ':' || used, ' ' ORDER BY team) FROM quota.usage WHERE team LIKE 'sp-%'" "sp-a:3 sp-b:1"

# From the hostile review of delegation:
# an application role cannot name the twins (Citus would plan a NULL team before EXECUTE is checked, and crash);
q "CREATE ROLE quota_app LOGIN; GRANT USAGE ON SCHEMA quota TO quota_app" >/dev/null
for twin in "SELECT * FROM quota_internal.charge_credit_on_shard(NULL, 1, 'credits', false, 0, NULL)" \
            "PREPARE t(text) AS SELECT * FROM quota_internal.release_credit_on_shard(\$1, 1, 0, NULL)"; do
    got=$(psql -X -q -At -U quota_app -c "$twin" 2>&1 || true)
    case $got in *"permission denied for schema quota_internal"*) ;; *) fail "an application role named a twin: $got" ;; esac
done
check "the coordinator is up" "SELECT 1" 1
# a call runs at its caller's transaction time, not the worker's clock (now() is read here first: Citus
# evaluates it on the worker, in a transaction that began later);
q "SELECT quota.set_account('clock', 100)" >/dev/null
got=$(psql -X -q -At -v ON_ERROR_STOP=1 <<'SQL'
BEGIN;
SELECT now() AS t0 \gset
SELECT pg_sleep(1.1);
SELECT reservation AS r FROM quota.reserve_credit('clock', 1, hold_for => '1 hour') \gset
SELECT created_at = :'t0' AND expires_at = :'t0'::timestamptz + interval '1 hour' FROM quota.holds WHERE id = :r;
COMMIT;
SQL
)
[ "$(echo $got)" = "t" ] || fail "a hold made late in a transaction is not made at its start, as on one node: $got"
# the caller's TimeZone writes the alert payloads, and the caller's lock_timeout bounds the wait for the account;
q "SELECT quota.set_account('zoned', 10); SELECT quota.set_alerts('zoned', '{50}')" >/dev/null
got=$(psql -X -q -c "SET TimeZone = 'Asia/Kolkata'" -c "LISTEN quota_events" -c "SELECT FROM quota.charge_credit('zoned', 6)" -c "SELECT 1" 2>&1)
case $got in *'"team":"zoned"'*'+05:30"'*) ;; *) fail "an alert payload not in the caller's TimeZone: $got" ;; esac
q "SELECT quota.set_account('waited', 10)" >/dev/null
psql -X -q -c "BEGIN" -c "SELECT quota.charge_credit('waited', 1)" -c "SELECT pg_sleep(3)" -c "COMMIT" >/dev/null 2>&1 &
holder=$!
sleep 1
expect_code 55P03 "SET lock_timeout = '200ms'; SELECT quota.charge_credit('waited', 1)"
wait "$holder"
# citus.function_opens_transaction_block = off (any role may set it) does not make a call outlive its rollback;
q "SELECT quota.set_account('blocked', 10)" >/dev/null
psql -X -q -c "SET citus.function_opens_transaction_block = off" -c "SELECT (quota.charge_credit('blocked', 1)).used, 1/0" >/dev/null 2>&1 || true
check "a call rolled back with its statement" "SELECT used FROM quota.usage WHERE team = 'blocked'" 0
# the error of a name the client's encoding cannot show is escaped, with its SQLSTATE, as on one node;
got=$(psql -X -q -At -c "SET client_encoding = 'LATIN1'" -c "\\set VERBOSITY sqlstate" -c "SELECT quota.charge_credit(U&'\\65e5\\672c', 1)" 2>&1 || true)
[ "$got" = "ERROR:  P0002" ] || fail "a name LATIN1 cannot show: $got"
# and the caller's own context stays on the error.
got=$(psql -X -q -At -c "DO \$\$ BEGIN PERFORM quota.charge_credit('nobody', 1); END \$\$" 2>&1 || true)
case $got in *"PL/pgSQL function inline_code_block line 1 at PERFORM"*) ;; *) fail "the caller's context is gone: $got" ;; esac

# A delegated call's error reads as on one node: no trace of the hop.
got=$(psql -X -q -At -c "SELECT quota.charge_credit('nobody', 1)" 2>&1 || true)
case "$got" in *"while executing command"*|*"_on_shard"*) fail "an error carries the hop: $got" ;; esac
case "$got" in *'quota account "nobody" for resource "credits" does not exist'*) ;; *) fail "unknown account: $got" ;; esac

# The caller's settings travel with the call (a superuser's SET on the coordinator, not the workers' config).
check "quota.default_limit of the calling session" \
    "SET quota.default_limit = '7'; SELECT credit_limit, used FROM quota.charge_credit('fresh', 2)" "7|2"
check "quota.default_alerts of the calling session" \
    "SET quota.default_limit = '10'; SET quota.default_alerts = '50'; SELECT FROM quota.charge_credit('fresh-alerted', 6); SELECT count(*) FROM quota.events WHERE team = 'fresh-alerted'" 1
# ... for that call only: the worker's connection that Citus keeps for the session does not keep them.
after_reset=()
for i in 3 4 5 6 7 8; do after_reset+=(-c "SELECT quota.charge_credit('fresh-$i', 1)"); done
got=$(psql -X -q -At -c "SET quota.default_limit = '7'" -c "SELECT quota.charge_credit('fresh-' || g, 1) FROM generate_series(1, 2) g" \
    -c "RESET quota.default_limit" "${after_reset[@]}" 2>&1 | grep -c 'does not exist' || true)
[ "$got" = 6 ] || fail "a call's settings stayed on the worker's connection ($got of 6 calls refused after RESET)"

# Alerts raised on a worker are notified on the node the application called, on commit only.
q "SELECT quota.set_account(t, 10) FROM unnest(ARRAY['heard', 'unheard', 'muted']) t" >/dev/null
q "SELECT quota.set_alerts(t, '{50}') FROM unnest(ARRAY['heard', 'unheard', 'muted']) t" >/dev/null
notified() { psql -X -q -v ON_ERROR_STOP=1 -c "LISTEN quota_events" -c "$1" -c "SELECT 1" 2>&1 | grep -c "^Asynchronous notification \"quota_events\" with payload \"{\"id\":[0-9]*,\"team\":\"$2\"" || true; }
[ "$(notified "SELECT quota.charge_credit('heard', 6)" heard)" = 1 ] || fail "an alert raised on a worker was not notified through the coordinator"
[ "$(notified "BEGIN; SELECT quota.charge_credit('unheard', 6); ROLLBACK;" unheard)" = 0 ] || fail "a rolled-back alert was notified"
[ "$(notified "SET quota.notify_events = off; SELECT quota.charge_credit('muted', 6)" muted)" = 0 ] || fail "quota.notify_events = off still notified"
check "a muted alert is stored" "SELECT count(*) FROM quota.events WHERE team = 'muted'" 1

# Reservation ids: unique over the nodes.  A call made on a worker (Citus lets
# any node with metadata run it) draws them from that node's sequence, in its group.
q "SELECT quota.set_account('id-' || g, 1000) FROM generate_series(1, 20) g" >/dev/null
for i in $(seq 1 20); do
    q "SELECT quota.reserve_credit('id-$i', 1)" >/dev/null
    worker -c "SELECT quota.reserve_credit('id-$i', 1)" >/dev/null
done
w=$(worker -c "SELECT reservation FROM quota.reserve_credit('id-1', 1)")
check "a reservation made on a worker, committed through the coordinator" "SELECT granted FROM quota.commit_credit($w)" t
check "ids unique over the cluster" "SELECT count(*) = count(DISTINCT id) FROM quota.holds" t
check "ids carry the group of the node that made them (the team's worker)" \
    "SELECT count(DISTINCT id >> 52) FROM quota.holds WHERE team LIKE 'id-%'" 2
check "ids carry their team's bucket (the top 8 bits of its hash)" \
    "SELECT count(*) FROM quota.holds WHERE team LIKE 'id-%' AND (id >> 44) & 255 <> (hashtext(team)::bigint + 2147483648) >> 24" 0
check "every hold is its account's" \
    "SELECT count(*) FROM (SELECT u.team FROM quota.usage u LEFT JOIN (SELECT team, sum(amount) s FROM quota.holds WHERE state = 'open' GROUP BY team) h USING (team) WHERE u.held <> coalesce(h.s, 0)) x" 0
echo "citus: the calls through the coordinator ok (alone and in transactions, legacy holds, keys, denials, caps, expiry, purges, alerts, usage and usage_history, bad input, ids; delegated in one command each, commit and release too, by team after a tenant isolation, none planned by Citus on the worker, errors as on one node, settings sent, alerts notified where called)"

# ---------------------------------------------------------------- 3. the last credit
q "SELECT quota.set_account('race', 10)" >/dev/null
script=$(mktemp /tmp/quota-citus-XXXXXX.sql)
chmod 644 "$script"
echo "SELECT quota.charge_credit('race', 1);" >"$script"
pgbench -n -c 16 -j 2 -t 5 -f "$script" >/dev/null 2>&1 || fail "pgbench on the last credit failed"
check "exactly the limit granted to 16 racing connections" "SELECT used, held FROM quota.usage WHERE team = 'race'" "10|0"
echo "citus: the last credit ok (16 connections, 80 charges of 1 on a limit of 10: exactly 10 granted)"

# ---------------------------------------------------------------- 4. spending while a shard moves
q "SELECT quota.set_account('s-' || g, 1000000) FROM generate_series(1, 24) g" >/dev/null
cat >"$script" <<'SQL'
\set t random(1, 24)
SELECT quota.charge_credit('s-' || :t, 1);
SELECT reservation AS r FROM quota.reserve_credit('s-' || :t, 3) \gset
SELECT quota.commit_credit(:r, 2);
BEGIN;
SELECT reservation AS x FROM quota.reserve_credit('s-' || :t, 5) \gset
SELECT quota.release_credit(:x);
SELECT quota.charge_credit('s-' || :t, 1);
COMMIT;
SQL
log=$(mktemp /tmp/quota-citus-XXXXXX.log)
chmod 666 "$log"
# A hold made on s-1's worker before its shard moves: its id carries that worker, the shard ends on the other.
moved_hold=$(q "SELECT reservation FROM quota.reserve_credit('s-1', 1, hold_for => NULL)")
pgbench -n -c 16 -j 2 -T 15 -f "$script" >"$log" 2>&1 &
bench=$!
sleep 3
# The shard that holds s-1 moves to the other worker and back, writes blocked while it copies.
read -r shard from_port < <(q "SELECT s.shardid, p.nodeport FROM pg_dist_shard s JOIN pg_dist_placement pl USING (shardid) JOIN pg_dist_node p USING (groupid) WHERE s.logicalrelid = 'quota.accounts'::regclass AND get_shard_id_for_distribution_column('quota.accounts', 's-1') = s.shardid" | tr '|' ' ')
to_port=$((from_port == CITUS_PORT + 1 ? CITUS_PORT + 2 : CITUS_PORT + 1))
# Moved there, and back, and there again: each move waits for the calls that locked an account on it.
for hop in "$from_port $to_port" "$to_port $from_port" "$from_port $to_port"; do
    set -- $hop
    q "CALL citus_cleanup_orphaned_resources()" >/dev/null   # the placement the last move left behind
    q "SELECT citus_move_shard_placement($shard, 'localhost', $1, 'localhost', $2, shard_transfer_mode => 'block_writes')" >/dev/null ||
        fail "citus_move_shard_placement failed"
    sleep 1
done
wait "$bench" || { cat "$log"; fail "pgbench failed while the shard moved"; }
done_tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log")
failed_tx=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$log")
[ "${failed_tx:-0}" = 0 ] || { cat "$log"; fail "$failed_tx transactions failed while the shard moved"; }
check "the shard moved" "SELECT p.nodeport FROM pg_dist_placement pl JOIN pg_dist_node p USING (groupid) WHERE pl.shardid = $shard" "$to_port"
# Each transaction: charge 1, reserve 3 committed as 2, reserve 5 released, charge 1: used 4, nothing held.
check "every credit of $done_tx transactions accounted for" \
    "SELECT sum(used), sum(held) FROM quota.usage WHERE team LIKE 's-%'" "$((done_tx * 4))|1"
check "a hold made before its shard moved away commits through the coordinator" \
    "SELECT granted FROM quota.commit_credit($moved_hold); SELECT sum(used), sum(held) FROM quota.usage WHERE team LIKE 's-%'" "t
$((done_tx * 4 + 1))|0"
check "holds settled as made" \
    "SELECT count(*) FILTER (WHERE state = 'committed' AND committed = 2 AND amount = 3), count(*) FILTER (WHERE state = 'released' AND amount = 5), count(*) FROM quota.holds WHERE team LIKE 's-%'" \
    "$done_tx|$done_tx|$((done_tx * 2 + 1))"
check "ids still unique" "SELECT count(*) = count(DISTINCT id) FROM quota.holds" t
rm -f "$script" "$log"
echo "citus: $done_tx transactions of 16 connections through the coordinator while shard $shard moved three times between ports $from_port and $to_port: none failed, every credit accounted for"

# ---------------------------------------------------------------- 4b. the stress audit through the coordinator
# test/stress/audit.py --citus: 16 connections on a few hot accounts through
# the coordinator (charges, reserves, commits, releases, keyed retries,
# multi-call transactions committed and rolled back, expiry, alerts,
# one-second windows), with its invariants checked against what was
# acknowledged; the shard of one hot account moves to the other worker and
# back while it runs.
citus_database quota_audit
PGDATABASE=quota_audit q "SELECT quota.distribute()" >/dev/null
audit_log=$(mktemp /tmp/quota-citus-audit.XXXXXX)
PGDATABASE=quota_audit /usr/bin/python3 "$QUOTA_ROOT/test/stress/audit.py" --citus --workers 16 --seconds 15 >"$audit_log" 2>&1 &
auditor=$!
sleep 4
read -r shard from_port < <(PGDATABASE=quota_audit q "SELECT s.shardid, p.nodeport FROM pg_dist_shard s JOIN pg_dist_placement pl USING (shardid) JOIN pg_dist_node p USING (groupid) WHERE s.logicalrelid = 'quota.accounts'::regclass AND get_shard_id_for_distribution_column('quota.accounts', 'hot-1') = s.shardid" | tr '|' ' ')
to_port=$((from_port == CITUS_PORT + 1 ? CITUS_PORT + 2 : CITUS_PORT + 1))
for hop in "$from_port $to_port" "$to_port $from_port"; do
    set -- $hop
    PGDATABASE=quota_audit q "CALL citus_cleanup_orphaned_resources()" >/dev/null
    PGDATABASE=quota_audit q "SELECT citus_move_shard_placement($shard, 'localhost', $1, 'localhost', $2, shard_transfer_mode => 'block_writes')" >/dev/null ||
        fail "citus_move_shard_placement failed during the audit"
    sleep 2
done
wait "$auditor" || { cat "$audit_log"; fail "the stress audit through the coordinator"; }
grep -q "^audit: all invariants hold" "$audit_log" || { cat "$audit_log"; fail "the stress audit through the coordinator"; }
echo "citus: the stress audit through the coordinator ok, shard of hot-1 moved there and back: $(head -1 "$audit_log")"
rm -f "$audit_log"

# ---------------------------------------------------------------- 5. isolation specs
# test/citus/specs through the coordinator, in a distributed database of
# their own.  Citus's own test of whether a session is blocked replaces
# PostgreSQL's: the waits are on the workers.
citus_database quota_iso
# A session that made a call before distribute() ran elsewhere: set_slots() is refused at once after it.
got=$(PGDATABASE=quota_iso psql -X -q -At -v VERBOSITY=sqlstate 2>&1 <<SQL
SELECT quota.set_account('early', 10);
SELECT granted FROM quota.charge_credit('early', 1);
\\! PGDATABASE=quota_iso psql -X -q -At -c "SELECT quota.distribute()" >/dev/null
SELECT quota.set_slots('early', 4);
SELECT count(*) FROM quota.slots;
SQL
)
case $got in *0A000*) ;; *) fail "set_slots() in a session older than distribute(): $got" ;; esac
PGDATABASE=quota_iso q "DELETE FROM quota.accounts WHERE team = 'early'"
PGDATABASE=quota_iso q "SELECT citus_internal.replace_isolation_tester_func()" >/dev/null
iso_out=$(mktemp -d /tmp/quota-citus-iso.XXXXXX)
chmod 777 "$iso_out"
specs=$(cd "$QUOTA_ROOT/test/citus/specs" && ls ./*.spec | sed 's|^\./||; s|\.spec$||')
# shellcheck disable=SC2086
if ! "$QUOTA_PG_BIN/../lib/pgxs/src/test/isolation/pg_isolation_regress" --use-existing --dbname=quota_iso \
        --host="$CITUS_DIR" --port="$CITUS_PORT" --user=postgres --bindir="$QUOTA_PG_BIN" \
        --inputdir="$QUOTA_ROOT/test/citus" --outputdir="$iso_out" $specs; then
    cat "$iso_out/regression.diffs" 2>/dev/null || true
    fail "isolation specs through the coordinator (output in $iso_out)"
fi
rm -rf "$iso_out"
echo "citus: isolation specs through the coordinator ok ($(echo $specs | wc -w): $(echo $specs))"

# ---------------------------------------------------------------- 6. distributed by hand
# A second database where only quota.accounts is distributed: every call refused, nothing changed.
citus_database quota_by_hand
export PGDATABASE=quota_by_hand
q "SELECT quota.set_account(t, 100) FROM unnest(ARRAY['a', 'b']) t" >/dev/null
q "SELECT quota.charge_credit('a', 2)" >/dev/null
q "SET client_min_messages = warning; SELECT create_distributed_table('quota.accounts', 'team')" >/dev/null
for call in "SELECT quota.charge_credit('a', 1)" "SELECT quota.reserve_credit('b', 1)" "SELECT quota.set_account('b', 5)"; do
    out=$(psql -X -q -At -c "$call" 2>&1 || true)
    case $out in
        *"quota's tables are distributed by hand"*) ;;
        *) fail "$call on a quota.accounts distributed by hand answered: $out" ;;
    esac
done
check "refused calls changed nothing" "SELECT string_agg(team || ':' || used || '/' || held, ' ' ORDER BY team) FROM quota.accounts" "a:2/0 b:0/0"
expect_code 55000 "SELECT quota.distribute()"
echo "citus: distributed by hand: every call refused (0A000), nothing changed, distribute() refused (55000)"

# ---------------------------------------------------------------- 7. the regress files on a distributed quota
# The project's own pg_regress files, unchanged, against their one-node
# expected output, on a distributed quota: a database of its own on the
# coordinator, a Citus cluster of one node that holds every shard (its
# reservation ids are the sequence with its team's bucket: the output must
# be one node's but for those ids, renamed one to one).
# Every call goes the Citus way: statements that name their team, the
# spending calls through their twins (run on this node: Citus sends no
# call to the node it is on).  Not run here: the files about slots and
# parents (not on Citus), DDL and the direct path (hardening,
# table_changes), by-hand window changes that Citus cannot plan (periods,
# history), privileges (security: reading quota.usage needs SELECT on the
# tables on Citus), and setup/inspection/bad_input (they check the
# extension's own install, and distribute() without Citus).
regress_files="accounts spending holds settings"
# regress_on DB OUTDIR: those files through the coordinator, in database DB
regress_on() {
    # shellcheck disable=SC2086
    (cd "$QUOTA_ROOT" && "$QUOTA_PG_BIN/../lib/pgxs/src/test/regress/pg_regress" --use-existing --dbname="$1" \
        --host="$CITUS_DIR" --port="$CITUS_PORT" --user=postgres --bindir="$QUOTA_PG_BIN" \
        --inputdir=. --outputdir="$2" $regress_files)
}
# same_but_ids DB OUTDIR WHERE: those files in DB, one node's expected output but for the reservation ids, which
# carry their node's group and their team's bucket on Citus (pg_regress reports those; same_but_ids.py decides)
same_but_ids() {
    chmod 777 "$2"
    regress_on "$1" "$2" >"$2/pg_regress.log" 2>&1 || true
    for f in $regress_files; do
        [ -f "$2/results/$f.out" ] || { cat "$2/pg_regress.log"; fail "the regress file $f $3: no output"; }
        /usr/bin/python3 "$QUOTA_ROOT/test/citus/same_but_ids.py" "$QUOTA_ROOT/expected/$f.out" "$2/results/$f.out" ||
            fail "the regress file $f $3 (output in $2)"
    done
}
psql -X -q -h "$CITUS_DIR" -p "$CITUS_PORT" -U postgres -d postgres -c "CREATE DATABASE quota_regress" >/dev/null
PGDATABASE=quota_regress psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION citus;
CREATE EXTENSION quota;
SELECT citus_set_coordinator_host('localhost', $CITUS_PORT);
SELECT citus_set_node_property('localhost', $CITUS_PORT, 'shouldhaveshards', true);
SELECT quota.distribute();
ALTER DATABASE quota_regress SET track_functions = 'all';
SQL
regress_out=$(mktemp -d /tmp/quota-citus-regress.XXXXXX)
same_but_ids quota_regress "$regress_out" "on a distributed quota"
# (hold_team_on_node: a reservation that no shard has, as the files' unknown and purged ones, is looked for.)
PGDATABASE=quota_regress check "they ran on a distributed quota, the spending calls through their twins" \
    "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'quota.accounts'::regclass; SELECT string_agg(funcname, ' ' ORDER BY funcname) FROM pg_stat_user_functions WHERE (funcname LIKE '%_on_shard' OR funcname LIKE '%_on_node') AND calls > 0" "1
charge_credit_on_shard commit_credit_on_node hold_team_on_node release_credit_on_node reserve_credit_on_shard"
rm -rf "$regress_out"
echo "citus: the regress files on a distributed quota ok ($regress_files: one node's expected output but for reservation ids)"

# ---------------------------------------------------------------- 7b. the same files through two workers
# The same files through the coordinator of the three-node cluster, where
# every shard is on a worker: each call runs on its team's worker and its
# holds take that worker's ids.  The output must be the one-node expected
# output but for those ids, renamed one to one (test/citus/same_but_ids.py).
citus_database quota_regress2
PGDATABASE=quota_regress2 q "SELECT quota.distribute()" >/dev/null
regress_out=$(mktemp -d /tmp/quota-citus-regress2.XXXXXX)
same_but_ids quota_regress2 "$regress_out" "through two workers"
# Every shard on a worker, and both workers made holds (a hold's id carries the group of the node that made it).
PGDATABASE=quota_regress2 check "they ran on the workers" \
    "SELECT count(*) FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) WHERE p.groupid = 0 AND s.logicalrelid = 'quota.accounts'::regclass; SELECT string_agg(DISTINCT (h.id >> 52)::text, ' ') FROM quota.holds h" "0
1 2"
rm -rf "$regress_out"
echo "citus: the regress files through two workers ok ($regress_files: one node's expected output but for reservation ids)"

echo "citus: ok (Citus $(q "SELECT extversion FROM pg_extension WHERE extname = 'citus'"))"
