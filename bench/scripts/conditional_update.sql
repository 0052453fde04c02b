\set n random(1, :accounts)
UPDATE bench.cond SET used = used + 1 WHERE team = :n::text AND used + 1 <= credit_limit RETURNING used;
