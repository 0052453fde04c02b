#!/usr/bin/env bash
# Scheduling with pg_cron (Debian's postgresql-15-cron; README, "History,
# retention and alerts"): the three jobs the README shows run from pg_cron
# and do their work.  pg_cron must be in shared_preload_libraries, so this
# runs a cluster of its own (port PGPORT+2, under $QUOTA_CLUSTER when set),
# stopped and removed at the end.  pg_cron 1.4 schedules by the minute: the
# test waits for the next minute (up to ~70 s).
#   expire_holds   a hold past its hold_for is released (state 'expired');
#   purge_holds()  holds settled more than 7 days ago are deleted, newer
#                  settled ones and open ones stay;
#   purge_history  windows that ended before the instant are deleted (with
#                  their events), later ones stay.
set -euo pipefail
# shellcheck source=lib/cluster.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib/cluster.sh"
cd /

dir=
cleanup() {
    if [ -n "$dir" ] && [ -d "$dir" ]; then
        as_cluster_user pg_ctl -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$dir"
    fi
}
trap cleanup EXIT
trap "exit 1" INT TERM
fail() { echo "cron: FAIL: $*"; exit 1; }

[ -f /usr/share/postgresql/15/extension/pg_cron.control ] || fail "pg_cron is not installed (apt install postgresql-15-cron)"
dir=$(mktemp -d "${QUOTA_CLUSTER:-/tmp}/cron.XXXXXX")
chmod 755 "$dir"
[ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
port=$((PGPORT + 2))
as_cluster_user initdb -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
# Jobs run in background workers: no connection (the cluster listens on no TCP port).
as_cluster_user pg_ctl -D "$dir/data" -l "$dir/server.log" -w -o "-p $port -k $dir -c listen_addresses='' \
    -c shared_preload_libraries=pg_cron -c cron.database_name=quota_cron -c cron.use_background_workers=on" \
    start >/dev/null
export PGHOST=$dir PGPORT=$port PGUSER=postgres
q() { psql -X -q -v ON_ERROR_STOP=1 -At -d quota_cron -c "$1"; }

createdb quota_cron
psql -X -q -v ON_ERROR_STOP=1 -d quota_cron >/dev/null <<'SQL'
CREATE EXTENSION pg_cron;
CREATE EXTENSION quota;
SELECT quota.set_account('acme', 1000, period => '1 day', anchor => '2024-01-01 00:00+00');
SELECT quota.reserve_credit('acme', 5, idempotency_key => 'stale');
-- An open hold that stays, settled holds from 8 days ago (purged) and from now (kept).
SELECT quota.reserve_credit('acme', 2, hold_for => NULL, idempotency_key => 'open');
SELECT quota.commit_credit((quota.reserve_credit('acme', 1, idempotency_key => 'old-' || i)).reservation)
  FROM generate_series(1, 20) i;
SELECT quota.release_credit((quota.reserve_credit('acme', 1, idempotency_key => 'old-r')).reservation);
UPDATE quota.holds SET settled_at = now() - interval '8 days' WHERE idempotency_key LIKE 'old-%';
SELECT quota.commit_credit((quota.reserve_credit('acme', 1, idempotency_key => 'new')).reservation);
-- History: a window that ended 14 months ago (purged) and yesterday's (kept).
INSERT INTO quota.history (team, resource, window_start, part, window_end, credit_limit, unlimited, used)
VALUES ('acme', 'credits', date_trunc('day', now()) - interval '14 months 1 day', -1,
        date_trunc('day', now()) - interval '14 months', 1000, false, 40),
       ('acme', 'credits', date_trunc('day', now()) - interval '1 day', -1, date_trunc('day', now()), 1000, false, 30);
-- The first hold is past its hold_for now (its expiry moved back), and the account is told so.
UPDATE quota.holds SET expires_at = now() - interval '1 minute' WHERE idempotency_key = 'stale';
UPDATE quota.accounts SET next_expiry = now() - interval '1 minute' WHERE team = 'acme';
-- The README's three jobs, every minute here.
SELECT cron.schedule('quota-expire-holds', '* * * * *', 'SELECT quota.expire_holds()');
SELECT cron.schedule('quota-purge-holds', '* * * * *', 'SELECT quota.purge_holds()');
SELECT cron.schedule('quota-purge-history', '* * * * *', $$SELECT quota.purge_history(now() - interval '13 months')$$);
SQL

[ "$(q "SELECT state FROM quota.holds WHERE idempotency_key = 'stale'")" = open ] || fail "the stale hold is not open before the jobs"
echo "cron: three jobs scheduled; waiting for pg_cron to run them (it runs by the minute)"
for _ in $(seq 1 90); do
    done_jobs=$(q "SELECT count(DISTINCT j.jobname) FROM cron.job_run_details d JOIN cron.job j USING (jobid)
                    WHERE d.status = 'succeeded'")
    [ "$done_jobs" = 3 ] && break
    failed=$(q "SELECT string_agg(j.jobname || ': ' || d.return_message, '; ') FROM cron.job_run_details d
                 JOIN cron.job j USING (jobid) WHERE d.status = 'failed'")
    [ -z "$failed" ] || fail "a job failed: $failed"
    sleep 1
done
[ "$done_jobs" = 3 ] || fail "pg_cron ran $done_jobs of the 3 jobs in 90 s: $(tail -5 "$dir/server.log")"
q "SELECT j.jobname || ': ' || d.return_message FROM cron.job_run_details d JOIN cron.job j USING (jobid)
    WHERE d.status = 'succeeded' ORDER BY j.jobname, d.runid LIMIT 3" | sed 's/^/cron: ran /'

[ "$(q "SELECT state FROM quota.holds WHERE idempotency_key = 'stale'")" = expired ] || fail "expire_holds did not expire the stale hold"
[ "$(q "SELECT count(*) FROM quota.holds WHERE idempotency_key LIKE 'old-%'")" = 0 ] || fail "purge_holds left holds settled 8 days ago"
[ "$(q "SELECT string_agg(idempotency_key || ':' || state, ',' ORDER BY id) FROM quota.holds")" = "stale:expired,open:open,new:committed" ] ||
    fail "purge_holds deleted more than it should: $(q "SELECT string_agg(idempotency_key || ':' || state, ',' ORDER BY id) FROM quota.holds")"
[ "$(q "SELECT string_agg(used::text, ',') FROM quota.usage_history")" = 30 ] ||
    fail "purge_history: $(q "SELECT string_agg(used::text, ',') FROM quota.usage_history")"
[ "$(q "SELECT used || '/' || held FROM quota.usage")" = "21/2" ] || fail "usage changed: $(q "SELECT used || '/' || held FROM quota.usage")"
echo "cron: ok (pg_cron ran expire_holds, purge_holds and purge_history; each did exactly its work)"
