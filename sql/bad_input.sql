-- Every row of the contract's bad-input table: the SQLSTATE, a clear
-- message, and nothing changed.
-- try(statement): 'ok', or the error as SQLSTATE: message (detail) (hint).
CREATE FUNCTION try(statement text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    detail text;
    hint text;
BEGIN
    EXECUTE statement;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    RETURN SQLSTATE || ': ' || SQLERRM
        || CASE WHEN detail <> '' THEN ' | DETAIL: ' || detail ELSE '' END
        || CASE WHEN hint <> '' THEN ' | HINT: ' || hint ELSE '' END;
END $$;
SELECT try($$SELECT quota.set_account('bad', 10)$$);
SELECT reservation AS open_hold FROM quota.reserve_credit('bad', 2) \gset
CREATE TEMP TABLE snapshot AS
    SELECT (SELECT array_agg(row(a.*)::text ORDER BY team, resource) FROM quota.accounts a) AS accounts,
           (SELECT array_agg(row(h.*)::text ORDER BY id) FROM quota.holds h) AS holds;

-- 22004: NULL team, resource, amount, reservation, credit_limit
SELECT try($$SELECT quota.set_account(NULL, 10)$$);
SELECT try($$SELECT quota.set_account('bad', NULL)$$);
SELECT try($$SELECT quota.set_account('bad', 10, NULL)$$);
SELECT try($$SELECT quota.reserve_credit(NULL)$$);
SELECT try($$SELECT quota.reserve_credit('bad', NULL)$$);
SELECT try($$SELECT quota.reserve_credit('bad', 1, NULL)$$);
SELECT try($$SELECT quota.charge_credit(NULL)$$);
SELECT try($$SELECT quota.charge_credit('bad', NULL)$$);
SELECT try($$SELECT quota.charge_credit('bad', 1, NULL)$$);
SELECT try($$SELECT quota.commit_credit(NULL)$$);
SELECT try($$SELECT quota.release_credit(NULL)$$);
SELECT try($$SELECT quota.is_team_limited(NULL)$$);
SELECT try($$SELECT quota.is_team_limited('bad', NULL)$$);
-- ... and the other arguments that have no meaning as NULL
-- (anchor NULL is not one of them: it keeps an existing account's billing grid)
SELECT try($$SELECT quota.set_account('bad', 10, anchor => NULL)$$);
SELECT try($$SELECT quota.set_account('bad', 10, unlimited => NULL)$$);
SELECT try($$SELECT quota.charge_credit('bad', 1, allow_overdraft => NULL)$$);

-- 22023: amount <= 0, amount < 0 in commit, credit_limit < 0, period or hold_for <= 0, empty names
SELECT try($$SELECT quota.reserve_credit('bad', 0)$$);
SELECT try($$SELECT quota.reserve_credit('bad', -5)$$);
SELECT try($$SELECT quota.charge_credit('bad', 0)$$);
SELECT try($$SELECT quota.charge_credit('bad', -1)$$);
SELECT try(format($$SELECT quota.commit_credit(%s, -1)$$, :open_hold));
SELECT try($$SELECT quota.set_account('bad', -1)$$);
SELECT try($$SELECT quota.set_account('bad', 10, period => '0')$$);
SELECT try($$SELECT quota.set_account('bad', 10, period => '-1 day')$$);
SELECT try($$SELECT quota.set_account('bad', 10, period => '1 month -1 day')$$);
SELECT try($$SELECT quota.reserve_credit('bad', 1, hold_for => '0 seconds')$$);
SELECT try($$SELECT quota.reserve_credit('bad', 1, hold_for => '-1 minute')$$);
SELECT try($$SELECT quota.set_account('', 10)$$);
SELECT try($$SELECT quota.set_account('bad', 10, '')$$);
SELECT try($$SELECT quota.reserve_credit('')$$);
SELECT try($$SELECT quota.charge_credit('bad', 1, '')$$);
SELECT try($$SELECT quota.is_team_limited('')$$);
SELECT try($$SELECT quota.set_account('bad', 10, anchor => 'infinity')$$);
SELECT try($$SELECT quota.window_at('2024-01-01', '-1 day', now())$$);

-- 22003: sums that would overflow bigint are denied or rejected, never wrapped
SELECT try($$SELECT quota.set_account('huge', 9223372036854775807)$$);
SELECT granted, used, remaining FROM quota.charge_credit('huge', 9223372036854775806);
SELECT granted, used, remaining FROM quota.charge_credit('huge', 2);
SELECT granted, used, held FROM quota.reserve_credit('huge', 9223372036854775807);
SELECT try($$SELECT quota.charge_credit('huge', 9223372036854775807, allow_overdraft => true)$$);
SELECT reservation AS last_one FROM quota.reserve_credit('huge', 1) \gset
SELECT try(format($$SELECT quota.commit_credit(%s, 9223372036854775807)$$, :last_one));
SELECT try($$SELECT quota.set_account('huge-unlimited', 0, unlimited => true)$$);
SELECT granted, used FROM quota.charge_credit('huge-unlimited', 9223372036854775807);
SELECT try($$SELECT quota.charge_credit('huge-unlimited', 1)$$);
SELECT granted, held FROM quota.reserve_credit('huge-unlimited', 9223372036854775807);
SELECT try($$SELECT quota.reserve_credit('huge-unlimited', 1)$$);
SELECT credit_limit, used, held, remaining, limited FROM quota.usage WHERE team LIKE 'huge%' ORDER BY team;
DELETE FROM quota.holds WHERE team LIKE 'huge%';
DELETE FROM quota.accounts WHERE team LIKE 'huge%';

-- P0002: unknown account, unknown reservation
SELECT try($$SELECT quota.reserve_credit('nobody')$$);
SELECT try($$SELECT quota.charge_credit('bad', 1, 'no-such-resource')$$);
SELECT try($$SELECT quota.is_team_limited('nobody')$$);
SELECT try($$SELECT quota.commit_credit(424242)$$);
SELECT try($$SELECT quota.release_credit(424242)$$);

-- 55000: committing a released reservation; releasing a committed one
SELECT reservation AS gone FROM quota.reserve_credit('bad', 1) \gset
SELECT try(format($$SELECT quota.release_credit(%s)$$, :gone));
SELECT try(format($$SELECT quota.commit_credit(%s)$$, :gone));
SELECT reservation AS done FROM quota.reserve_credit('bad', 1) \gset
SELECT granted FROM quota.commit_credit(:done);
SELECT try(format($$SELECT quota.release_credit(%s)$$, :done));
-- 55000: quota.distribute() where there is no Citus (test/citus.sh runs it on a Citus cluster).
SELECT try($$SELECT quota.distribute()$$);
-- Put the two settled holds' credits in the snapshot's terms: they were the only changes.
SELECT used, held FROM quota.usage WHERE team = 'bad';
DELETE FROM quota.holds WHERE id IN (:gone, :done);
UPDATE quota.accounts SET used = used - 1 WHERE team = 'bad';

-- Nothing above changed any account or hold.
SELECT s.accounts = (SELECT array_agg(row(a.*)::text ORDER BY team, resource) FROM quota.accounts a) AS accounts_unchanged,
       s.holds = (SELECT array_agg(row(h.*)::text ORDER BY id) FROM quota.holds h) AS holds_unchanged
  FROM snapshot s;
