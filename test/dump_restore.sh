#!/usr/bin/env bash
# pg_dump keeps every account, hold and the hold id sequence; a restore
# continues where the dump left off.  Needs PGHOST/PGPORT/PGUSER of a
# running cluster with the extension installed (test/run.sh sets them).
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
psql_in() { psql -X -q -v ON_ERROR_STOP=1 -At -d "$1" -c "$2"; }
fail() { echo "dump_restore: FAIL: $*"; exit 1; }

dropdb --if-exists quota_dump_src; dropdb --if-exists quota_dump_dst
createdb quota_dump_src
psql -X -q -v ON_ERROR_STOP=1 -d quota_dump_src >/dev/null <<'SQL'
CREATE EXTENSION quota;
SELECT quota.set_account('acme', 100, period => '1 month', anchor => '2024-01-31 00:00+00');
SELECT quota.set_account('acme', 5, 'remix', unlimited => true);
SELECT quota.charge_credit('acme', 10);
SELECT quota.reserve_credit('acme', 7, idempotency_key => 'open-one');
SELECT quota.commit_credit((quota.reserve_credit('acme', 3)).reservation, 2);
SELECT quota.release_credit((quota.reserve_credit('acme', 1)).reservation);
SELECT quota.reserve_credit('acme', 4, 'remix', hold_for => NULL);
SELECT quota.set_account('hot', 50);
SELECT quota.set_slots('hot', 4);
SELECT quota.charge_credit('hot', 3);
SELECT quota.reserve_credit('hot', 2, hold_for => NULL, idempotency_key => 'slotted-one');
-- 1.2: alert settings, events and history.
SELECT quota.set_alerts('acme', '{50, 100}');
SELECT quota.set_account('old', 10, period => '1 day', anchor => '2024-01-01 00:00+00');
SELECT quota.set_alerts('old', '{20}');
SELECT quota.charge_credit('old', 3);
UPDATE quota.accounts SET window_start = window_start - interval '1 day', resets_at = resets_at - interval '1 day'
 WHERE team = 'old';
UPDATE quota.events SET window_start = window_start - interval '1 day', resets_at = resets_at - interval '1 day'
 WHERE team = 'old';
SELECT quota.charge_credit('old', 4);
-- 1.2: a chain (org > team > key), a cap, and a hold made through parents.
SELECT quota.set_account('org', 100);
SELECT quota.set_account('team', 50);
SELECT quota.set_account('key', 20);
SELECT quota.set_parent('team', 'org');
SELECT quota.set_parent('key', 'team');
SELECT quota.set_concurrency('key', 2);
SELECT quota.charge_credit('key', 5);
SELECT quota.reserve_credit('key', 3, hold_for => NULL, idempotency_key => 'chain-one');
SQL
state="SELECT string_agg(row(u.*)::text, E'\n' ORDER BY team, resource) FROM quota.usage u;"
holds="SELECT string_agg(row(h.*)::text, E'\n' ORDER BY id) FROM quota.holds h;"
slots="SELECT string_agg(row(s.*)::text, E'\n' ORDER BY team, resource, slot) FROM quota.slots s;"
before_usage=$(psql_in quota_dump_src "$state")
before_holds=$(psql_in quota_dump_src "$holds")
before_slots=$(psql_in quota_dump_src "$slots")
extra="SELECT (SELECT string_agg(row(e.*)::text, E'\n' ORDER BY id) FROM quota.events e) || E'\n' ||
              (SELECT string_agg(row(h.*)::text, E'\n' ORDER BY team, window_start) FROM quota.usage_history h) || E'\n' ||
              (SELECT string_agg(row(a.*)::text, E'\n' ORDER BY team) FROM quota.alert_settings a) || E'\n' ||
              (SELECT string_agg(row(l.*)::text, E'\n' ORDER BY team) FROM quota.links l);"
before_extra=$(psql_in quota_dump_src "$extra")
[ "$(psql_in quota_dump_src "SELECT count(*) FROM quota.events")" = 2 ] || fail "the source has not the two events expected"

pg_dump -Fc -f "$dir/db.dump" quota_dump_src
createdb quota_dump_dst
pg_restore --exit-on-error -d quota_dump_dst "$dir/db.dump"

[ "$(psql_in quota_dump_dst "$state")" = "$before_usage" ] || fail "accounts differ after restore"
[ "$(psql_in quota_dump_dst "$holds")" = "$before_holds" ] || fail "holds differ after restore"
[ "$(psql_in quota_dump_dst "$slots")" = "$before_slots" ] || fail "slots differ after restore"
[ "$(psql_in quota_dump_dst "$extra")" = "$before_extra" ] || fail "events, history, alert settings or links differ after restore"
# The restored thresholds apply, and events continue their ids and stay once per window.
[ "$(psql_in quota_dump_dst "SELECT granted FROM quota.charge_credit('old', 1)")" = t ] || fail "charge on 'old'"
[ "$(psql_in quota_dump_dst "SELECT count(*) FROM quota.events")" = 2 ] || fail "an event raised twice in one window"
[ "$(psql_in quota_dump_dst "SELECT granted FROM quota.charge_credit('acme', 40)")" = t ] || fail "charge on 'acme'"
[ "$(psql_in quota_dump_dst "SELECT string_agg(threshold::text, ',') FROM quota.events WHERE team = 'acme'")" = 50 ] ||
    fail "restored thresholds raise no event"
[ "$(psql_in quota_dump_dst "SELECT max(id) FROM quota.events")" = 3 ] || fail "event ids restarted"
[ "$(psql_in quota_dump_dst "SELECT count(*) FROM quota.holds WHERE state = 'open'")" = 6 ] || fail "open holds lost"
# A slotted account continues: its slots spend, its keyed hold answers and commits.
[ "$(psql_in quota_dump_dst "SELECT used || '/' || held FROM quota.charge_credit('hot', 1)")" = "4/2" ] ||
    fail "a charge on a restored slotted account"
slotted_id=$(psql_in quota_dump_dst "SELECT id FROM quota.holds WHERE idempotency_key = 'slotted-one'")
[ "$(psql_in quota_dump_dst "SELECT (quota.reserve_credit('hot', 2, idempotency_key => 'slotted-one')).reservation")" = "$slotted_id" ] ||
    fail "idempotency key of a slotted hold lost"
[ "$(psql_in quota_dump_dst "SELECT used || '/' || held FROM quota.commit_credit($slotted_id)")" = "6/0" ] ||
    fail "commit of a restored slotted hold"

# It continues: the open hold commits, its idempotency key still answers,
# and new reservations get fresh ids.
max_id=$(psql_in quota_dump_src "SELECT max(id) FROM quota.holds")
open_id=$(psql_in quota_dump_dst "SELECT id FROM quota.holds WHERE idempotency_key = 'open-one'")
[ "$(psql_in quota_dump_dst "SELECT (quota.reserve_credit('acme', 7, idempotency_key => 'open-one')).reservation")" = "$open_id" ] ||
    fail "idempotency key lost"
[ "$(psql_in quota_dump_dst "SELECT used || '/' || held FROM quota.commit_credit($open_id)")" = "59/0" ] ||
    fail "commit of a restored hold"
new_id=$(psql_in quota_dump_dst "SELECT (quota.reserve_credit('acme')).reservation")
[ "$new_id" -gt "$max_id" ] || fail "hold ids restarted ($new_id <= $max_id)"
# The chain continues: a hold made through parents settles on every account, spends reach the org, the cap applies.
chain_id=$(psql_in quota_dump_dst "SELECT id FROM quota.holds WHERE idempotency_key = 'chain-one'")
[ "$(psql_in quota_dump_dst "SELECT used || '/' || held FROM quota.commit_credit($chain_id, 2)")" = "7/0" ] ||
    fail "commit of a restored hold made through parents"
[ "$(psql_in quota_dump_dst "SELECT string_agg(team || ':' || used || '/' || held, ' ' ORDER BY team) FROM quota.usage WHERE team IN ('org', 'team', 'key')")" = "key:7/0 org:7/0 team:7/0" ] ||
    fail "a restored chain's accounts"
[ "$(psql_in quota_dump_dst "SELECT remaining FROM quota.charge_credit('team', 40)")" = 3 ] ||
    fail "a spend on a restored chain"
[ "$(psql_in quota_dump_dst "SELECT count(*) FILTER (WHERE granted) FROM (SELECT (quota.reserve_credit('key', 1, hold_for => NULL)).granted FROM generate_series(1, 3)) r")" = 2 ] ||
    fail "a restored concurrency cap"
# The privileges travel too.
[ "$(psql_in quota_dump_dst "SELECT has_function_privilege('public', 'quota.set_account(text,bigint,text,interval,timestamptz,boolean)', 'execute')")" = f ] ||
    fail "set_account became executable by PUBLIC"

dropdb quota_dump_src; dropdb quota_dump_dst
echo "dump_restore: ok (accounts, open and settled holds, slots, idempotency keys, id sequence, privileges, alert settings, events, history, parents, caps and holds made through parents)"
