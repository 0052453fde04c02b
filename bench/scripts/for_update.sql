\set n random(1, :accounts)
SELECT bench.for_update(:n::text);
