-- Hold expiry: released lazily by the calls that touch the account, by
-- quota.expire_holds(), and reported as released by every read.
-- (Calls that must meet a 10 ms hold unexpired share one transaction, and so one now(): a loaded machine
-- may take more than 10 ms between two statements.)
SELECT quota.set_account('exp', 10);
BEGIN;
SELECT granted, held FROM quota.reserve_credit('exp', 4, hold_for => '10 milliseconds');
SELECT reservation AS long_hold FROM quota.reserve_credit('exp', 1, hold_for => '1 hour') \gset
SELECT reservation AS forever FROM quota.reserve_credit('exp', 2, hold_for => NULL) \gset
COMMIT;
SELECT pg_sleep(0.05);
-- Readers already see the expired hold's credits returned, before any write.
SELECT used, held, remaining FROM quota.usage WHERE team = 'exp';
SELECT held FROM quota.accounts WHERE team = 'exp';
-- The next call on the account releases it for real.
SELECT granted, used, held, remaining FROM quota.charge_credit('exp', 1);
SELECT amount, state, expires_at IS NULL AS never_expires FROM quota.holds WHERE team = 'exp' ORDER BY id;
SELECT held FROM quota.accounts WHERE team = 'exp';

-- is_team_limited counts expired holds as released, too.
SELECT quota.set_account('exp2', 5);
BEGIN;
SELECT granted FROM quota.reserve_credit('exp2', 5, hold_for => '10 milliseconds');
SELECT quota.is_team_limited('exp2');
COMMIT;
SELECT pg_sleep(0.05);
SELECT quota.is_team_limited('exp2');

-- quota.expire_holds() releases every expired hold and says how many.
SELECT quota.set_account('exp3', 10);
SELECT quota.set_account('exp4', 10);
BEGIN;
SELECT granted FROM quota.reserve_credit('exp3', 1, hold_for => '10 milliseconds');
SELECT granted FROM quota.reserve_credit('exp3', 2, hold_for => '10 milliseconds');
SELECT reservation AS late FROM quota.reserve_credit('exp4', 3, hold_for => '10 milliseconds') \gset
SELECT reservation AS released_late FROM quota.reserve_credit('exp4', 1, hold_for => '10 milliseconds') \gset
COMMIT;
SELECT pg_sleep(0.05);
SELECT quota.expire_holds();
SELECT quota.expire_holds();
SELECT team, used, held FROM quota.accounts WHERE team IN ('exp2', 'exp3', 'exp4') ORDER BY team;
SELECT team, amount, state FROM quota.holds WHERE team IN ('exp2', 'exp3', 'exp4') ORDER BY team, id;

-- Committing a hold that already expired still records the usage.
SELECT granted, used, held, remaining FROM quota.commit_credit(:late);
SELECT state, committed FROM quota.holds WHERE id = :late;
-- Releasing an expired hold answers false.
SELECT quota.release_credit(:released_late);

-- A hold that expired while nobody looked: commit releases it and records the usage in one go.
SELECT quota.set_account('exp5', 10);
SELECT reservation AS r FROM quota.reserve_credit('exp5', 6, hold_for => '10 milliseconds') \gset
SELECT pg_sleep(0.05);
SELECT granted, used, held, remaining FROM quota.commit_credit(:r, 5);
SELECT state, committed FROM quota.holds WHERE id = :r;

-- The hold that never expires and the hour-long one are untouched by all of this.
SELECT state FROM quota.holds WHERE id IN (:long_hold, :forever) ORDER BY id;
SELECT quota.release_credit(:long_hold), quota.release_credit(:forever);
SELECT used, held FROM quota.usage WHERE team = 'exp';

-- quota.expire_holds() is for administrators.
SELECT has_function_privilege('public', 'quota.expire_holds()', 'execute');
