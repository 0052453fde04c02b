-- quota 1.2.
-- A fresh CREATE EXTENSION quota runs quota--1.0.sql and then every update
-- script in turn, so a new install and an updated one are the same by
-- construction (test/upgrade.sh compares them).
\echo Use "ALTER EXTENSION quota UPDATE TO '1.2'" to load this file. \quit

--------------------------------------------------------------------------
-- set_account: a NULL anchor keeps an existing account's billing grid, so
-- changing only the limit never moves the day a budget resets; a new
-- account anchors at now().  (1.0 and 1.1 defaulted to now().)
--------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.set_account(
    team text,
    credit_limit bigint,
    resource text DEFAULT 'credits',
    period interval DEFAULT NULL,
    anchor timestamptz DEFAULT NULL,
    unlimited boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'quota_set_account'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

--------------------------------------------------------------------------
-- Hot accounts, automatically: an account gets slots when concurrent
-- transactions contend for it (up to quota.auto_slots), and gives them
-- back when too few credits are left to deal.  set_slots() pins a count
-- (0 forbids slots); set_slots(team, NULL) gives the account back to
-- automatic slotting.  NULL (every account from before 1.2, also when a
-- 1.1 dump without this column is restored) means pinned if it has slots,
-- as every slotted account was then: slots set by hand stay.
--------------------------------------------------------------------------
ALTER TABLE quota.accounts ADD COLUMN slots_pinned boolean;

COMMENT ON FUNCTION quota.set_slots(text, integer, text)
    IS 'pin a hot account''s slot count (0: no slots; NULL: automatic slotting decides)';
