#!/usr/bin/env bash
# CREATE EXTENSION quota refuses a schema "quota" that someone else owns or
# that holds objects already, and accepts an empty one of the installing
# role's or a superuser's (what pg_dump's output creates before CREATE
# EXTENSION; test/dump_restore.sh restores through it).  Needs
# PGHOST/PGPORT/PGUSER (a superuser) of a running cluster (test/run.sh).
set -euo pipefail
fail() { echo "schema_owner: FAIL: $*"; exit 1; }
psql_in() { psql -X -q -v ON_ERROR_STOP=1 -At -d "$1" -c "$2"; }
# sqlstate DB [ROLE] SQL: the SQLSTATE the statement fails with, or "ok"
sqlstate() {
    local out
    if out=$(psql -X -q -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -At -d "$1" -c "$2" 2>&1); then echo ok; else
        sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' <<<"$out" | head -1
    fi
}

db=quota_schema_owner
dropdb --if-exists "$db"
psql_in postgres "DROP ROLE IF EXISTS quota_squatter; CREATE ROLE quota_squatter LOGIN"
createdb "$db"
psql_in "$db" "GRANT CREATE ON DATABASE $db TO quota_squatter"

# A role with only CREATE ON DATABASE pre-creates the schema: refused, nothing installed.
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -U quota_squatter -c "CREATE SCHEMA quota"
[ "$(sqlstate "$db" "CREATE EXTENSION quota")" = 42501 ] || fail "installed into another role's schema"
[ "$(psql_in "$db" "SELECT count(*) FROM pg_extension WHERE extname = 'quota'")" = 0 ] || fail "extension left behind"
[ "$(psql_in "$db" "SELECT count(*) FROM pg_class WHERE relnamespace = 'quota'::regnamespace")" = 0 ] ||
    fail "objects left in the squatter's schema"
psql_in "$db" "DROP SCHEMA quota"

# The installing role's own schema, but not empty: refused.
psql_in "$db" "CREATE SCHEMA quota; CREATE TABLE quota.accounts (team text)"
[ "$(sqlstate "$db" "CREATE EXTENSION quota")" = 42P06 ] || fail "installed into a schema with objects"
psql_in "$db" "DROP SCHEMA quota CASCADE"

# Empty and owned by the installing role (what pg_dump's output does): accepted.
psql_in "$db" "CREATE SCHEMA quota"
[ "$(sqlstate "$db" "CREATE EXTENSION IF NOT EXISTS quota WITH SCHEMA quota")" = ok ] ||
    fail "refused the installer's own empty schema"
psql_in "$db" "DROP EXTENSION quota; DROP SCHEMA IF EXISTS quota"

# Empty and owned by another superuser: accepted.
psql_in "$db" "DROP ROLE IF EXISTS quota_admin; CREATE ROLE quota_admin SUPERUSER; CREATE SCHEMA quota AUTHORIZATION quota_admin"
[ "$(sqlstate "$db" "CREATE EXTENSION quota")" = ok ] || fail "refused a superuser's empty schema"

# Empty and ours, but with privileges granted to others: refused (they could plant objects in it).
psql_in "$db" "DROP EXTENSION quota; DROP SCHEMA IF EXISTS quota; CREATE SCHEMA quota; GRANT CREATE, USAGE ON SCHEMA quota TO PUBLIC"
[ "$(sqlstate "$db" "CREATE EXTENSION quota")" = 42501 ] || fail "installed into a schema others may create in"
psql_in "$db" "DROP SCHEMA quota; CREATE SCHEMA quota"
[ "$(sqlstate "$db" "CREATE EXTENSION quota")" = ok ] || fail "refused the installer's own empty schema"

# A session that used the extension keeps working after it is dropped and created again elsewhere.
out=$(psql -X -q -v ON_ERROR_STOP=1 -At -d "$db" 2>&1 <<SQL
SELECT quota.set_account('t', 10);
SELECT granted FROM quota.charge_credit('t', 1);
\! psql -X -q -d $db -c 'DROP EXTENSION quota' -c 'CREATE EXTENSION quota' -c "SELECT quota.set_account('t', 10)" >/dev/null
SELECT granted FROM quota.charge_credit('t', 1);
SELECT used FROM quota.usage WHERE team = 't';
SELECT quota.is_team_limited('t');
SQL
) || fail "a session across DROP and CREATE EXTENSION: $out"
[ "$out" = "$(printf '\nt\nt\n1\nf')" ] || fail "a session across DROP and CREATE EXTENSION: $out"

# No schema at all: CREATE EXTENSION makes its own, owned by the installer.
psql_in "$db" "DROP EXTENSION quota; DROP SCHEMA IF EXISTS quota"
[ "$(sqlstate "$db" "CREATE EXTENSION quota")" = ok ] || fail "a plain install"
[ "$(psql_in "$db" "SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'quota'")" = "$PGUSER" ] ||
    fail "schema not owned by the installer"

dropdb "$db"
psql_in postgres "DROP ROLE quota_squatter; DROP ROLE quota_admin"
echo "schema_owner: ok (another role's schema, a non-empty one and one with privileges granted to others refused; an empty own or superuser schema accepted; a session survives DROP and CREATE EXTENSION)"
