-- quota 1.1: slots (sub-budgets) for hot accounts.
-- A fresh CREATE EXTENSION quota runs quota--1.0.sql and then this script,
-- so a new install and an updated one are the same by construction.
\echo Use "ALTER EXTENSION quota UPDATE TO '1.1'" to load this file. \quit

--------------------------------------------------------------------------
-- Storage
--------------------------------------------------------------------------

-- How many slots the account is split into (quota.set_slots); 0: none, the
-- account row alone takes every call.
ALTER TABLE quota.accounts ADD COLUMN slots integer NOT NULL DEFAULT 0;

-- The slot that holds an open hold's credits; NULL: the account row itself.
ALTER TABLE quota.holds ADD COLUMN slot integer;

-- A slotted account's sub-budgets (the escrow method).  Each slot records
-- the used and held credits of the calls it took, and owns `share` credits
-- of what remains, which it may grant with only its own row locked.  The
-- invariant, kept by every call: account used + held, plus every slot's
-- used + held + share, is at most credit_limit (shares are never negative;
-- NULL share: unlimited).  A call whose slot cannot cover it locks the
-- account row and then every slot in slot order, and deals out what remains
-- again.  window_start/resets_at: the window the slot's used belongs to.
CREATE TABLE quota.slots (
    team         text        NOT NULL,
    resource     text        NOT NULL,
    slot         integer     NOT NULL,
    window_start timestamptz NOT NULL,
    resets_at    timestamptz,
    used         bigint      NOT NULL DEFAULT 0,
    held         bigint      NOT NULL DEFAULT 0,
    share        bigint,
    next_expiry  timestamptz,
    PRIMARY KEY (team, resource, slot)
) WITH (fillfactor = 10);
-- fillfactor 10: a slot row is rewritten by every call it takes, and its
-- readers walk its chain of versions; on a sparse page PostgreSQL prunes
-- those chains sooner (measured: bench/run.sh, HOT with slots).

COMMENT ON TABLE quota.slots IS 'quota sub-budgets of hot accounts (quota.set_slots); read them through quota.usage';

SELECT pg_catalog.pg_extension_config_dump('quota.slots', '');
REVOKE ALL ON quota.slots FROM PUBLIC;

--------------------------------------------------------------------------
-- Functions
--------------------------------------------------------------------------

CREATE FUNCTION quota.set_slots(
    team text,
    slots integer,
    resource text DEFAULT 'credits')
RETURNS void
AS 'MODULE_PATHNAME', 'quota_set_slots'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION quota.set_slots(text, integer, text)
    IS 'split a hot account into slots that concurrent calls lock independently (0: no slots)';

REVOKE EXECUTE ON FUNCTION quota.set_slots(text, integer, text) FROM PUBLIC;

--------------------------------------------------------------------------
-- Reading: quota.usage sums the slots
--------------------------------------------------------------------------

-- The new _account_state sits beside the old one until the view is
-- replaced in place (a DROP VIEW would fail on views users built on it).
CREATE FUNCTION quota._account_state(
    account quota.accounts,
    expired_held bigint,
    slots_window timestamptz,
    slots_used bigint,
    slots_held bigint,
    OUT credit_limit bigint,
    OUT used bigint,
    OUT held bigint,
    OUT remaining bigint,
    OUT window_start timestamptz,
    OUT resets_at timestamptz,
    OUT limited boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'quota_account_state'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION quota._account_state(quota.accounts, bigint, timestamptz, bigint, bigint)
    IS 'internal: one row of quota.usage';

-- A slotted account adds its slots: their held, and their used in the newest
-- window a current slot has (slots_window; see add_slots in src/budget).
CREATE OR REPLACE VIEW quota.usage AS
SELECT a.team,
       a.resource,
       s.credit_limit,
       s.used,
       s.held,
       s.remaining,
       a.unlimited,
       a.period,
       s.window_start,
       s.resets_at,
       s.limited
  FROM quota.accounts a
 CROSS JOIN LATERAL (
        SELECT CAST(pg_catalog.sum(sl.held) AS bigint) AS held,
               pg_catalog.max(sl.window_start) FILTER (WHERE sl.resets_at IS NULL OR sl.resets_at > now()) AS latest
          FROM quota.slots sl
         WHERE a.slots > 0 AND sl.team = a.team AND sl.resource = a.resource) sh
 CROSS JOIN LATERAL (
        SELECT CAST(pg_catalog.sum(sl.used) AS bigint) AS used
          FROM quota.slots sl
         WHERE a.slots > 0 AND sl.team = a.team AND sl.resource = a.resource
           AND sl.window_start = sh.latest AND (sl.resets_at IS NULL OR sl.resets_at > now())) su
 CROSS JOIN LATERAL quota._account_state(
        a,
        CASE WHEN a.next_expiry <= now() OR a.slots > 0 THEN
            (SELECT CAST(sum(h.amount) AS bigint)
               FROM quota.holds h
              WHERE h.team = a.team AND h.resource = a.resource
                AND h.state = 'open' AND h.expires_at <= now())
        END,
        sh.latest,
        su.used,
        sh.held) s;

COMMENT ON VIEW quota.usage IS 'every budget as of now: rolled-over windows, expired holds released, slots summed';

DROP FUNCTION quota._account_state(quota.accounts, bigint);
