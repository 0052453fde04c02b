-- set_account creates and updates budgets; quota.usage and is_team_limited read them.
SELECT quota.set_account('acme', 100);
SELECT team, resource, credit_limit, used, held, remaining, unlimited, period, resets_at, limited
  FROM quota.usage WHERE team = 'acme';
SELECT quota.is_team_limited('acme');

-- Per-resource budgets are separate accounts.
SELECT quota.set_account('acme', 2, 'remix');
SELECT granted, used, remaining FROM quota.charge_credit('acme', 2, 'remix');
SELECT quota.is_team_limited('acme', 'remix'), quota.is_team_limited('acme');
SELECT team, resource, used, remaining, limited FROM quota.usage WHERE team = 'acme' ORDER BY resource;

-- Updating keeps used and held of the current window.
SELECT granted, reservation, used, held FROM quota.reserve_credit('acme', 10);
SELECT granted, used, held FROM quota.charge_credit('acme', 30);
SELECT quota.set_account('acme', 500);
SELECT credit_limit, used, held, remaining, limited FROM quota.usage WHERE team = 'acme' AND resource = 'credits';

-- Lowering the limit below used + held simply makes the team limited.
SELECT quota.set_account('acme', 35);
SELECT credit_limit, used, held, remaining, limited FROM quota.usage WHERE team = 'acme' AND resource = 'credits';
SELECT quota.is_team_limited('acme');
SELECT granted, used, held, credit_limit, remaining FROM quota.charge_credit('acme', 1);
SELECT quota.set_account('acme', 100);

-- A limit of zero: every spend is denied, the team is limited from the start.
SELECT quota.set_account('zero', 0);
SELECT quota.is_team_limited('zero');
SELECT granted, used, held, credit_limit, remaining FROM quota.charge_credit('zero');

-- Unlimited accounts grant everything and are still metered.
SELECT quota.set_account('bigco', 0, unlimited => true);
SELECT * FROM quota.charge_credit('bigco', 1000000);
SELECT granted, reservation, used, held, credit_limit, remaining, retry_after FROM quota.reserve_credit('bigco', 5000);
SELECT credit_limit, used, held, remaining, unlimited, limited FROM quota.usage WHERE team = 'bigco';
SELECT quota.is_team_limited('bigco');

-- An unlimited account that becomes limited keeps its metered usage.
SELECT quota.set_account('bigco', 2000000);
SELECT credit_limit, used, held, remaining, unlimited, limited FROM quota.usage WHERE team = 'bigco';
SELECT granted, used, remaining FROM quota.charge_credit('bigco', 995001);
SELECT granted, used, remaining FROM quota.charge_credit('bigco', 995000);

-- Named arguments in any order, as applications call them.
SELECT quota.set_account(team => 'named', resource => 'ai_credits', credit_limit => 7);
SELECT granted, used, remaining FROM quota.charge_credit(resource => 'ai_credits', team => 'named', amount => 7);
SELECT quota.is_team_limited(resource => 'ai_credits', team => 'named');

-- The stored rows: one per account.
SELECT team, resource, credit_limit, unlimited, used, held FROM quota.accounts ORDER BY team, resource;
