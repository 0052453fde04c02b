#!/usr/bin/env bash
# quota and Citus (issue 13, first step): tables that Citus manages are
# refused, never written with statements that would leave one team's rows.
# (Without the guard, an UPDATE by ctid on a distributed quota.accounts goes
# to every shard and rewrites other teams' rows.)  Starts a local Citus
# cluster of its own (test/lib/citus.sh): uses an installed Citus, builds
# ../shared/deps/citus-13.0.5.tar.gz when there is none, and skips with a
# message when neither is possible.
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
state() { q "SELECT string_agg(team || ':' || used || '/' || held, ' ' ORDER BY team) FROM quota.usage"; }

q "SELECT quota.set_account(t, 100) FROM unnest(ARRAY['a', 'b', 'c', 'd']) t" >/dev/null
q "SELECT quota.charge_credit(t, 2) FROM unnest(ARRAY['a', 'b', 'c', 'd']) t" >/dev/null
before=$(state)
[ "$before" = "a:2/0 b:2/0 c:2/0 d:2/0" ] || fail "set-up: $before"

# Distributed by hand: every call is refused with 0A000 and changes nothing.
q "SET client_min_messages = warning; SELECT create_distributed_table('quota.accounts', 'team')" >/dev/null
for call in "SELECT quota.charge_credit('a', 1)" "SELECT quota.reserve_credit('b', 1)" \
            "SELECT quota.is_team_limited('c')" "SELECT quota.set_account('d', 5)"; do
    out=$(psql -X -q -At -c "$call" 2>&1 || true)
    case $out in
        *"quota's tables are distributed by Citus"*) ;;
        *) fail "$call on a distributed quota.accounts answered: $out" ;;
    esac
done
after=$(q "SELECT string_agg(team || ':' || used || '/' || held, ' ' ORDER BY team) FROM quota.accounts")
[ "$after" = "$before" ] || fail "a refused call changed the accounts: $after"

echo "citus: ok (Citus $(q "SELECT extversion FROM pg_extension WHERE extname = 'citus'"): calls on quota tables that Citus manages are refused (0A000) and change nothing)"
