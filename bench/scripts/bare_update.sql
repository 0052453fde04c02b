\set n random(1, :accounts)
UPDATE bench.bare SET used = used + 1 WHERE team = :n::text;
