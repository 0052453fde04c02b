-- Benchmark fixtures: every contender gets its own rows, so contenders never
-- wait for each other's locks. Teams are '1'..'10000'; HOT runs use team '1' only.
-- psql -v accounts=10000 -v limit=... -v used=... -v slots=N (N > 0: accounts c1 and r1 get N slots) -v alerts=on|off
--      -v tree=N (N > 0: accounts c1..cN under parent 'corg', r1..rN under 'rorg', for TREE)
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS bench CASCADE;
DROP EXTENSION IF EXISTS quota;
CREATE EXTENSION quota;
CREATE SCHEMA bench;

-- The hand-written alternatives, each on a table of the shape users write.
CREATE TABLE bench.bare (team text PRIMARY KEY, used bigint NOT NULL, credit_limit bigint NOT NULL);
CREATE TABLE bench.rtw  (LIKE bench.bare INCLUDING ALL);
CREATE TABLE bench.lock (LIKE bench.bare INCLUDING ALL);
CREATE TABLE bench.cond (LIKE bench.bare INCLUDING ALL);

INSERT INTO bench.bare SELECT g::text, :used, :limit FROM generate_series(1, :accounts) g;
INSERT INTO bench.rtw  SELECT * FROM bench.bare;
INSERT INTO bench.lock SELECT * FROM bench.bare;
INSERT INTO bench.cond SELECT * FROM bench.bare;

-- Read, then write: what most code does today (and why it overspends).
CREATE FUNCTION bench.read_then_write(t text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    u bigint;
    l bigint;
BEGIN
    SELECT used, credit_limit INTO u, l FROM bench.rtw WHERE team = t;
    IF u + 1 <= l THEN
        UPDATE bench.rtw SET used = used + 1 WHERE team = t;
        RETURN true;
    END IF;
    RETURN false;
END $$;

-- The same with a row lock: correct, two statements.
CREATE FUNCTION bench.for_update(t text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    u bigint;
    l bigint;
BEGIN
    SELECT used, credit_limit INTO u, l FROM bench.lock WHERE team = t FOR UPDATE;
    IF u + 1 <= l THEN
        UPDATE bench.lock SET used = used + 1 WHERE team = t;
        RETURN true;
    END IF;
    RETURN false;
END $$;

-- A reservation by hand, the fewest statements the same durable rows take: an account row with
-- `held`, and a hold row in a copy of quota.holds (its columns, defaults and indexes, its own id
-- sequence), reserved with one statement and committed with one (hand_reservation.sql).
CREATE TABLE bench.hacc (team text PRIMARY KEY, used bigint NOT NULL, held bigint NOT NULL,
                         credit_limit bigint NOT NULL);
INSERT INTO bench.hacc SELECT g::text, :used, 0, :limit FROM generate_series(1, :accounts) g;
CREATE TABLE bench.hholds (LIKE quota.holds INCLUDING DEFAULTS INCLUDING INDEXES);
CREATE SEQUENCE bench.hholds_id_seq;
ALTER TABLE bench.hholds ALTER COLUMN id SET DEFAULT nextval('bench.hholds_id_seq');

-- quota accounts: c* for charge_credit and is_team_limited, r* for reserve + commit.
SELECT count(quota.set_account(p || g, :limit)) FROM generate_series(1, :accounts) g, unnest(ARRAY['c', 'r']) p;
-- a*: the same with alert thresholds of their own that the benchmark never reaches (ALERTS; -v alerts=on).
SELECT count(quota.set_account('a' || g, :limit)) FROM generate_series(1, :accounts) g WHERE :'alerts' = 'on';
SELECT count(quota.set_alerts('a' || g, '{80,100}')) FROM generate_series(1, :accounts) g WHERE :'alerts' = 'on';
UPDATE quota.accounts SET used = :used;
-- The hot accounts split into slots (quota.set_slots), for the HOT-SLOTS workload.
SELECT quota.set_slots(t, :slots) FROM unnest(ARRAY['c1', 'r1']) t WHERE :slots > 0;
-- TREE: the first :tree teams of each kind under one org each (quota.set_parent), and as many
-- parentless accounts fc*/fr* beside them (flat_charge.sql, flat_reserve_commit.sql), so that the
-- calls with and without a parent take turns in the same rounds.
SELECT count(quota.set_account(p || 'org', :limit)) FROM unnest(ARRAY['c', 'r']) p WHERE :tree > 0;
SELECT count(quota.set_parent(p || g, p || 'org')) FROM generate_series(1, :tree) g, unnest(ARRAY['c', 'r']) p;
SELECT count(quota.set_account(p || g, :limit)) FROM generate_series(1, :tree) g, unnest(ARRAY['fc', 'fr']) p;
VACUUM ANALYZE;
CHECKPOINT;
