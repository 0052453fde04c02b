-- quota 1.0: credit budgets kept in the application's own database.
\echo Use "CREATE EXTENSION quota" to load this file. \quit

--------------------------------------------------------------------------
-- The schema must be ours.  CREATE EXTENSION creates schema quota when it
-- does not exist; one that exists already is used only if it is empty and
-- owned by the installing role or a superuser (pg_dump's output creates
-- the empty schema itself just before CREATE EXTENSION).  Anyone else's
-- schema would own the budgets: its owner could read and exhaust every
-- team's credits, rename the schema away or drop it with everything in it.
--------------------------------------------------------------------------
DO $$
DECLARE
    schema_oid oid;
    schema_owner oid;
BEGIN
    SELECT n.oid, n.nspowner INTO schema_oid, schema_owner
      FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) 'quota';
    -- Privileges on it granted to anyone but its owner would let them plant objects in it.
    IF EXISTS (SELECT FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
                WHERE n.oid OPERATOR(pg_catalog.=) schema_oid
                  AND a.grantee OPERATOR(pg_catalog.<>) n.nspowner) THEN
        RAISE EXCEPTION 'schema "quota" grants privileges to other roles'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'quota installs only into a schema "quota" that it creates, or an empty one owned by the installing role or a superuser, with no privileges granted to others.',
                  HINT = 'Revoke them, or drop the schema first; grant USAGE to application roles after CREATE EXTENSION.';
    END IF;
    IF schema_owner OPERATOR(pg_catalog.<>) (SELECT r.oid FROM pg_catalog.pg_roles r
                                              WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
       AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) schema_owner) THEN
        RAISE EXCEPTION 'schema "quota" is owned by role "%"', pg_catalog.pg_get_userbyid(schema_owner)
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'quota installs only into a schema "quota" that it creates, or an empty one owned by the installing role or a superuser.',
                  HINT = 'Drop or rename that schema, or let its owner or a superuser install quota.';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) schema_oid)
       OR EXISTS (SELECT FROM pg_catalog.pg_proc p WHERE p.pronamespace OPERATOR(pg_catalog.=) schema_oid)
       OR EXISTS (SELECT FROM pg_catalog.pg_type t WHERE t.typnamespace OPERATOR(pg_catalog.=) schema_oid)
       OR EXISTS (SELECT FROM pg_catalog.pg_operator o WHERE o.oprnamespace OPERATOR(pg_catalog.=) schema_oid)
       OR EXISTS (SELECT FROM pg_catalog.pg_collation c WHERE c.collnamespace OPERATOR(pg_catalog.=) schema_oid)
       OR EXISTS (SELECT FROM pg_catalog.pg_conversion c WHERE c.connamespace OPERATOR(pg_catalog.=) schema_oid)
       OR EXISTS (SELECT FROM pg_catalog.pg_opfamily f WHERE f.opfnamespace OPERATOR(pg_catalog.=) schema_oid)
       OR EXISTS (SELECT FROM pg_catalog.pg_opclass c WHERE c.opcnamespace OPERATOR(pg_catalog.=) schema_oid)
       OR EXISTS (SELECT FROM pg_catalog.pg_ts_parser p WHERE p.prsnamespace OPERATOR(pg_catalog.=) schema_oid)
       OR EXISTS (SELECT FROM pg_catalog.pg_ts_template t WHERE t.tmplnamespace OPERATOR(pg_catalog.=) schema_oid)
       OR EXISTS (SELECT FROM pg_catalog.pg_ts_config c WHERE c.cfgnamespace OPERATOR(pg_catalog.=) schema_oid)
       OR EXISTS (SELECT FROM pg_catalog.pg_ts_dict d WHERE d.dictnamespace OPERATOR(pg_catalog.=) schema_oid)
       OR EXISTS (SELECT FROM pg_catalog.pg_statistic_ext e WHERE e.stxnamespace OPERATOR(pg_catalog.=) schema_oid) THEN
        RAISE EXCEPTION 'schema "quota" is not empty'
            USING ERRCODE = 'duplicate_schema',
                  DETAIL = 'quota installs only into a schema "quota" that it creates, or an empty one owned by the installing role or a superuser.',
                  HINT = 'Drop or rename that schema first.';
    END IF;
END
$$;

--------------------------------------------------------------------------
-- Storage
--------------------------------------------------------------------------

-- One budget per (team, resource).  used and held are those of the window
-- that starts at window_start; a call that finds resets_at passed starts
-- the current window first (lazy rollover).
CREATE TABLE quota.accounts (
    team         text        NOT NULL,
    resource     text        NOT NULL,
    credit_limit bigint      NOT NULL,
    unlimited    boolean     NOT NULL DEFAULT false,
    period       interval,                -- NULL: never resets
    anchor       timestamptz NOT NULL,    -- windows start at anchor + k * period (UTC)
    window_start timestamptz NOT NULL,
    resets_at    timestamptz,             -- end of the stored window; NULL when period is
    used         bigint      NOT NULL DEFAULT 0,
    held         bigint      NOT NULL DEFAULT 0,
    next_expiry  timestamptz,             -- no open hold expires before this
    PRIMARY KEY (team, resource)
);
-- No CHECK constraints on purpose: PostgreSQL re-reads them from their stored
-- form on every statement, which cost about a sixth of a spending call's CPU.
-- Only the extension's functions can write these tables (see Privileges),
-- they validate every input, and test/stress/audit.py checks the invariants
-- (used, held >= 0; held = sum of open holds; used + held <= credit_limit).

COMMENT ON TABLE quota.accounts IS 'quota budgets: one row per (team, resource); read it through quota.usage';

CREATE SEQUENCE quota.holds_id_seq;

-- Reservations: state is 'open', 'committed', 'released' or 'expired'.
-- Settled holds are kept: they answer retried commits and releases and
-- idempotent reserves.  (No CHECK constraints, as for quota.accounts.)
CREATE TABLE quota.holds (
    id              bigint      NOT NULL DEFAULT nextval('quota.holds_id_seq') PRIMARY KEY,
    team            text        NOT NULL,
    resource        text        NOT NULL,
    amount          bigint      NOT NULL,
    state           text        NOT NULL DEFAULT 'open',
    idempotency_key text,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz,          -- NULL: never expires
    settled_at      timestamptz,
    committed       bigint                -- credits recorded by the commit
);

ALTER SEQUENCE quota.holds_id_seq OWNED BY quota.holds.id;

COMMENT ON TABLE quota.holds IS 'quota reservations: open, committed, released or expired';

-- Idempotent reserves look holds up by key.
CREATE UNIQUE INDEX holds_idempotency_key ON quota.holds (team, resource, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Expiry finds an account's open holds past their time.
CREATE INDEX holds_open_expiry ON quota.holds (team, resource, expires_at) WHERE state = 'open';

-- pg_dump keeps every account and hold, and the id sequence's position.
SELECT pg_catalog.pg_extension_config_dump('quota.accounts', '');
SELECT pg_catalog.pg_extension_config_dump('quota.holds', '');
SELECT pg_catalog.pg_extension_config_dump('quota.holds_id_seq', '');

--------------------------------------------------------------------------
-- The reply of every spending call
--------------------------------------------------------------------------

CREATE TYPE quota.grant AS (
    granted      boolean,
    reservation  bigint,
    used         bigint,
    held         bigint,
    credit_limit bigint,
    remaining    bigint,
    resets_at    timestamptz,
    retry_after  integer
);

--------------------------------------------------------------------------
-- Functions
--------------------------------------------------------------------------

CREATE FUNCTION quota.set_account(
    team text,
    credit_limit bigint,
    resource text DEFAULT 'credits',
    period interval DEFAULT NULL,
    anchor timestamptz DEFAULT now(),
    unlimited boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'quota_set_account'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION quota.set_account(text, bigint, text, interval, timestamptz, boolean)
    IS 'create or update a budget, keeping used and held of the current window';

CREATE FUNCTION quota.reserve_credit(
    team text,
    amount bigint DEFAULT 1,
    resource text DEFAULT 'credits',
    hold_for interval DEFAULT '15 minutes',
    idempotency_key text DEFAULT NULL)
RETURNS quota.grant
AS 'MODULE_PATHNAME', 'quota_reserve_credit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION quota.reserve_credit(text, bigint, text, interval, text)
    IS 'hold credits if the budget allows; settle with commit_credit or release_credit';

CREATE FUNCTION quota.commit_credit(
    reservation bigint,
    amount bigint DEFAULT NULL)
RETURNS quota.grant
AS 'MODULE_PATHNAME', 'quota_commit_credit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION quota.commit_credit(bigint, bigint)
    IS 'settle a hold, recording the credits actually used (the hold amount by default)';

CREATE FUNCTION quota.release_credit(reservation bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'quota_release_credit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION quota.release_credit(bigint)
    IS 'cancel an open hold; false when it was already released or had expired';

CREATE FUNCTION quota.charge_credit(
    team text,
    amount bigint DEFAULT 1,
    resource text DEFAULT 'credits',
    allow_overdraft boolean DEFAULT false)
RETURNS quota.grant
AS 'MODULE_PATHNAME', 'quota_charge_credit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION quota.charge_credit(text, bigint, text, boolean)
    IS 'spend credits in one step, with no hold';

CREATE FUNCTION quota.is_team_limited(
    team text,
    resource text DEFAULT 'credits')
RETURNS boolean
AS 'MODULE_PATHNAME', 'quota_is_team_limited'
LANGUAGE C STABLE PARALLEL RESTRICTED;

COMMENT ON FUNCTION quota.is_team_limited(text, text)
    IS 'true when the budget is used up; takes no lock';

CREATE FUNCTION quota.expire_holds()
RETURNS bigint
AS 'MODULE_PATHNAME', 'quota_expire_holds'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION quota.expire_holds()
    IS 'release every hold past its hold_for; returns how many';

CREATE FUNCTION quota.window_at(
    anchor timestamptz,
    period interval,
    at timestamptz DEFAULT now(),
    OUT window_start timestamptz,
    OUT resets_at timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'quota_window_at'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION quota.window_at(timestamptz, interval, timestamptz)
    IS 'the budget window anchor + k * period (UTC) that contains the instant at';

-- One account as readers see it now (rolled over, expired holds released):
-- the per-row half of quota.usage.
CREATE FUNCTION quota._account_state(
    account quota.accounts,
    expired_held bigint,
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

COMMENT ON FUNCTION quota._account_state(quota.accounts, bigint) IS 'internal: one row of quota.usage';

--------------------------------------------------------------------------
-- Reading
--------------------------------------------------------------------------

CREATE VIEW quota.usage AS
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
 CROSS JOIN LATERAL quota._account_state(
        a,
        CASE WHEN a.next_expiry <= now() THEN
            (SELECT CAST(sum(h.amount) AS bigint)
               FROM quota.holds h
              WHERE h.team = a.team AND h.resource = a.resource
                AND h.state = 'open' AND h.expires_at <= now())
        END) s;

COMMENT ON VIEW quota.usage IS 'every budget as of now: rolled-over windows, expired holds released';

--------------------------------------------------------------------------
-- Privileges: USAGE ON SCHEMA quota is the one grant an application role
-- needs.  The functions run with the table owner's rights (see
-- src/bridge/entry.hpp); nobody else may write the tables, and only roles
-- granted EXECUTE may set budgets or sweep holds.
--------------------------------------------------------------------------

REVOKE ALL ON quota.accounts, quota.holds, quota.holds_id_seq FROM PUBLIC;
GRANT SELECT ON quota.usage TO PUBLIC;
REVOKE EXECUTE ON FUNCTION quota.set_account(text, bigint, text, interval, timestamptz, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION quota.expire_holds() FROM PUBLIC;
