-- reserve → commit / release, charge, and their idempotent retries.
SELECT quota.set_account('chat', 10);

-- A denial changes nothing.
SELECT granted, used, held, remaining FROM quota.charge_credit('chat', 8);
CREATE TEMP TABLE before AS SELECT * FROM quota.usage WHERE team = 'chat';
SELECT * FROM quota.charge_credit('chat', 3);
SELECT * FROM quota.reserve_credit('chat', 3);
SELECT count(*) AS holds FROM quota.holds WHERE team = 'chat';
SELECT (SELECT row(u.*)::text FROM quota.usage u WHERE team = 'chat') = (SELECT row(b.*)::text FROM before b) AS unchanged;

-- The last credits are granted exactly: used + held + amount <= credit_limit.
SELECT granted, reservation, used, held, remaining FROM quota.reserve_credit('chat', 2);
SELECT granted, used, held, remaining FROM quota.reserve_credit('chat', 1);
SELECT quota.is_team_limited('chat');
SELECT max(id) AS r0 FROM quota.holds WHERE team = 'chat' \gset

-- Commit smaller than the hold: the rest returns to the budget.
SELECT granted, reservation, used, held, remaining FROM quota.commit_credit(:r0, 1);
SELECT quota.is_team_limited('chat');
-- Committing again changes nothing and still reports granted.
SELECT granted, reservation, used, held, remaining FROM quota.commit_credit(:r0, 1);
SELECT granted, used, held FROM quota.commit_credit(:r0);
-- Releasing a committed reservation is refused.
SELECT quota.release_credit(:r0);

-- Commit of zero, and commit with the default (the hold amount).
SELECT quota.set_account('chat2', 10);
SELECT reservation AS r1 FROM quota.reserve_credit('chat2', 4) \gset
SELECT reservation AS r2 FROM quota.reserve_credit('chat2', 3) \gset
SELECT used, held, remaining FROM quota.usage WHERE team = 'chat2';
SELECT granted, used, held, remaining FROM quota.commit_credit(:r1, 0);
SELECT granted, used, held, remaining FROM quota.commit_credit(:r2);
SELECT id, amount, state, committed, settled_at IS NOT NULL AS settled FROM quota.holds WHERE id IN (:r1, :r2) ORDER BY id;

-- Commit larger than the hold: actual consumption is recorded past the limit.
SELECT reservation AS r3 FROM quota.reserve_credit('chat2', 2) \gset
SELECT granted, used, held, credit_limit, remaining FROM quota.commit_credit(:r3, 50);
SELECT quota.is_team_limited('chat2');

-- Release: true once, then false; committing a released hold is refused.
SELECT quota.set_account('chat3', 5);
SELECT reservation AS r4 FROM quota.reserve_credit('chat3', 5) \gset
SELECT quota.release_credit(:r4);
SELECT quota.release_credit(:r4);
SELECT used, held, remaining FROM quota.usage WHERE team = 'chat3';
SELECT * FROM quota.commit_credit(:r4);

-- Unknown reservations.
SELECT * FROM quota.commit_credit(999999);
SELECT quota.release_credit(-1);

-- charge_credit with allow_overdraft records usage that already happened.
SELECT granted, used, held, remaining FROM quota.charge_credit('chat3', 4);
SELECT granted, used, held, remaining FROM quota.charge_credit('chat3', 4);
SELECT granted, used, held, credit_limit, remaining FROM quota.charge_credit('chat3', 4, allow_overdraft => true);
SELECT quota.is_team_limited('chat3');

-- Idempotency keys: a retry returns the first reservation and changes nothing.
SELECT quota.set_account('idem', 10);
SELECT granted, reservation AS k1, used, held FROM quota.reserve_credit('idem', 3, idempotency_key => 'req-1') \gset
SELECT :'granted', :k1 > 0 AS has_id;
SELECT granted, reservation = :k1 AS same, used, held FROM quota.reserve_credit('idem', 3, idempotency_key => 'req-1');
-- even with a different amount or hold_for (the first call's terms stand)
SELECT granted, reservation = :k1 AS same, used, held FROM quota.reserve_credit('idem', 9, hold_for => NULL, idempotency_key => 'req-1');
SELECT count(*) FROM quota.holds WHERE team = 'idem';
-- a key is per (team, resource)
SELECT quota.set_account('idem', 10, 'other');
SELECT granted, reservation = :k1 AS same, used, held FROM quota.reserve_credit('idem', 3, 'other', idempotency_key => 'req-1');
-- after the hold is settled, a retry still answers with the same reservation
SELECT granted, used, held FROM quota.commit_credit(:k1);
SELECT granted, reservation = :k1 AS same, used, held FROM quota.reserve_credit('idem', 3, idempotency_key => 'req-1');
-- a denied call leaves no key behind: the retry is a fresh attempt
SELECT granted, reservation FROM quota.reserve_credit('idem', 8, idempotency_key => 'req-2');
SELECT granted, reservation IS NOT NULL AS has_id, used, held FROM quota.reserve_credit('idem', 7, idempotency_key => 'req-2');

-- Transactional: a rolled-back call leaves no trace.
SELECT quota.set_account('tx', 10);
BEGIN;
SELECT granted, used FROM quota.charge_credit('tx', 4);
SELECT granted, held FROM quota.reserve_credit('tx', 2, idempotency_key => 'tx-key');
ROLLBACK;
SELECT used, held FROM quota.usage WHERE team = 'tx';
SELECT count(*) FROM quota.holds WHERE team = 'tx';
-- ... and so does one undone by a savepoint, while the rest of the transaction stands.
BEGIN;
SELECT granted, used FROM quota.charge_credit('tx', 1);
SAVEPOINT s;
SELECT granted, used FROM quota.charge_credit('tx', 2);
ROLLBACK TO SAVEPOINT s;
SELECT granted, used FROM quota.charge_credit('tx', 3);
COMMIT;
SELECT used, held FROM quota.usage WHERE team = 'tx';
-- An error inside a PL/pgSQL exception block is caught there; the budget is unchanged.
DO $$
BEGIN
    PERFORM quota.charge_credit('tx', 1);
    PERFORM quota.commit_credit(-42);
EXCEPTION WHEN no_data_found THEN
    RAISE NOTICE 'caught: %', SQLERRM;
END $$;
SELECT used, held FROM quota.usage WHERE team = 'tx';
