#!/usr/bin/env bash
# The month-end billing query over 100,000 accounts (README, "History,
# retention and alerts"): its plan and time.  Needs PGHOST/PGPORT/PGUSER of
# a cluster with quota installed (bench/run.sh's, or test/run.sh's).
#
# 100,000 monthly accounts last touched in October: half of them spent again
# in November (so their October window was rolled over into quota.history),
# half not (October is still in quota.accounts; quota.usage_history adds it).
#
#   bench/history_report.sh [accounts]
set -euo pipefail
n=${1:-100000}
db=quota_history_bench
dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" <<SQL
CREATE EXTENSION quota;
SELECT count(quota.set_account('team-' || i, 1000, period => '1 month', anchor => '2026-01-01 00:00+00'))
  FROM generate_series(1, $n) i;
SELECT count(quota.charge_credit('team-' || i, 1 + i % 50)) FROM generate_series(1, $n) i;
-- As if all that had happened in October.
UPDATE quota.accounts SET window_start = window_start - interval '1 month',
                          resets_at = resets_at - interval '1 month';
-- Half of them spend again in November: their October closes into quota.history.
SELECT count(quota.charge_credit('team-' || i, 1)) FROM generate_series(1, $n, 2) i;
VACUUM ANALYZE quota.accounts;
VACUUM ANALYZE quota.history;
SQL
month_start=$(psql -X -At -d "$db" -c "SELECT date_trunc('month', now() - interval '1 month')::date")
echo "quota.history: $(psql -X -At -d "$db" -c "SELECT count(*) FROM quota.history") stored windows; accounts: $n"
query="SELECT team, used, credit_limit FROM quota.usage_history
        WHERE window_start >= '$month_start' AND window_end <= date_trunc('month', now())"
echo "$query;"
psql -X -d "$db" -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) $query"
for i in 1 2 3; do
    psql -X -At -d "$db" -c '\timing on' -c "SELECT count(*), sum(used) FROM ($query) r" | tail -1
done
dropdb "$db"
