\set n random(1, :accounts)
SELECT granted FROM quota.charge_credit('fc' || :n::text);
