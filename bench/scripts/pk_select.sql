\set n random(1, :accounts)
SELECT used FROM bench.bare WHERE team = :n::text;
