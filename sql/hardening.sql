-- PostgreSQL's own promises hold on every path (issue 9).  Uses try() from
-- bad_input.sql: 'ok', or SQLSTATE: message | DETAIL | HINT.
SET TimeZone = 'UTC';
SELECT quota.set_account('ro', 100);
SELECT quota.set_account('ro-hot', 100);
SELECT quota.set_slots('ro-hot', 4);
SELECT reservation AS ro_hold FROM quota.reserve_credit('ro', 5) \gset
CREATE TEMP TABLE before AS
    SELECT (SELECT array_agg(row(a.*)::text ORDER BY team, resource) FROM quota.accounts a) AS accounts,
           (SELECT array_agg(row(h.*)::text ORDER BY id) FROM quota.holds h) AS holds,
           (SELECT array_agg(row(s.*)::text ORDER BY team, resource, slot) FROM quota.slots s) AS slots;
CREATE FUNCTION unchanged() RETURNS boolean LANGUAGE sql AS $$
    SELECT b.accounts IS NOT DISTINCT FROM (SELECT array_agg(row(a.*)::text ORDER BY team, resource) FROM quota.accounts a)
       AND b.holds IS NOT DISTINCT FROM (SELECT array_agg(row(h.*)::text ORDER BY id) FROM quota.holds h)
       AND b.slots IS NOT DISTINCT FROM (SELECT array_agg(row(s.*)::text ORDER BY team, resource, slot) FROM quota.slots s)
      FROM before b $$;

-- 1. A read-only transaction refuses every writing call (25006), slotted or not; reads work.
BEGIN READ ONLY;
SELECT try($$SELECT quota.charge_credit('ro', 5)$$);
SELECT try($$SELECT quota.charge_credit('ro-hot', 5)$$);
SELECT try($$SELECT quota.charge_credit('ro', 5, allow_overdraft => true)$$);
SELECT try($$SELECT quota.reserve_credit('ro-hot', 1)$$);
SELECT try(format($$SELECT quota.commit_credit(%s)$$, :ro_hold));
SELECT try(format($$SELECT quota.release_credit(%s)$$, :ro_hold));
SELECT try($$SELECT quota.set_account('ro', 1)$$);
SELECT try($$SELECT quota.set_slots('ro', 2)$$);
SELECT try($$SELECT quota.expire_holds()$$);
SELECT quota.is_team_limited('ro'), quota.is_team_limited('ro-hot');
SELECT team, used, held, remaining FROM quota.usage WHERE team LIKE 'ro%' ORDER BY team;
COMMIT;
SET default_transaction_read_only = on;
SELECT try($$SELECT quota.charge_credit('ro', 5)$$);
SELECT try($$SELECT quota.set_account('ro', 1)$$);
RESET default_transaction_read_only;
SELECT unchanged();

CREATE EXTENSION IF NOT EXISTS amcheck;
-- 2. What a superuser adds to the tables is honoured on every path.
SELECT quota.set_account('dba', 1000);
-- A CHECK constraint: the charge that would break it fails as an UPDATE would, and changes nothing.
ALTER TABLE quota.accounts ADD CONSTRAINT used_within CHECK (team <> 'dba' OR used <= 100);
SELECT granted, used FROM quota.charge_credit('dba', 100);
SELECT split_part(try($$SELECT quota.charge_credit('dba', 1)$$), ' | ', 1);
SELECT used FROM quota.usage WHERE team = 'dba';
ALTER TABLE quota.accounts DROP CONSTRAINT used_within;
-- A stored generated column is computed for the extension's updates too.
ALTER TABLE quota.accounts ADD COLUMN taken bigint GENERATED ALWAYS AS (used + held) STORED;
SELECT granted, used FROM quota.charge_credit('dba', 1);
SELECT granted, used, held FROM quota.reserve_credit('dba', 2);
SELECT used, held, taken FROM quota.accounts WHERE team = 'dba';
ALTER TABLE quota.accounts DROP COLUMN taken;
-- A rule fires.
CREATE TABLE rule_log (team text, used bigint);
CREATE RULE log_used AS ON UPDATE TO quota.accounts DO ALSO INSERT INTO rule_log VALUES (NEW.team, NEW.used);
SELECT granted, used FROM quota.charge_credit('dba', 1);
SELECT * FROM rule_log;
DROP RULE log_used ON quota.accounts;
DROP TABLE rule_log;
-- REPLICA IDENTITY NOTHING on a table published for updates: updates are refused, as PostgreSQL refuses them.
ALTER TABLE quota.accounts REPLICA IDENTITY NOTHING;
SET client_min_messages = error;
CREATE PUBLICATION quota_pub FOR TABLE quota.accounts;
RESET client_min_messages;
SELECT try($$SELECT quota.charge_credit('dba', 1)$$);
DROP PUBLICATION quota_pub;
ALTER TABLE quota.accounts REPLICA IDENTITY DEFAULT;
-- A column type change: values are converted, never read as another type.
-- (PostgreSQL refuses it under a view that reads the column: quota.usage_history is set aside meanwhile.)
CREATE TEMP TABLE saved_view AS SELECT pg_get_viewdef('quota.usage_history'::regclass) AS definition;
ALTER EXTENSION quota DROP VIEW quota.usage_history;
DROP VIEW quota.usage_history;
ALTER TABLE quota.accounts ALTER COLUMN used TYPE numeric;
SELECT granted, used FROM quota.charge_credit('dba', 1);
SELECT granted, used, held FROM quota.reserve_credit('dba', 2);
SELECT quota.is_team_limited('dba');
SELECT try($$SELECT used FROM quota.usage WHERE team = 'dba'$$);
SELECT team, used FROM quota.accounts WHERE team = 'dba';
ALTER TABLE quota.accounts ALTER COLUMN used TYPE bigint;
\set ECHO none
SELECT format('CREATE VIEW quota.usage_history AS %s', definition) FROM saved_view \gexec
\set ECHO all
ALTER EXTENSION quota ADD VIEW quota.usage_history;
GRANT SELECT ON quota.usage_history TO PUBLIC;
SELECT used, held FROM quota.usage WHERE team = 'dba';
-- Slots: a CHECK constraint on quota.slots is honoured by slotted calls too.
ALTER TABLE quota.slots ADD CONSTRAINT small_slots CHECK (team <> 'ro-hot' OR used < 3);
SELECT granted, used FROM quota.charge_credit('ro-hot', 2);
SELECT split_part(try($$SELECT quota.charge_credit('ro-hot', 1)$$), ' | ', 1);
ALTER TABLE quota.slots DROP CONSTRAINT small_slots;
SELECT granted, used FROM quota.charge_credit('ro-hot', 1);
SELECT bt_index_check(c.oid, true) FROM pg_class c
 WHERE c.relnamespace = 'quota'::regnamespace AND c.relkind = 'i' ORDER BY c.relname;

-- 4. Window arithmetic never wraps: out of range is 22008 naming the argument.
SELECT * FROM quota.window_at('1000-01-01+00', '1 day', '294276-12-30+00');
SELECT try($$SELECT quota.window_at('2000-01-01+00', '1 month', '294276-12-15+00')$$);
SELECT try($$SELECT quota.window_at('2000-01-01+00', make_interval(years => 1000000, hours => 1482371152) + interval '219.103232 seconds', '2001-01-01+00')$$);
SELECT split_part(try($$SELECT quota.set_account('far', 10, period => make_interval(years => 1000000, hours => 1482371152) + interval '219.103232 seconds', anchor => '2000-01-01+00')$$), ' | ', 1);
SELECT split_part(try($$SELECT quota.set_account('far', 10, period => '300000 years', anchor => '4713-01-01 00:00+00 BC')$$), ' | ', 1);
-- Accounts near the ends of the range work while their windows fit.
SELECT quota.set_account('far', 10, period => '1 day', anchor => '294276-12-31 12:00+00');
SELECT quota.set_account('far', 10, period => '290000 years', anchor => '4713-01-01 00:00+00 BC');
SELECT window_start, resets_at FROM quota.usage WHERE team = 'far';
SELECT try($$SELECT quota.window_at('4713-01-01 00:00+00 BC', '1 microsecond', '294276-12-31 23:59:59+00')$$);
SELECT try($$SELECT quota.reserve_credit('ro', 1, hold_for => '1000000 years')$$);
SELECT try($$SET quota.default_period = '1000000 years'$$);
SELECT try($$SET quota.default_period = '2147483647 months'$$);
SELECT count(*) FROM quota.accounts WHERE team = 'far';

-- 5. Over-long input is refused before it reaches an index (22023).
SELECT try($$SELECT quota.charge_credit(repeat('t', 257))$$);
SELECT try($$SELECT quota.charge_credit(repeat('t', 1000000))$$);
SELECT try($$SELECT quota.charge_credit('ro', 1, repeat('r', 257))$$);
SELECT try($$SELECT quota.is_team_limited(repeat('t', 300))$$);
SELECT try($$SELECT quota.reserve_credit('ro', 1, idempotency_key => repeat('k', 513))$$);
SELECT try($$SELECT quota.reserve_credit('ro', 1, idempotency_key => repeat('k', 6400))$$);
SELECT try(format($$SELECT quota.set_account(%L, 1)$$, repeat(convert_from('\xc3bc', 'UTF8'), 129)));
-- The limits themselves are fine.
SELECT try($$SELECT quota.set_account(repeat('t', 256), 1)$$);
SELECT granted FROM quota.reserve_credit(repeat('t', 256), 1, idempotency_key => repeat('k', 512));

-- 6. An unknown account's message is valid in the client's encoding, whatever the team's name.
SET client_encoding = 'LATIN1';
SELECT try(format($$SELECT quota.charge_credit(%L)$$, repeat(convert_from('\xc3bc', 'UTF8'), 128))) LIKE 'P0002%' AS unknown_latin1;
SELECT try(format($$SELECT quota.charge_credit(%L)$$, convert_from('\xe697a5e69cac'::bytea, 'UTF8'))) AS unconvertible;
RESET client_encoding;

-- 7. A denied call creates nothing, with or without default settings.
SET quota.default_limit = 0;
SELECT granted, used, credit_limit FROM quota.reserve_credit('newcomer', 1);
SELECT granted FROM quota.charge_credit('newcomer', 1);
SELECT count(*) FROM quota.accounts WHERE team = 'newcomer';
SELECT granted, used FROM quota.charge_credit('newcomer', 1, allow_overdraft => true);
RESET quota.default_limit;

-- 8. set_account without an anchor keeps the billing grid; with one, moves it.
SELECT quota.set_account('grid', 100, period => '1 month', anchor => '2024-01-01 00:00+00');
SELECT anchor, extract(day FROM window_start) AS window_day FROM quota.accounts WHERE team = 'grid';
SELECT quota.set_account('grid', 200, period => '1 month');
SELECT credit_limit, anchor, extract(day FROM window_start) AS window_day FROM quota.accounts WHERE team = 'grid';
SELECT quota.set_account('grid', 200, period => '1 month', anchor => '2024-01-15 00:00+00');
SELECT anchor, extract(day FROM window_start) AS window_day FROM quota.accounts WHERE team = 'grid';
BEGIN;
SELECT quota.set_account('grid-new', 1, period => '1 day');
SELECT anchor = now() AS new_account_anchors_now FROM quota.accounts WHERE team = 'grid-new';
COMMIT;

-- Found by review: more that a superuser can add, each honoured.
-- A publication row filter on a column outside the replica identity (ALTER PUBLICATION takes no lock a writer holds).
SET client_min_messages = error;
CREATE PUBLICATION quota_filter FOR TABLE quota.accounts WHERE (used < 100000);
RESET client_min_messages;
SELECT split_part(try($$SELECT quota.charge_credit('dba', 1)$$), ' | ', 1);
DROP PUBLICATION quota_filter;
-- A typmod: the value is rounded as an UPDATE rounds it.
ALTER TABLE quota.accounts ALTER COLUMN anchor TYPE timestamptz(0);
SELECT quota.set_account('typmod', 100, period => '1 day', anchor => '2026-01-01 00:00:00.654321+00');
SELECT quota.set_account('typmod', 100, period => '1 day', anchor => '2026-01-01 00:00:00.654321+00');
SELECT anchor FROM quota.accounts WHERE team = 'typmod';
ALTER TABLE quota.accounts ALTER COLUMN anchor TYPE timestamptz;
-- An identity column: updates of it are refused, as UPDATE refuses them.
ALTER TABLE quota.accounts ALTER COLUMN held DROP DEFAULT;
ALTER TABLE quota.accounts ALTER COLUMN held ADD GENERATED ALWAYS AS IDENTITY;
SELECT split_part(try($$SELECT quota.reserve_credit('dba', 1)$$), ' | ', 1);
ALTER TABLE quota.accounts ALTER COLUMN held DROP IDENTITY;
ALTER TABLE quota.accounts ALTER COLUMN held SET DEFAULT 0;
-- quota.accounts attached as a partition: the partition constraint is checked.
CREATE TABLE public.accounts_parent (LIKE quota.accounts) PARTITION BY RANGE (used);
DO $$ BEGIN
    EXECUTE format('ALTER TABLE public.accounts_parent ATTACH PARTITION quota.accounts FOR VALUES FROM (MINVALUE) TO (%s)',
                   (SELECT max(used) + 10 FROM quota.accounts));
END $$;
SELECT split_part(try($$SELECT quota.charge_credit('dba', 1000000, allow_overdraft => true)$$), ' | ', 1);
SELECT granted FROM quota.charge_credit('dba', 1);
ALTER TABLE public.accounts_parent DETACH PARTITION quota.accounts;
DROP TABLE public.accounts_parent;
-- Beyond the Basic Multilingual Plane, escaped unambiguously for a LATIN1 client.
SET client_encoding = 'LATIN1';
SELECT split_part(try(format($$SELECT quota.charge_credit(%L)$$, convert_from('\xf09f9880'::bytea, 'UTF8') || 'x')), ' | ', 1) AS emoji;
RESET client_encoding;
SELECT bt_index_check(c.oid, true) FROM pg_class c
 WHERE c.relnamespace = 'quota'::regnamespace AND c.relkind = 'i' ORDER BY c.relname;

-- Found by test/fuzz.py: credits a slot frees while its account is over the
-- limit (a lowered limit, an overdraft) never come back to the slot's share.
SELECT quota.set_account('r5', 10);
SELECT quota.set_slots('r5', 4);
SELECT reservation AS r5_hold FROM quota.reserve_credit('r5', 5) \gset
SELECT quota.set_account('r5', 1);
SELECT quota.release_credit(:r5_hold);
SELECT granted, used FROM quota.charge_credit('r5', 1);
SELECT granted, used FROM quota.charge_credit('r5', 1);
SELECT used, held, credit_limit FROM quota.usage WHERE team = 'r5';
-- The same from unlimited to a limit of 0, with a commit of nothing.
SELECT quota.set_account('r6', 0, unlimited => true);
SELECT quota.set_slots('r6', 4);
SELECT reservation AS r6_hold FROM quota.reserve_credit('r6', 5) \gset
SELECT quota.set_account('r6', 0);
SELECT granted, used FROM quota.commit_credit(:r6_hold, 0);
SELECT granted, used FROM quota.charge_credit('r6', 1);
SELECT sum(share) FILTER (WHERE share > 0) AS grantable FROM quota.slots WHERE team IN ('r5', 'r6');

DROP FUNCTION unchanged();
DROP EXTENSION amcheck;
