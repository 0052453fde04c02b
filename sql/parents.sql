-- 1.2: parent budgets (org > team > user) and concurrency caps (README,
-- "Parent budgets and concurrency caps").  Single-session behaviour; the
-- races are in test/specs/parent_*.spec and cap_last_slot.spec, and the
-- stress audit spends on a three-level tree with caps.
SET TimeZone = 'UTC';
CREATE FUNCTION ptry(statement text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    detail text;
    hint text;
BEGIN
    EXECUTE statement;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'reservation \d+', 'reservation N', 'g')
        || CASE WHEN detail <> '' THEN ' | DETAIL: ' || detail ELSE '' END
        || CASE WHEN hint <> '' THEN ' | HINT: ' || regexp_replace(hint, 'reservation \d+', 'reservation N', 'g') ELSE '' END;
END $$;
CREATE FUNCTION tree_state() RETURNS TABLE (team text, used bigint, held bigint, remaining bigint, limited boolean)
LANGUAGE sql AS $$
    SELECT u.team, u.used, u.held, u.remaining, u.limited FROM quota.usage u
     WHERE u.team LIKE 'p-%' ORDER BY u.team
$$;

-- A chain: org (100) > team (50) > user (30).
SELECT quota.set_account('p-org', 100);
SELECT quota.set_account('p-team', 50);
SELECT quota.set_account('p-user', 30);
SELECT quota.set_parent('p-team', 'p-org');
SELECT quota.set_parent('p-user', 'p-team');
SELECT team, parent, max_open_holds FROM quota.links WHERE team LIKE 'p-%' ORDER BY team;

-- A charge applies to the account and every ancestor; the reply is the
-- named account's, with the least remaining over the chain.
SELECT * FROM quota.charge_credit('p-user', 10);
SELECT * FROM tree_state();
-- Spending on the team directly counts in the org too, not in the user.
SELECT granted, used, remaining FROM quota.charge_credit('p-team', 30);
SELECT * FROM tree_state();
-- The team has 10 left: a user charge of 11 is denied by it, and changes
-- nothing anywhere (all or nothing); the user's own remaining would be 20.
SELECT * FROM quota.charge_credit('p-user', 11);
SELECT * FROM tree_state();
-- is_team_limited is true iff an account of the chain is limited.
SELECT quota.is_team_limited('p-user') AS user_limited, quota.is_team_limited('p-org') AS org_limited;
SELECT granted, remaining FROM quota.charge_credit('p-user', 10);
SELECT quota.is_team_limited('p-user') AS user_limited, quota.is_team_limited('p-team') AS team_limited,
       quota.is_team_limited('p-org') AS org_limited;
-- An overdraft is applied on every account of the chain.
SELECT granted, used, remaining FROM quota.charge_credit('p-user', 5, allow_overdraft => true);
SELECT * FROM tree_state();

-- Holds hold on every account of the chain; the reservation is the child's.
SELECT quota.set_account('p-org', 1000);
SELECT quota.set_account('p-team', 500);
SELECT quota.set_account('p-user', 300);
SELECT reservation AS r1, granted, held, remaining FROM quota.reserve_credit('p-user', 20) \gset
SELECT :r1 IS NOT NULL AS got_one, :'granted', :'held';
SELECT h.team, h.amount, h.state, h.origin = :r1 AS of_r1 FROM quota.holds h
 WHERE h.id = :r1 OR h.origin = :r1 ORDER BY h.id;
SELECT * FROM tree_state();
-- The ancestors' parts are settled only through the reservation.
SELECT id AS part FROM quota.holds WHERE origin = :r1 AND id <> :r1 ORDER BY id LIMIT 1 \gset
SELECT ptry(format('SELECT quota.commit_credit(%s)', :part));
SELECT ptry(format('SELECT quota.release_credit(%s)', :part));
-- Commit larger than the hold: recorded on every account, past the limit if need be.
SELECT granted, used, held FROM quota.commit_credit(:r1, 25);
SELECT h.team, h.state, h.committed FROM quota.holds h WHERE h.id = :r1 OR h.origin = :r1 ORDER BY h.id;
SELECT * FROM tree_state();
-- Committing again changes nothing.
SELECT granted, used, held FROM quota.commit_credit(:r1, 25);
SELECT * FROM tree_state();
-- Release returns the credits on every account; a second release is false.
SELECT reservation AS r2 FROM quota.reserve_credit('p-user', 7) \gset
SELECT * FROM tree_state();
SELECT quota.release_credit(:r2) AS released, quota.release_credit(:r2) AS again;
SELECT * FROM tree_state();
SELECT ptry(format('SELECT quota.commit_credit(%s)', :r2));
-- Idempotent reserves: a retry returns the first reservation and holds nothing more on the chain.
SELECT reservation AS k1 FROM quota.reserve_credit('p-user', 3, idempotency_key => 'chain-key') \gset
SELECT reservation = :k1 AS same, held FROM quota.reserve_credit('p-user', 3, idempotency_key => 'chain-key');
SELECT * FROM tree_state();
SELECT quota.release_credit(:k1);

-- A reserve the org denies: nothing held anywhere, no hold rows.
SELECT quota.set_account('p-org', 0);
SELECT count(*) AS holds_before FROM quota.holds \gset
SELECT granted, reservation, used, held, remaining FROM quota.reserve_credit('p-user', 1);
SELECT count(*) = :holds_before AS no_new_holds FROM quota.holds;
SELECT * FROM tree_state();

-- Unlimited ancestors always grant, and are metered.
SELECT quota.set_account('p-org', 0, unlimited => true);
SELECT granted, credit_limit, remaining FROM quota.charge_credit('p-user', 1);
SELECT team, used, credit_limit, remaining, unlimited FROM quota.usage WHERE team = 'p-org';
-- An unlimited child under a limited parent: remaining is the parent's.
SELECT quota.set_account('p-kid', 0, unlimited => true);
SELECT quota.set_parent('p-kid', 'p-team');
SELECT granted, credit_limit, remaining FROM quota.charge_credit('p-kid', 2);

-- Re-parenting with a hold open: the hold settles on the chain it was made on.
SELECT quota.set_account('p-org2', 100);
SELECT reservation AS r3 FROM quota.reserve_credit('p-user', 4) \gset
SELECT quota.set_parent('p-team', 'p-org2');
SELECT used, held FROM quota.charge_credit('p-user', 1);
SELECT team, used, held FROM quota.usage WHERE team IN ('p-org', 'p-org2') ORDER BY team;
SELECT granted FROM quota.commit_credit(:r3);
SELECT team, used, held FROM quota.usage WHERE team IN ('p-org', 'p-org2') ORDER BY team;
-- Detaching: the account spends on its own again.
SELECT quota.set_parent('p-user', NULL);
SELECT remaining FROM quota.charge_credit('p-user', 1);
SELECT team, used FROM quota.usage WHERE team IN ('p-user', 'p-team') ORDER BY team;
SELECT quota.set_parent('p-user', 'p-team');

-- Expiry: an expired hold made through parents frees its credits on every
-- account (lazily, and by expire_holds); a late commit still records usage.
SELECT reservation AS r4 FROM quota.reserve_credit('p-user', 6, hold_for => '1 second') \gset
UPDATE quota.holds SET expires_at = expires_at - interval '1 hour' WHERE id = :r4 OR origin = :r4;
UPDATE quota.accounts SET next_expiry = next_expiry - interval '1 hour' WHERE team IN ('p-user', 'p-team', 'p-org2');
SELECT team, held FROM quota.usage WHERE team IN ('p-user', 'p-team', 'p-org2') ORDER BY team;
SELECT quota.expire_holds() >= 3 AS expired_on_each;
SELECT state, count(*) FROM quota.holds WHERE id = :r4 OR origin = :r4 GROUP BY state;
SELECT team, used FROM quota.usage WHERE team IN ('p-user', 'p-team', 'p-org2') ORDER BY team;
SELECT granted FROM quota.commit_credit(:r4);
SELECT u.team, u.used FROM quota.usage u WHERE u.team IN ('p-user', 'p-team', 'p-org2') ORDER BY u.team;

-- Rollover of a parent whose period differs from its child's: each
-- account rolls its own window; a denial reports the denier's reset.
SELECT quota.set_account('p-month', 10, period => '1 month', anchor => '2026-01-01');
SELECT quota.set_account('p-day', 100, period => '1 day', anchor => '2026-01-01');
SELECT quota.set_parent('p-day', 'p-month');
SELECT granted, used, remaining, resets_at = (SELECT resets_at FROM quota.usage WHERE team = 'p-day') AS own_reset
  FROM quota.charge_credit('p-day', 10);
SELECT granted, used, remaining, retry_after > 0 AS waits,
       resets_at = (SELECT resets_at FROM quota.usage WHERE team = 'p-month') AS month_reset
  FROM quota.charge_credit('p-day', 1);
-- The month ends (moved back by hand): the parent rolls over, the child's day too.
UPDATE quota.accounts SET window_start = window_start - interval '1 month', resets_at = resets_at - interval '1 month',
                          anchor = anchor - interval '1 month' WHERE team = 'p-month';
UPDATE quota.accounts SET window_start = window_start - interval '1 day', resets_at = resets_at - interval '1 day',
                          anchor = anchor - interval '1 day' WHERE team = 'p-day';
SELECT granted, used FROM quota.charge_credit('p-day', 2);
SELECT team, used FROM quota.usage WHERE team IN ('p-day', 'p-month') ORDER BY team;

-- Alerts of an ancestor are raised by the child's call that crosses them.
SELECT quota.set_account('p-alert', 10);
SELECT quota.set_alerts('p-alert', '{50}');
SELECT quota.set_account('p-alert-kid', 100);
SELECT quota.set_parent('p-alert-kid', 'p-alert');
SELECT granted FROM quota.charge_credit('p-alert-kid', 5);
SELECT team, threshold, used FROM quota.events WHERE team = 'p-alert';
-- A denied chain call raises none (the ancestor's event is rolled back with it).
SELECT quota.set_alerts('p-alert-kid', '{10}');
SELECT quota.set_account('p-alert', 0);
SELECT granted FROM quota.charge_credit('p-alert-kid', 20);
SELECT count(*) AS kid_events FROM quota.events WHERE team = 'p-alert-kid';

-- Depth and cycles: chains of at most 4 accounts, no cycles.
SELECT quota.set_account('p-a', 10);
SELECT quota.set_account('p-b', 10);
SELECT quota.set_account('p-c', 10);
SELECT quota.set_account('p-d', 10);
SELECT quota.set_account('p-e', 10);
SELECT quota.set_parent('p-b', 'p-a');
SELECT quota.set_parent('p-c', 'p-b');
SELECT quota.set_parent('p-d', 'p-c');
SELECT ptry($$SELECT quota.set_parent('p-e', 'p-d')$$);
SELECT ptry($$SELECT quota.set_parent('p-a', 'p-e')$$);
SELECT quota.set_parent('p-e', 'p-c');
SELECT ptry($$SELECT quota.set_parent('p-a', 'p-d')$$);
SELECT ptry($$SELECT quota.set_parent('p-a', 'p-a')$$);
SELECT ptry($$SELECT quota.set_parent('p-b', 'p-b')$$);
-- Moving a subtree counts its height: f (with g below) fits under b, not under c.
SELECT ptry($$SELECT quota.set_parent('p-c', 'p-e')$$);
SELECT quota.set_account('p-f', 10);
SELECT quota.set_account('p-g', 10);
SELECT quota.set_parent('p-g', 'p-f');
SELECT ptry($$SELECT quota.set_parent('p-f', 'p-c')$$);
SELECT quota.set_parent('p-f', 'p-b');
SELECT granted, remaining FROM quota.charge_credit('p-g', 1);
SELECT granted, remaining FROM quota.charge_credit('p-d', 2);
SELECT team, used FROM quota.usage WHERE team IN ('p-a', 'p-b', 'p-c', 'p-d') ORDER BY team;

-- Bad input.
SELECT ptry($$SELECT quota.set_parent(NULL, 'p-a')$$);
SELECT ptry($$SELECT quota.set_parent('', 'p-a')$$);
SELECT ptry($$SELECT quota.set_parent('p-a', '')$$);
SELECT ptry($$SELECT quota.set_parent('p-a', 'p-a', NULL)$$);
SELECT ptry(format('SELECT quota.set_parent(%L, %L)', 'p-a', repeat('x', 257)));
SELECT ptry($$SELECT quota.set_parent('p-nobody', 'p-a')$$);
SELECT ptry($$SELECT quota.set_parent('p-a', 'p-nobody')$$);
SELECT ptry($$SELECT quota.set_parent('p-a', 'p-b', 'other')$$);
SELECT ptry($$SELECT quota.set_concurrency(NULL, 1)$$);
SELECT ptry($$SELECT quota.set_concurrency('p-a', -1)$$);
SELECT ptry($$SELECT quota.set_concurrency('p-nobody', 1)$$);
SELECT ptry($$SELECT quota.set_concurrency('p-a', 1, '')$$);

-- Concurrency caps: reserves are denied at max_open_holds unexpired open holds.
SELECT quota.set_account('p-cap', 100);
SELECT quota.set_concurrency('p-cap', 2);
SELECT reservation AS c1 FROM quota.reserve_credit('p-cap', 1, hold_for => '1 minute') \gset
SELECT reservation AS c2 FROM quota.reserve_credit('p-cap', 1, hold_for => '2 minutes') \gset
-- The third is denied: retry_after is the seconds until the earliest expires.
SELECT granted, reservation, held, remaining, retry_after BETWEEN 55 AND 60 AS until_earliest
  FROM quota.reserve_credit('p-cap', 1);
-- Charges are not capped.
SELECT granted, used FROM quota.charge_credit('p-cap', 1);
-- Settling one frees a place.
SELECT quota.release_credit(:c1);
SELECT granted FROM quota.reserve_credit('p-cap', 1, hold_for => NULL);
-- Expired holds never count: a crashed caller's place frees itself.
UPDATE quota.holds SET expires_at = now() - interval '1 second' WHERE id = :c2;
SELECT reservation AS c3, granted FROM quota.reserve_credit('p-cap', 1) \gset
SELECT :'granted' AS granted;
SELECT quota.release_credit(:c3);
-- Holds that never expire: a denial's retry_after is NULL.
SELECT quota.set_concurrency('p-cap', 1);
SELECT granted, retry_after FROM quota.reserve_credit('p-cap', 1);
-- A cap of 0 denies every reserve; NULL removes the cap.
SELECT quota.set_concurrency('p-cap', 0);
SELECT granted FROM quota.reserve_credit('p-cap', 1, hold_for => '1 hour');
SELECT quota.set_concurrency('p-cap', NULL);
SELECT granted FROM quota.reserve_credit('p-cap', 1);
SELECT count(*) FROM quota.links WHERE team = 'p-cap';
-- A cap of 0 with holds open: retry_after is NULL (waiting frees nothing).
SELECT quota.set_account('p-cap0', 100);
SELECT granted FROM quota.reserve_credit('p-cap0', 1, hold_for => '30 seconds');
SELECT quota.set_concurrency('p-cap0', 0);
SELECT granted, retry_after FROM quota.reserve_credit('p-cap0', 1);
-- A cap and a parent's credits both refuse: the reply gives the one that turns the call away longer.
SELECT quota.set_account('p-b-org', 10, period => '1 day'), quota.set_account('p-b-key', 100);
SELECT quota.set_parent('p-b-key', 'p-b-org'), quota.set_concurrency('p-b-key', 1);
SELECT granted FROM quota.reserve_credit('p-b-key', 2, hold_for => '30 seconds');
SELECT granted, remaining, resets_at = (SELECT resets_at FROM quota.usage WHERE team = 'p-b-org') AS org_reset,
       retry_after > 60 AS until_org_reset FROM quota.reserve_credit('p-b-key', 9);
-- Only the cap refuses: until the hold expires.
SELECT granted, remaining, retry_after BETWEEN 25 AND 30 AS until_hold_expires FROM quota.reserve_credit('p-b-key', 1);
-- A cap on an ancestor counts the holds made through it.
SELECT quota.set_account('p-cap-org', 100);
SELECT quota.set_account('p-cap-a', 100);
SELECT quota.set_account('p-cap-b', 100);
SELECT quota.set_parent('p-cap-a', 'p-cap-org');
SELECT quota.set_parent('p-cap-b', 'p-cap-org');
SELECT quota.set_concurrency('p-cap-org', 2);
SELECT granted FROM quota.reserve_credit('p-cap-a', 1, hold_for => '1 minute');
SELECT granted FROM quota.reserve_credit('p-cap-b', 1, hold_for => '1 minute');
SELECT granted, held, retry_after BETWEEN 55 AND 60 AS until_earliest FROM quota.reserve_credit('p-cap-a', 1);
SELECT team, held FROM quota.usage WHERE team LIKE 'p-cap-%' ORDER BY team;
-- A slotted capped account: reserves count every slot's holds.
SELECT quota.set_account('p-cap-hot', 1000);
SELECT quota.set_slots('p-cap-hot', 4);
SELECT quota.set_concurrency('p-cap-hot', 3);
SELECT count(*) FILTER (WHERE granted) AS granted FROM (SELECT (quota.reserve_credit('p-cap-hot', 1)).granted FROM generate_series(1, 5)) r;

-- purge_holds: an ancestor's part goes only after its reservation, so a reservation
-- still there has all its parts (the next purge takes the parts left).
SET quota.purge_pause = 0;
SELECT quota.purge_holds(now() + interval '1 hour') > 0 AS purged;
SELECT count(*) FILTER (WHERE id = :r1) AS reservation, count(*) FILTER (WHERE id <> :r1) AS parts
  FROM quota.holds WHERE id = :r1 OR origin = :r1;
SELECT quota.purge_holds(now() + interval '1 hour') > 0 AS purged;
SELECT count(*) AS left_of_r1 FROM quota.holds WHERE id = :r1 OR origin = :r1;
SELECT ptry(format('SELECT quota.commit_credit(%s)', :r1));
RESET quota.purge_pause;

-- A PostgreSQL error in the middle of a chain (a CHECK a superuser added to the child's row,
-- after the org's step wrote): the error reaches the caller intact, and nothing stays.
SELECT quota.set_account('p-chk-org', 100), quota.set_account('p-chk', 100);
SELECT quota.set_parent('p-chk', 'p-chk-org');
ALTER TABLE quota.accounts ADD CONSTRAINT p_small CHECK (team <> 'p-chk' OR used <= 5) NOT VALID;
SELECT split_part(ptry($$SELECT quota.charge_credit('p-chk', 10)$$), ' | ', 1) AS error;
SELECT team, used FROM quota.usage WHERE team IN ('p-chk', 'p-chk-org') ORDER BY team;
ALTER TABLE quota.accounts DROP CONSTRAINT p_small;
SELECT granted, used FROM quota.charge_credit('p-chk', 10);

-- Privileges: the new administrative functions are not executable by PUBLIC; links are readable, never writable.
SELECT has_function_privilege('public', 'quota.set_parent(text, text, text)', 'execute') AS set_parent_public,
       has_function_privilege('public', 'quota.set_concurrency(text, integer, text)', 'execute') AS set_concurrency_public,
       has_table_privilege('public', 'quota.links', 'select') AS links_readable,
       has_table_privilege('public', 'quota.links', 'insert, update, delete') AS links_writable;
-- Read-only transactions refuse them (25006).
BEGIN READ ONLY;
SELECT ptry($$SELECT quota.set_parent('p-e', NULL)$$);
SELECT ptry($$SELECT quota.set_concurrency('p-e', 1)$$);
SELECT ptry($$SELECT quota.charge_credit('p-d', 1)$$);
ROLLBACK;
-- A chain call inside a transaction that rolls back leaves no trace; so does one in a rolled-back savepoint.
SELECT team, used, held FROM quota.usage WHERE team IN ('p-user', 'p-team', 'p-org2') ORDER BY team;
BEGIN;
SELECT granted FROM quota.charge_credit('p-user', 2);
SAVEPOINT s;
SELECT granted FROM quota.reserve_credit('p-user', 2);
ROLLBACK TO SAVEPOINT s;
SELECT granted FROM quota.charge_credit('p-user', 1);
ROLLBACK;
SELECT team, used, held FROM quota.usage WHERE team IN ('p-user', 'p-team', 'p-org2') ORDER BY team;
