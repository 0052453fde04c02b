-- A chat app meters AI messages per team: 5 credits a month, billed from the 1st.
CREATE EXTENSION quota;
SELECT quota.set_account('acme', 5, period => '1 month', anchor => '2024-01-01 00:00+00');

-- Before calling the model: reserve a credit (held for 15 minutes by default).
SELECT * FROM quota.reserve_credit('acme');
-- The model answered: commit what was actually used.
SELECT * FROM quota.commit_credit(1);

-- The model failed: release the hold, nothing is spent.
SELECT * FROM quota.reserve_credit('acme');
SELECT quota.release_credit(2);

-- One-shot spends; the third is denied and says when to retry (seconds until the reset).
SELECT granted, used, remaining, resets_at, retry_after FROM quota.charge_credit('acme', 2);
SELECT granted, used, remaining, resets_at, retry_after FROM quota.charge_credit('acme', 2);
SELECT granted, used, remaining, resets_at, retry_after FROM quota.charge_credit('acme', 2);

-- An LLM gateway asks, without taking any lock:
SELECT quota.is_team_limited('acme');

-- The team upgrades mid-month: a bigger limit, same billing day (the anchor is kept).
SELECT quota.set_account('acme', 8, period => '1 month');
SELECT credit_limit, used, remaining, resets_at FROM quota.usage WHERE team = 'acme' AND resource = 'credits';
SELECT quota.set_account('acme', 5, period => '1 month');

-- A read-only transaction (or a standby) can ask, but never spend.
\set ON_ERROR_STOP 0
BEGIN READ ONLY;
SELECT quota.is_team_limited('acme');
SELECT quota.charge_credit('acme');
ROLLBACK;
\set ON_ERROR_STOP 1

-- Retried requests carry an idempotency key: the retry gets the same reservation.
SELECT quota.set_account('acme', 100, 'remix', period => '1 day', anchor => '2024-01-01 00:00+00');
SELECT reservation, held FROM quota.reserve_credit('acme', 3, 'remix', idempotency_key => 'req-7f3a');
SELECT reservation, held FROM quota.reserve_credit('acme', 3, 'remix', idempotency_key => 'req-7f3a');

-- An unlimited plan is still metered.
SELECT quota.set_account('bigco', 0, unlimited => true);
SELECT granted, used, credit_limit, remaining FROM quota.charge_credit('bigco', 250);

-- One very busy team: split its account into slots, so concurrent calls do not take turns.
SELECT quota.set_slots('bigco', 8);
SELECT granted, used, remaining FROM quota.charge_credit('bigco', 5);
SELECT slot, used, held, share FROM quota.slots WHERE team = 'bigco' ORDER BY slot;

-- Budgets that nest: an org's monthly credits, a team's share, one user key with at most 2 requests in flight.
SELECT quota.set_account('globex', 50, period => '1 month');
SELECT quota.set_account('globex/search', 30);
SELECT quota.set_account('key_9b1e', 1000, period => '1 day');
SELECT quota.set_parent('globex/search', 'globex');
SELECT quota.set_parent('key_9b1e', 'globex/search');
SELECT quota.set_concurrency('key_9b1e', 2);
-- Each reserve holds on the key, the team and the org at once; the third is over the cap.
SELECT granted, reservation, held, remaining, retry_after FROM quota.reserve_credit('key_9b1e', 10, hold_for => '1 minute');
SELECT granted, reservation, held, remaining, retry_after FROM quota.reserve_credit('key_9b1e', 10, hold_for => '1 minute');
SELECT granted, reservation, held, remaining, retry_after FROM quota.reserve_credit('key_9b1e', 10, hold_for => '1 minute');
-- The team's 30 are nearly gone: a charge of 15 is refused by it, and nothing changes anywhere.
SELECT granted, used, remaining FROM quota.charge_credit('key_9b1e', 15);
SELECT team, parent, max_open_holds FROM quota.links ORDER BY team;

-- What operators look at.
SELECT team, resource, credit_limit, used, held, remaining, unlimited, period, resets_at, limited
  FROM quota.usage ORDER BY team, resource;
SELECT id, team, resource, amount, state, expires_at FROM quota.holds ORDER BY id;
