\set n random(1, :accounts)
SELECT bench.read_then_write(:n::text);
