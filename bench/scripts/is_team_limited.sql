\set n random(1, :accounts)
SELECT quota.is_team_limited('c' || :n::text);
