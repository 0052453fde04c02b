-- quota writes quota.accounts rows directly while the table is as the
-- extension made it.  A trigger or an index that a DBA adds switches the
-- writes back to SQL, so nothing added to the table is bypassed.
CREATE EXTENSION amcheck;
SELECT quota.set_account('direct', 1000000);

-- Many updates of one row: pages fill, some updates are not HOT, and the
-- primary key must still have an entry for every row version.
DO $$ BEGIN FOR i IN 1..2000 LOOP PERFORM quota.charge_credit('direct'); END LOOP; END $$;
SELECT used FROM quota.usage WHERE team = 'direct';
SELECT bt_index_check('quota.accounts_pkey', heapallindexed => true);
SET enable_seqscan = off;
SELECT team, used FROM quota.accounts WHERE team = 'direct' AND resource = 'credits';
RESET enable_seqscan;

-- A trigger on the table fires for the extension's own updates.
CREATE TABLE account_log (team text, used bigint);
CREATE FUNCTION log_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_log VALUES (NEW.team, NEW.used);
    RETURN NEW;
END $$;
CREATE TRIGGER log_account AFTER UPDATE ON quota.accounts FOR EACH ROW EXECUTE FUNCTION log_account();
SELECT granted, used FROM quota.charge_credit('direct', 5);
SELECT reservation AS r FROM quota.reserve_credit('direct', 3) \gset
SELECT granted, used, held FROM quota.commit_credit(:r);
SELECT * FROM account_log ORDER BY used;
DROP TRIGGER log_account ON quota.accounts;
SELECT granted, used FROM quota.charge_credit('direct', 5);
SELECT count(*) FROM account_log;

-- An index added on a column the extension updates is maintained.
CREATE INDEX accounts_used ON quota.accounts (used);
DO $$ BEGIN FOR i IN 1..500 LOOP PERFORM quota.charge_credit('direct'); END LOOP; END $$;
SET enable_seqscan = off;
SELECT team, used FROM quota.accounts WHERE used = (SELECT used FROM quota.usage WHERE team = 'direct');
RESET enable_seqscan;
SELECT bt_index_check('quota.accounts_used', heapallindexed => true);
DROP INDEX quota.accounts_used;
SELECT granted, used FROM quota.charge_credit('direct', 1);
SELECT bt_index_check('quota.accounts_pkey', heapallindexed => true);

DROP TABLE account_log;
DROP FUNCTION log_account();
DROP EXTENSION amcheck;
