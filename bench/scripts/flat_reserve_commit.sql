\set n random(1, :accounts)
SELECT granted, coalesce(reservation, 0) AS r FROM quota.reserve_credit('fr' || :n::text) \gset
\if :granted
SELECT granted FROM quota.commit_credit(:r);
\endif
