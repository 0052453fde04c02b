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

--------------------------------------------------------------------------
-- History: the closed windows of accounts with a period.  A call that
-- rolls an account over (lazily, in whichever transaction touches it)
-- writes what the closed window ended with: one part for the account row
-- (part -1) and one for each slot that had used credits in it (part =
-- slot number; each part is written by the holder of that row's lock
-- only, so parts never wait for one another).  quota.usage_history adds
-- the windows that have ended but were not rolled over yet, as
-- quota.usage reports rolled-over state before a write.
--------------------------------------------------------------------------
CREATE TABLE quota.history (
    team         text        NOT NULL,
    resource     text        NOT NULL,
    window_start timestamptz NOT NULL,
    part         integer     NOT NULL,  -- -1: the account row; n: slot n
    window_end   timestamptz NOT NULL,
    credit_limit bigint      NOT NULL,
    unlimited    boolean     NOT NULL,
    used         bigint      NOT NULL,
    -- window_end too: a new period or anchor (set_account) may start another window at the same instant
    PRIMARY KEY (team, resource, window_start, window_end, part)
);

-- What purge_history() has deleted up to: windows that ended before it are
-- neither shown (also those not rolled over yet) nor stored again.
CREATE TABLE quota.history_purged (
    one          boolean     NOT NULL DEFAULT true PRIMARY KEY CHECK (one),
    ended_before timestamptz NOT NULL
);

COMMENT ON TABLE quota.history IS 'quota: what closed windows ended with; read it through quota.usage_history';

CREATE INDEX history_window_start ON quota.history (window_start);
CREATE INDEX history_window_end ON quota.history (window_end);

CREATE VIEW quota.usage_history AS
SELECT p.team,
       p.resource,
       p.window_start,
       p.window_end,
       -- the terms the account row closed the window with (a slot's, if only slots used it)
       COALESCE(pg_catalog.max(p.credit_limit) FILTER (WHERE p.part OPERATOR(pg_catalog.=) -1),
                pg_catalog.max(p.credit_limit)) AS credit_limit,
       COALESCE(pg_catalog.bool_or(p.unlimited) FILTER (WHERE p.part OPERATOR(pg_catalog.=) -1),
                pg_catalog.bool_or(p.unlimited)) AS unlimited,
       CAST(pg_catalog.sum(p.used) AS bigint) AS used
  FROM (SELECT h.team, h.resource, h.window_start, h.part, h.window_end, h.credit_limit, h.unlimited, h.used
          FROM quota.history h
        UNION ALL
        -- an account row whose window has ended, not rolled over yet
        SELECT a.team, a.resource, a.window_start, -1, a.resets_at, a.credit_limit, a.unlimited, a.used
          FROM quota.accounts a
         WHERE a.resets_at OPERATOR(pg_catalog.<=) pg_catalog.now()
        UNION ALL
        -- a slot whose window has ended, not rolled over yet
        SELECT s.team, s.resource, s.window_start, s.slot, s.resets_at, a.credit_limit, a.unlimited, s.used
          FROM quota.slots s
          JOIN quota.accounts a ON a.team OPERATOR(pg_catalog.=) s.team
                               AND a.resource OPERATOR(pg_catalog.=) s.resource
         WHERE s.resets_at OPERATOR(pg_catalog.<=) pg_catalog.now()
           AND s.used OPERATOR(pg_catalog.<>) 0) p
 WHERE p.window_end OPERATOR(pg_catalog.>=)
       COALESCE((SELECT r.ended_before FROM quota.history_purged r), '-infinity')
 GROUP BY p.team, p.resource, p.window_start, p.window_end;

COMMENT ON VIEW quota.usage_history IS 'every closed window of a budget with a period, and what it ended with';

--------------------------------------------------------------------------
-- Alerts: thresholds (percent of credit_limit) per account, or from
-- quota.default_alerts; one event per (team, resource, window_start,
-- threshold), raised by the spending call that makes used + held reach
-- it, with pg_notify('quota_events', <the row as JSON>).
--------------------------------------------------------------------------
CREATE TABLE quota.alert_settings (
    team       text      NOT NULL,
    resource   text      NOT NULL,
    thresholds integer[] NOT NULL,
    PRIMARY KEY (team, resource)
);

COMMENT ON TABLE quota.alert_settings IS 'quota: alert thresholds set by quota.set_alerts()';

CREATE SEQUENCE quota.events_id_seq;

CREATE TABLE quota.events (
    id           bigint      NOT NULL DEFAULT nextval('quota.events_id_seq') PRIMARY KEY,
    team         text        NOT NULL,
    resource     text        NOT NULL,
    window_start timestamptz NOT NULL,
    resets_at    timestamptz,            -- when the window ends; NULL: the budget never resets
    threshold    integer     NOT NULL,   -- percent of credit_limit
    used         bigint      NOT NULL,
    held         bigint      NOT NULL,
    credit_limit bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    UNIQUE (team, resource, window_start, threshold)
);

ALTER SEQUENCE quota.events_id_seq OWNED BY quota.events.id;

COMMENT ON TABLE quota.events IS 'quota alerts: one row per threshold crossed per window (also sent on channel quota_events)';

CREATE INDEX events_resets_at ON quota.events (resets_at);

-- Backends cache each account's thresholds; a change to them tells every backend.
CREATE FUNCTION quota._alert_settings_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'quota_alert_settings_changed'
LANGUAGE C;

CREATE TRIGGER alert_settings_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON quota.alert_settings
    FOR EACH STATEMENT EXECUTE FUNCTION quota._alert_settings_changed();

CREATE FUNCTION quota.set_alerts(
    team text,
    thresholds integer[],
    resource text DEFAULT 'credits')
RETURNS void
AS 'MODULE_PATHNAME', 'quota_set_alerts'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION quota.set_alerts(text, integer[], text)
    IS 'alert thresholds in percent of credit_limit (1..1000); NULL or empty: none of its own (quota.default_alerts)';

--------------------------------------------------------------------------
-- Retention.
--------------------------------------------------------------------------
CREATE FUNCTION quota.purge_holds(settled_before timestamptz DEFAULT pg_catalog.now() OPERATOR(pg_catalog.-) interval '7 days')
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    after_id bigint := 0;
    last_id  bigint;
    gone     bigint;
    total    bigint := 0;
    pause    interval;
    spread   boolean := false;
BEGIN
    IF settled_before IS NULL THEN
        RAISE EXCEPTION 'settled_before must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass the instant before which settled holds are deleted, e.g. now() - interval ''7 days''.';
    END IF;
    IF current_setting('transaction_read_only')::boolean THEN
        RAISE EXCEPTION 'cannot execute purge_holds() in a read-only transaction'
            USING ERRCODE = 'read_only_sql_transaction';
    END IF;
    -- Load the library first (any function of it does), so that quota.purge_pause is the
    -- checked setting, in milliseconds, and reads back with its unit ('50ms').
    PERFORM quota.window_at(now(), interval '1 day');
    -- Along the primary key, 2,000 ids at a time: each batch is one short
    -- index range; rows another transaction holds are left for next time.
    -- After a batch that deleted rows, a pause of quota.purge_pause (50 ms by
    -- default): the purge gives way to spending calls instead of taking a
    -- core and the WAL for itself.
    pause := coalesce(nullif(current_setting('quota.purge_pause', true), ''), '50ms')::interval;
    -- On a distributed quota (quota.distribute()): one DELETE that Citus runs
    -- on every shard (Citus cannot lock rows over several shards, so the
    -- batches below are not possible).  It waits for rows another
    -- transaction holds; a late commit it holds gets 55P03 as here.  The
    -- parts that holds made through parents (before distribute()) left on
    -- ancestors stay: their reservation is on another team's shard.
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        EXECUTE 'SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
                  WHERE p.logicalrelid OPERATOR(pg_catalog.=) CAST(''quota.holds'' AS pg_catalog.regclass))'
           INTO spread;
    END IF;
    IF spread THEN
        DELETE FROM ONLY quota.holds h
         WHERE h.state OPERATOR(pg_catalog.<>) 'open' AND h.settled_at OPERATOR(pg_catalog.<) settled_before
           AND (h.origin IS NULL OR h.origin OPERATOR(pg_catalog.=) h.id);
        GET DIAGNOSTICS total = ROW_COUNT;
        RETURN total;
    END IF;
    LOOP
        SELECT max(b.id) INTO last_id
          FROM (SELECT h.id FROM ONLY quota.holds h WHERE h.id > after_id ORDER BY h.id LIMIT 2000) b;
        EXIT WHEN last_id IS NULL;
        -- An ancestor's part of a hold made through parents goes only once its
        -- reservation (the child's hold) is gone, so a reservation that is
        -- still there always has all its parts.
        WITH doomed AS (
            SELECT h.id FROM ONLY quota.holds h
             WHERE h.id > after_id AND h.id <= last_id
               AND h.state <> 'open' AND h.settled_at < settled_before
               AND NOT EXISTS (SELECT FROM ONLY quota.holds c
                                WHERE c.id = h.origin AND c.id <> h.id)
               FOR UPDATE SKIP LOCKED)
        DELETE FROM ONLY quota.holds h USING doomed d
         WHERE h.id = d.id AND h.state <> 'open';
        GET DIAGNOSTICS gone = ROW_COUNT;
        total := total + gone;
        after_id := last_id;
        IF gone > 0 AND pause > interval '0' THEN
            PERFORM pg_sleep(extract(epoch FROM pause));
        END IF;
    END LOOP;
    RETURN total;
END
$$;

COMMENT ON FUNCTION quota.purge_holds(timestamptz)
    IS 'delete holds settled before the instant (7 days ago by default); returns how many';

CREATE FUNCTION quota.purge_history(ended_before timestamptz)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    windows bigint;
BEGIN
    IF ended_before IS NULL THEN
        RAISE EXCEPTION 'ended_before must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass the instant before which closed windows are deleted.';
    END IF;
    IF current_setting('transaction_read_only')::boolean THEN
        RAISE EXCEPTION 'cannot execute purge_history() in a read-only transaction'
            USING ERRCODE = 'read_only_sql_transaction';
    END IF;
    -- Only windows that have ended: an instant in the future means now.
    ended_before := least(ended_before, now());
    -- From now on, windows that ended before it are neither shown nor stored (rolled over later).
    INSERT INTO quota.history_purged AS r (ended_before) VALUES (ended_before)
    ON CONFLICT (one) DO UPDATE SET ended_before = greatest(r.ended_before, EXCLUDED.ended_before);
    WITH gone AS (
        DELETE FROM ONLY quota.history h WHERE h.window_end < ended_before
        RETURNING h.team, h.resource, h.window_start, h.window_end)
    SELECT count(*) INTO windows
      FROM (SELECT DISTINCT g.team, g.resource, g.window_start, g.window_end FROM gone g) w;
    DELETE FROM ONLY quota.events e WHERE e.resets_at < ended_before;
    RETURN windows;
END
$$;

COMMENT ON FUNCTION quota.purge_history(timestamptz)
    IS 'delete the history and alert events of windows that ended before the instant (also from windows rolled over later); returns how many windows';

SELECT pg_catalog.pg_extension_config_dump('quota.history', '');
SELECT pg_catalog.pg_extension_config_dump('quota.history_purged', '');
SELECT pg_catalog.pg_extension_config_dump('quota.alert_settings', '');
SELECT pg_catalog.pg_extension_config_dump('quota.events', '');
SELECT pg_catalog.pg_extension_config_dump('quota.events_id_seq', '');

REVOKE ALL ON quota.history, quota.history_purged, quota.alert_settings, quota.events, quota.events_id_seq FROM PUBLIC;
GRANT SELECT ON quota.usage_history, quota.events TO PUBLIC;
REVOKE EXECUTE ON FUNCTION quota.set_alerts(text, integer[], text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION quota.purge_holds(timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION quota.purge_history(timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION quota._alert_settings_changed() FROM PUBLIC;

--------------------------------------------------------------------------
-- Parent budgets (org > team > user) and concurrency caps.
--
-- quota.links holds, per account, its parent account (same resource) and
-- its cap on open holds; an account with neither has no row, and a
-- database where no account has one pays nothing for the feature.  Every
-- spending call on an account applies to it and each ancestor, all or
-- nothing, in the caller's transaction (locking the chain root first).
-- A hold made through parents is one hold row per account of the chain:
-- the child's (the reservation the caller gets) has origin = its own id,
-- each ancestor's has origin = that id, so commit and release settle on
-- the chain as it was when the hold was made.
--------------------------------------------------------------------------
CREATE TABLE quota.links (
    team           text NOT NULL,
    resource       text NOT NULL,
    parent         text,      -- the account also spends from (parent, resource)
    max_open_holds integer,   -- reserves are denied at this many unexpired open holds
    PRIMARY KEY (team, resource)
);

COMMENT ON TABLE quota.links IS 'quota: parents (quota.set_parent) and concurrency caps (quota.set_concurrency)';

-- set_parent() measures the subtree below an account.
CREATE INDEX links_parent ON quota.links (parent, resource) WHERE parent IS NOT NULL;

-- Backends cache each account's links; a change to them tells every backend.
CREATE TRIGGER links_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON quota.links
    FOR EACH STATEMENT EXECUTE FUNCTION quota._alert_settings_changed();

ALTER TABLE quota.holds ADD COLUMN origin bigint;
COMMENT ON COLUMN quota.holds.origin IS 'a hold made through parents: the reservation it belongs to (the child''s own id on the child''s hold)';
CREATE INDEX holds_origin ON quota.holds (origin) WHERE origin IS NOT NULL;

CREATE FUNCTION quota.set_parent(
    team text,
    parent text,
    resource text DEFAULT 'credits')
RETURNS void
AS 'MODULE_PATHNAME', 'quota_set_parent'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION quota.set_parent(text, text, text)
    IS 'the account also spends from (parent, resource); NULL detaches it; chains of at most 4 accounts, no cycles';

CREATE FUNCTION quota.set_concurrency(
    team text,
    max_open_holds integer,
    resource text DEFAULT 'credits')
RETURNS void
AS 'MODULE_PATHNAME', 'quota_set_concurrency'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION quota.set_concurrency(text, integer, text)
    IS 'deny reserves while the account has this many unexpired open holds (NULL: no cap)';

SELECT pg_catalog.pg_extension_config_dump('quota.links', '');
REVOKE ALL ON quota.links FROM PUBLIC;
GRANT SELECT ON quota.links TO PUBLIC;
REVOKE EXECUTE ON FUNCTION quota.set_parent(text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION quota.set_concurrency(text, integer, text) FROM PUBLIC;

--------------------------------------------------------------------------
-- Scale-out on Citus: quota.distribute(), run once on the coordinator.
--
-- Every table keyed by team is distributed by team, co-located with
-- quota.accounts, so that one team's accounts, holds, slots, links, alert
-- settings, events and history are on one shard and every call is a
-- single-shard transaction.  Unique keys must contain the distribution
-- column: holds and events get (id, team) as their primary key (ids stay
-- unique over the nodes: quota._cluster_id).  The purge watermark is a
-- reference table.  Every call runs where it is made (the coordinator):
-- each of its statements names the team, and Citus sends it to the
-- team's shard.  Nothing is half done: any error rolls the whole function
-- back.
--------------------------------------------------------------------------
--------------------------------------------------------------------------
-- quota.usage on a distributed quota: Citus runs the view's query on each
-- shard, where an account row has its shard table's row type, so
-- _account_state also takes any row (it reads the columns by name and
-- checks their types, as for quota.accounts).
--------------------------------------------------------------------------
CREATE FUNCTION quota._account_state(
    account record,
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

COMMENT ON FUNCTION quota._account_state(record, bigint, timestamptz, bigint, bigint)
    IS 'internal: one row of quota.usage, from a Citus shard''s row';

-- A node's ids on a distributed quota (reservations and events): bits
-- 52-62 the node's Citus group (0 to 2047), so that ids drawn from each
-- node's own sequence never meet, also when a shard moves to another node;
-- bits 44-51 the bucket of the team's hash (the top 8 bits of
-- hashtext(team) + 2^31, Citus's hash of a text team), which names the
-- shard that holds the team (for any power-of-two shard count up to 256),
-- so that commit_credit and release_credit, given only a reservation, reach
-- that shard in one hop; bits 0-43 the node's sequence.  (The
-- coordinator's ids made before quota.distribute() are the plain sequence.)
CREATE FUNCTION quota._cluster_id(local_id bigint, team text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    node bigint := (SELECT CAST(g.groupid AS pg_catalog.int8) FROM pg_catalog.pg_dist_local_group g);
BEGIN
    IF local_id OPERATOR(pg_catalog.>=) 17592186044416 THEN
        RAISE EXCEPTION 'quota ids on this node are used up' USING ERRCODE = '2200H';
    END IF;
    IF node OPERATOR(pg_catalog.>) 2047 THEN
        RAISE EXCEPTION 'quota ids cannot name Citus group %', node USING ERRCODE = '2200H',
            HINT = 'quota on Citus takes groups 0 to 2047.';
    END IF;
    RETURN node OPERATOR(pg_catalog.<<) 52
        OPERATOR(pg_catalog.|) (COALESCE((CAST(pg_catalog.hashtext(team) AS pg_catalog.int8)
                                          OPERATOR(pg_catalog.+) 2147483648) OPERATOR(pg_catalog.>>) 24, 0)
                                OPERATOR(pg_catalog.<<) 44)
        OPERATOR(pg_catalog.|) local_id;
END
$$;

COMMENT ON FUNCTION quota._cluster_id(bigint, text) IS 'internal: an id unique over a Citus cluster (quota.distribute())';
REVOKE EXECUTE ON FUNCTION quota._cluster_id(bigint, text) FROM PUBLIC;

-- On a distributed quota (quota.distribute()): the spending calls' twins,
-- which Citus runs on the worker that holds the team.  The public function
-- checks its arguments, then calls its twin with its transaction's time
-- (microseconds, as is every instant sent: no text a worker could read in
-- another DateStyle or TimeZone) and its settings; the twin replies with
-- the alert payloads it raised, which the public function notifies where it
-- was called.  In a schema of their own that PUBLIC cannot use: Citus plans
-- a delegated call before PostgreSQL checks EXECUTE, and Citus 13.0.5
-- crashes planning one whose distribution argument is NULL, so a role
-- that could name them could crash a node.
CREATE SCHEMA quota_internal;
COMMENT ON SCHEMA quota_internal IS 'internal to quota: what quota.distribute() has Citus run on the workers';
REVOKE ALL ON SCHEMA quota_internal FROM PUBLIC;

CREATE FUNCTION quota_internal.charge_credit_on_shard(team text, amount bigint, resource text, allow_overdraft boolean,
    caller_now bigint, settings text[],
    OUT granted boolean, OUT reservation bigint, OUT used bigint, OUT held bigint, OUT credit_limit bigint,
    OUT remaining bigint, OUT resets_at timestamptz, OUT retry_after integer, OUT notices text[])
    RETURNS record LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'quota_charge_credit_on_shard';
CREATE FUNCTION quota_internal.reserve_credit_on_shard(team text, amount bigint, resource text, expires_at bigint,
    idempotency_key text, caller_now bigint, settings text[],
    OUT granted boolean, OUT reservation bigint, OUT used bigint, OUT held bigint, OUT credit_limit bigint,
    OUT remaining bigint, OUT resets_at timestamptz, OUT retry_after integer, OUT notices text[])
    RETURNS record LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'quota_reserve_credit_on_shard';
CREATE FUNCTION quota_internal.commit_credit_on_shard(team text, reservation_id bigint, amount bigint,
    caller_now bigint, settings text[],
    OUT granted boolean, OUT reservation bigint, OUT used bigint, OUT held bigint, OUT credit_limit bigint,
    OUT remaining bigint, OUT resets_at timestamptz, OUT retry_after integer, OUT notices text[])
    RETURNS record LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'quota_commit_credit_on_shard';
CREATE FUNCTION quota_internal.release_credit_on_shard(team text, reservation bigint, caller_now bigint, settings text[])
    RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'quota_release_credit_on_shard';

-- The team of a reservation, looked up on the node that made it: a
-- reservation id carries the Citus group of the node that made it (the
-- team's worker, for one made by a twin), and Citus delegates this by
-- `route`, a value whose shard is on that node.  It reads that node's own
-- shards of quota.holds in one statement (the team is not known yet, so no
-- statement could name it); a row of NULLs: not there (a shard moved
-- since), and the caller asks every shard.
CREATE FUNCTION quota_internal.hold_team_on_node(route text, reservation bigint, OUT team text, OUT through_parents boolean)
    RETURNS record LANGUAGE c STABLE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'quota_hold_team_on_node';

-- commit_credit and release_credit in one hop: sent by `route`, a value of
-- the shard that the reservation id's bucket names (quota._cluster_id);
-- the node that holds that shard finds the hold in it and settles it on
-- its team's shards themselves (no statement Citus plans).  here = false
-- (release: NULL): not settled there (the hold is not in that shard, or
-- the shards cannot be proven to be that node's), and the caller finds the
-- team and sends the call by it instead.
CREATE FUNCTION quota_internal.commit_credit_on_node(route text, reservation_id bigint, amount bigint,
    caller_now bigint, settings text[],
    OUT granted boolean, OUT reservation bigint, OUT used bigint, OUT held bigint, OUT credit_limit bigint,
    OUT remaining bigint, OUT resets_at timestamptz, OUT retry_after integer, OUT notices text[], OUT here boolean)
    RETURNS record LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'quota_commit_credit_on_node';
CREATE FUNCTION quota_internal.release_credit_on_node(route text, reservation bigint, caller_now bigint, settings text[])
    RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'quota_release_credit_on_node';
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA quota_internal FROM PUBLIC;

CREATE FUNCTION quota.distribute()
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn pg_catalog.text;
    tbl text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'citus') THEN
        RAISE EXCEPTION 'quota.distribute() needs the citus extension'
            USING ERRCODE = '55000',
                  HINT = 'Run CREATE EXTENSION citus on the coordinator and every worker, add the workers, then call it.';
    END IF;
    IF NOT pg_catalog.citus_is_coordinator() THEN
        RAISE EXCEPTION 'quota.distribute() must run on the Citus coordinator'
            USING ERRCODE = '55000',
                  HINT = 'This node is a worker; connect to the coordinator.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p
                WHERE p.logicalrelid OPERATOR(pg_catalog.=) CAST('quota.accounts' AS pg_catalog.regclass)) THEN
        RAISE EXCEPTION 'quota is distributed already'
            USING ERRCODE = '55000';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p
                 JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.logicalrelid
                WHERE c.relnamespace OPERATOR(pg_catalog.=) CAST('quota' AS pg_catalog.regnamespace)) THEN
        RAISE EXCEPTION 'some of quota''s tables are distributed by hand'
            USING ERRCODE = '55000',
                  HINT = 'Undistribute them (undistribute_table) and let quota.distribute() distribute them all.';
    END IF;
    IF EXISTS (SELECT 1 FROM quota.accounts a WHERE a.slots OPERATOR(pg_catalog.>) 0)
       OR EXISTS (SELECT 1 FROM quota.slots s) THEN
        RAISE EXCEPTION 'quota cannot be distributed while accounts have slots'
            USING ERRCODE = '0A000',
                  DETAIL = 'On Citus an account is one row on its team''s shard; slots are not available there.',
                  HINT = 'Remove them with quota.set_slots(team, 0, resource) first, and set quota.auto_slots = 0.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_dist_node n WHERE n.groupid OPERATOR(pg_catalog.>) 2047) THEN
        RAISE EXCEPTION 'quota cannot be distributed on a cluster with Citus groups past 2047'
            USING ERRCODE = '0A000',
                  DETAIL = 'A reservation id carries the group of the node that made it in 11 bits (quota._cluster_id).';
    END IF;
    IF EXISTS (SELECT 1 FROM quota.links l WHERE l.parent IS NOT NULL) THEN
        RAISE EXCEPTION 'quota cannot be distributed while accounts have parents'
            USING ERRCODE = '0A000',
                  DETAIL = 'A parent budget spans several teams, and on Citus every quota call stays on one team''s shard.',
                  HINT = 'Detach them with quota.set_parent(team, NULL, resource) first.';
    END IF;

    -- Unique keys with the distribution column.
    ALTER TABLE quota.holds DROP CONSTRAINT holds_pkey;
    ALTER TABLE quota.holds ADD CONSTRAINT holds_pkey PRIMARY KEY (id, team);
    ALTER TABLE quota.events DROP CONSTRAINT events_pkey;
    ALTER TABLE quota.events ADD CONSTRAINT events_pkey PRIMARY KEY (id, team);

    -- The statement triggers that tell backends of a change go to the shards too.
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    PERFORM pg_catalog.set_config('client_min_messages', 'warning', true);
    PERFORM pg_catalog.create_distributed_table('quota.accounts', 'team', colocate_with => 'none');
    FOREACH tbl IN ARRAY ARRAY['holds', 'slots', 'links', 'alert_settings', 'events', 'history'] LOOP
        PERFORM pg_catalog.create_distributed_table(CAST('quota.' OPERATOR(pg_catalog.||) tbl AS pg_catalog.regclass),
                                                'team', colocate_with => 'quota.accounts');
    END LOOP;
    PERFORM pg_catalog.create_reference_table('quota.history_purged');

    -- The spending calls go to the worker that holds their team in one hop:
    -- quota.charge_credit() and the others check their arguments where they
    -- are called (a NULL team is refused there: Citus 13.0.5 crashes planning
    -- a delegated call whose distribution argument is NULL) and then call
    -- their twin, which Citus delegates by its first argument: the team (for
    -- hold_team_on_node and the *_on_node settles, a route to the node that
    -- made a reservation).
    FOREACH fn IN ARRAY ARRAY[
        'quota_internal.charge_credit_on_shard(text, bigint, text, boolean, bigint, text[])',
        'quota_internal.reserve_credit_on_shard(text, bigint, text, bigint, text, bigint, text[])',
        'quota_internal.commit_credit_on_shard(text, bigint, bigint, bigint, text[])',
        'quota_internal.release_credit_on_shard(text, bigint, bigint, text[])',
        'quota_internal.hold_team_on_node(text, bigint)',
        'quota_internal.commit_credit_on_node(text, bigint, bigint, bigint, text[])',
        'quota_internal.release_credit_on_node(text, bigint, bigint, text[])'] LOOP
        PERFORM pg_catalog.create_distributed_function(CAST(fn AS pg_catalog.regprocedure), '$1',
                                                      colocate_with => 'quota.accounts', force_delegation => true);
    END LOOP;
END
$$;

COMMENT ON FUNCTION quota.distribute()
    IS 'on a Citus coordinator: distribute every quota table by team, co-located, so that every call is a single-shard transaction';
REVOKE EXECUTE ON FUNCTION quota.distribute() FROM PUBLIC;
