\set n random(1, :accounts)
WITH a AS (UPDATE bench.hacc SET held = held + 1 WHERE team = :n::text AND used + held + 1 <= credit_limit RETURNING team), h AS (INSERT INTO bench.hholds (team, resource, amount, created_at, expires_at) SELECT a.team, 'credits', 1, now(), now() + interval '15 minutes' FROM a RETURNING id) SELECT coalesce(max(id), 0) AS r FROM h \gset
\if :r
WITH s AS (UPDATE bench.hholds SET state = 'committed', settled_at = now(), committed = amount WHERE id = :r AND state = 'open' RETURNING team, amount) UPDATE bench.hacc SET held = bench.hacc.held - s.amount, used = bench.hacc.used + s.amount FROM s WHERE bench.hacc.team = s.team;
\endif
