-- What an operator sees when inspecting quota in psql.  README.md ("Inspecting
-- it in psql") shows this output verbatim; test/readme_output.sh checks that
-- every output block there is still found in expected/inspection.out.
-- A fresh install, so reservation numbers start at 1.
DROP EXTENSION quota;
CREATE EXTENSION quota;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';

-- Trial credits that never reset (period NULL), a monthly plan, an unlimited one.
SELECT quota.set_account('acme', 100, 'trial', anchor => '2026-11-01 00:00+00');
SELECT quota.set_account('globex', 5, 'trial', anchor => '2026-11-01 00:00+00');
SELECT quota.set_account('initech', 1000, period => '1 month');
SELECT quota.set_account('umbrella', 0, unlimited => true);
SELECT granted FROM quota.charge_credit('acme', 100, 'trial');
SELECT granted FROM quota.reserve_credit('globex', 3, 'trial', hold_for => '15 minutes');
SELECT granted FROM quota.reserve_credit('globex', 2, 'trial', hold_for => '1 microsecond');
SELECT granted FROM quota.reserve_credit('initech', 10, hold_for => NULL, idempotency_key => 'job-42');
SELECT granted FROM quota.charge_credit('umbrella', 5000);
SELECT pg_sleep(0.01);

-- README: the extension and everything it owns.
\dx+ quota

-- README: who is limited right now.
SELECT * FROM quota.usage WHERE limited;

-- README: open holds, and which of them are past their time.
SELECT id AS reservation, team, resource, amount, idempotency_key,
       expires_at - created_at AS hold_for, expires_at <= now() AS expired
  FROM quota.holds
 WHERE state = 'open'
 ORDER BY id;

-- README: an expired hold no longer counts in quota.usage (held), though its row is
-- still open until expire_holds() or the account's next call releases it.
SELECT team, resource, used, held, remaining, limited FROM quota.usage WHERE team = 'globex';
SELECT quota.expire_holds();
SELECT id AS reservation, team, state, settled_at IS NOT NULL AS settled FROM quota.holds ORDER BY id;
