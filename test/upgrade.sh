#!/usr/bin/env bash
# ALTER EXTENSION quota UPDATE, from every version PostgreSQL can install
# (pg_available_extension_versions: full scripts and upgrade chains) to the
# default one.  For each old version: install it, fill it through its own
# functions (accounts, open/committed/released holds, idempotency keys, a
# hold that never expires), update, then check that
#   - the version is the default one and the update path exists;
#   - every account (quota.usage) and hold row is what it was, and the hold
#     id sequence continues;
#   - open holds still commit, and idempotency keys still answer;
#   - a user's view on quota.usage survives the update;
#   - everything the extension owns equals a fresh install of the default
#     version (test/upgrade/schema.sql: functions, tables, columns, indexes,
#     views, privileges, comments, pg_dump membership).
# Needs PGHOST/PGPORT/PGUSER of a running cluster (test/run.sh sets them).
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
psql_in() { psql -X -q -v ON_ERROR_STOP=1 -At -d "$1" -c "$2"; }
fail() { echo "upgrade: FAIL ($from): $*"; exit 1; }

current=$(psql_in postgres "SELECT default_version FROM pg_available_extensions WHERE name = 'quota'")
mapfile -t versions < <(psql_in postgres "SELECT version FROM pg_available_extension_versions WHERE name = 'quota' ORDER BY string_to_array(version, '.')::int[]")
[ "${#versions[@]}" -gt 0 ] || { echo "upgrade: FAIL: quota is not installed"; exit 1; }

# What the extension owns, from the catalogs (pg_dump leaves extension members out).
schema() {
    psql -X -q -v ON_ERROR_STOP=1 -At -d "$1" -f "$(dirname "${BASH_SOURCE[0]}")/upgrade/schema.sql"
}
dropdb --if-exists quota_upgrade_fresh
createdb quota_upgrade_fresh
psql_in quota_upgrade_fresh "CREATE EXTENSION quota"
schema quota_upgrade_fresh >"$dir/fresh.sql"

usage="SELECT string_agg(row(u.*)::text, E'\n' ORDER BY team, resource) FROM quota.usage u WHERE team NOT LIKE 'session%'"
holds="SELECT string_agg(row(h.id, h.team, h.resource, h.amount, h.state, h.idempotency_key, h.created_at, h.expires_at, h.settled_at, h.committed)::text, E'\n' ORDER BY id) FROM quota.holds h"

for from in "${versions[@]}"; do
    db=quota_upgrade_from_${from//./_}
    dropdb --if-exists "$db"
    createdb "$db"
    psql -X -q -v ON_ERROR_STOP=1 -d "$db" >/dev/null <<SQL
CREATE EXTENSION quota VERSION '$from';
SELECT quota.set_account('acme', 100, period => '1 month', anchor => '2024-01-31 00:00+00');
SELECT quota.set_account('acme', 5, 'remix', unlimited => true);
SELECT quota.set_account('globex', 3, 'trial');
SELECT quota.set_account('session', 10);
SELECT quota.charge_credit('acme', 10);
SELECT quota.charge_credit('globex', 3, 'trial');
SELECT quota.reserve_credit('acme', 7, idempotency_key => 'open-one');
SELECT quota.commit_credit((quota.reserve_credit('acme', 3)).reservation, 2);
SELECT quota.release_credit((quota.reserve_credit('acme', 1)).reservation);
SELECT quota.reserve_credit('acme', 4, 'remix', hold_for => NULL);
-- A view of the user's own on quota.usage: the update must not need to drop it.
CREATE VIEW public.team_usage AS SELECT team, resource, used FROM quota.usage;
SQL
    before_usage=$(psql_in "$db" "$usage")
    before_holds=$(psql_in "$db" "$holds")
    max_id=$(psql_in "$db" "SELECT max(id) FROM quota.holds")

    [ "$from" = "$current" ] || [ -n "$(psql_in "$db" "SELECT path FROM pg_extension_update_paths('quota') WHERE source = '$from' AND target = '$current'")" ] ||
        fail "no update path to $current"
    # One session across the update: its prepared statements were made for
    # the old schema, and must be remade for the new one.
    session=$(psql -X -q -v ON_ERROR_STOP=1 -At -d "$db" 2>&1 <<'SQL'
SET client_min_messages = warning;
SELECT granted FROM quota.charge_credit('session', 1);
ALTER EXTENSION quota UPDATE;
SELECT granted FROM quota.charge_credit('session', 1);
SELECT granted FROM quota.reserve_credit('acme', 1, idempotency_key => 'open-one');
-- 1.2's parents apply in a session that used quota before the update (its cache knew no quota.links).
SELECT 1 FROM quota.set_account('session-org', 1);
SELECT 1 FROM quota.set_parent('session', 'session-org');
SELECT granted FROM quota.charge_credit('session', 5);
SELECT 1 FROM quota.set_parent('session', NULL);
SQL
) || fail "a session across the update: $session"
    [ "$session" = "$(printf 't\nt\nt\n1\n1\nf\n1')" ] || fail "a session across the update: $session"
    [ "$(psql_in "$db" "SELECT extversion FROM pg_extension WHERE extname = 'quota'")" = "$current" ] || fail "still not $current"

    [ "$(psql_in "$db" "$usage")" = "$before_usage" ] || fail "accounts changed"
    [ "$(psql_in "$db" "SELECT used FROM public.team_usage WHERE team = 'globex'")" = 3 ] || fail "the user's view"
    [ "$(psql_in "$db" "$holds")" = "$before_holds" ] || fail "holds changed"
    open_id=$(psql_in "$db" "SELECT id FROM quota.holds WHERE idempotency_key = 'open-one'")
    [ "$(psql_in "$db" "SELECT (quota.reserve_credit('acme', 7, idempotency_key => 'open-one')).reservation")" = "$open_id" ] ||
        fail "idempotency key lost"
    [ "$(psql_in "$db" "SELECT used || '/' || held FROM quota.commit_credit($open_id)")" = "19/0" ] || fail "commit of an old hold"
    [ "$(psql_in "$db" "SELECT granted FROM quota.charge_credit('globex', 1, 'trial')")" = f ] || fail "a full budget granted"
    new_id=$(psql_in "$db" "SELECT (quota.reserve_credit('acme')).reservation")
    [ "$new_id" -gt "$max_id" ] || fail "hold ids restarted ($new_id <= $max_id)"
    # What the new version brought works on the old data: slots for an upgraded account.
    psql_in "$db" "SELECT quota.set_slots('acme', 4)" >/dev/null
    [ "$(psql_in "$db" "SELECT count(*) FROM quota.slots WHERE team = 'acme'")" = 4 ] ||
        fail "set_slots on an upgraded account"
    [ "$(psql_in "$db" "SELECT used || '/' || held FROM quota.charge_credit('acme', 5)")" = "24/1" ] || fail "a slotted charge"
    [ "$(psql_in "$db" "SELECT used || '/' || held || '/' || remaining FROM quota.usage WHERE team = 'acme' AND resource = 'credits'")" = "24/1/75" ] ||
        fail "quota.usage of a slotted account"

    schema "$db" >"$dir/upgraded.sql"
    diff -u "$dir/fresh.sql" "$dir/upgraded.sql" >"$dir/schema.diff" || { cat "$dir/schema.diff"; fail "schema differs from a fresh $current"; }
    dropdb "$db"
    echo "upgrade: ok from $from to $current (accounts, holds, keys, id sequence, schema equal to a fresh install)"
done
dropdb quota_upgrade_fresh
