-- Least privilege: USAGE ON SCHEMA quota is the one grant an application
-- role needs to spend and read; it can never write the tables, set budgets
-- or sweep holds.
CREATE ROLE quota_app LOGIN;
CREATE ROLE quota_outsider LOGIN;
SELECT quota.set_account('sec', 5);

-- Without USAGE on the schema nothing is reachable.
SET ROLE quota_outsider;
SELECT quota.charge_credit('sec');
SELECT * FROM quota.usage;
RESET ROLE;

GRANT USAGE ON SCHEMA quota TO quota_app;
SET ROLE quota_app;
-- Spending and reading work through the functions and the view.
SELECT granted, used, held, remaining FROM quota.charge_credit('sec');
SELECT reservation AS r FROM quota.reserve_credit('sec', 2) \gset
SELECT granted, used, held FROM quota.commit_credit(:r, 1);
SELECT reservation AS r2 FROM quota.reserve_credit('sec', 1) \gset
SELECT quota.release_credit(:r2);
SELECT quota.is_team_limited('sec');
SELECT team, used, held, remaining, limited FROM quota.usage WHERE team = 'sec';
SELECT * FROM quota.window_at('2024-01-01 00:00+00', '1 day', '2024-01-02 12:00+00');
-- The tables cannot be read or written directly.
SELECT * FROM quota.accounts;
UPDATE quota.accounts SET credit_limit = 1000000 WHERE team = 'sec';
INSERT INTO quota.accounts (team, resource, credit_limit, anchor, window_start) VALUES ('me', 'credits', 1000, now(), now());
DELETE FROM quota.holds;
SELECT nextval('quota.holds_id_seq');
-- Nor can it raise its own limit or run the sweeper.
SELECT quota.set_account('sec', 1000000);
SELECT quota.expire_holds();
-- Nor give unknown teams a budget through the defaults.
SET quota.default_limit = 1000000;
SET quota.default_period = '1 day';
RESET ROLE;
SELECT team, credit_limit, used FROM quota.accounts WHERE team = 'sec';

-- An administrator role gets set_account and expire_holds by explicit grant.
CREATE ROLE quota_admin LOGIN;
GRANT USAGE ON SCHEMA quota TO quota_admin;
GRANT EXECUTE ON FUNCTION quota.set_account(text, bigint, text, interval, timestamptz, boolean), quota.expire_holds() TO quota_admin;
SET ROLE quota_admin;
SELECT quota.set_account('sec', 6);
SELECT quota.expire_holds() >= 0 AS swept;
RESET ROLE;

-- A hostile search_path: look-alike tables, functions and operators planted
-- ahead of pg_catalog must not change what the extension does.
CREATE SCHEMA hostile;
CREATE TABLE hostile.accounts (LIKE quota.accounts);
CREATE TABLE hostile.holds (LIKE quota.holds);
CREATE FUNCTION hostile.text_eq_trap(text, text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'hostile = operator called'; END $$;
CREATE OPERATOR hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.text_eq_trap);
CREATE FUNCTION hostile.int8_eq_trap(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'hostile bigint = operator called'; END $$;
CREATE OPERATOR hostile.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.int8_eq_trap);
CREATE FUNCTION hostile.ts_le_trap(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'hostile <= operator called'; END $$;
CREATE OPERATOR hostile.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = hostile.ts_le_trap);
CREATE FUNCTION hostile.sum(bigint) RETURNS bigint LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'hostile sum called'; END $$;
CREATE FUNCTION hostile.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '2000-01-01'::timestamptz $$;
GRANT USAGE ON SCHEMA hostile TO PUBLIC;

SET search_path = hostile, pg_catalog;
-- In a fresh backend (no plans prepared yet), every call as an application role.
\c - quota_app
SET search_path = hostile, pg_catalog;
SELECT granted, used, held, remaining FROM quota.charge_credit('sec');
SELECT reservation AS r3 FROM quota.reserve_credit('sec', 1, hold_for => '1 millisecond', idempotency_key => 'k') \gset
SELECT reservation = :r3 AS same FROM quota.reserve_credit('sec', 1, hold_for => '1 millisecond', idempotency_key => 'k');
SELECT pg_sleep(0.01);
-- (this query's own = would be the planted one: the test qualifies it, as the extension does)
SELECT team, used, held, limited FROM quota.usage WHERE team OPERATOR(pg_catalog.=) 'sec';
SELECT quota.is_team_limited('sec');
SELECT quota.release_credit(:r3);
SELECT reservation AS r4 FROM quota.reserve_credit('sec', 1) \gset
SELECT granted, used, held FROM quota.commit_credit(:r4);
\c - quota_app
-- A fresh backend: a setting made before the library loads is still checked.
SET quota.default_limit = 1000000;
SELECT quota.charge_credit('freeloader');
\c - postgres
SET search_path = hostile, pg_catalog;
SELECT quota.set_account('evil', 10, period => '1 day');
SELECT granted, used FROM quota.charge_credit('evil', 10);
SELECT reservation AS r5 FROM quota.reserve_credit('sec', 1, hold_for => '1 millisecond') \gset
SELECT pg_sleep(0.01);
SELECT quota.expire_holds();
SELECT count(*) FROM hostile.accounts;
RESET search_path;

DROP SCHEMA hostile CASCADE;
DROP OWNED BY quota_app, quota_outsider, quota_admin;
DROP ROLE quota_app, quota_outsider, quota_admin;
