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
