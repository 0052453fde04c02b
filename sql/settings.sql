-- quota.default_limit / quota.default_period: accounts created on first use.

-- Set before the library is loaded in this session, the setting is adopted when it loads.
SET quota.default_limit = 2;
SELECT granted, credit_limit FROM quota.charge_credit('early');
SHOW quota.default_limit;
RESET quota.default_limit;
SHOW quota.default_limit;
SHOW quota.default_period;
SELECT quota.charge_credit('newcomer');
SELECT quota.is_team_limited('newcomer');

SET quota.default_limit = 3;
-- is_team_limited answers as a fresh account would, and creates nothing.
SELECT quota.is_team_limited('newcomer');
SELECT count(*) FROM quota.accounts WHERE team = 'newcomer';
-- Spending calls create the account with the default limit.
SELECT granted, used, held, credit_limit, remaining, resets_at, retry_after FROM quota.charge_credit('newcomer', 2);
SELECT granted, used, held, credit_limit, remaining FROM quota.reserve_credit('newcomer', 2);
SELECT granted, reservation IS NOT NULL AS has_id, held FROM quota.reserve_credit('newcomer', 1, 'ai_credits');
SELECT team, resource, credit_limit, period FROM quota.usage WHERE team = 'newcomer' ORDER BY resource;
-- commit and release never create accounts (they name reservations).
SELECT quota.commit_credit(987654);

-- A default period makes new accounts reset, anchored at their creation.
SET quota.default_period = '1 day';
SELECT granted, resets_at - now() AS until_reset FROM quota.charge_credit('daily-newcomer');
SELECT period, window_start = anchor AS anchored_at_creation, created FROM quota.accounts, LATERAL (SELECT anchor > now() - interval '1 minute' AS created) c WHERE team = 'daily-newcomer';
-- Explicit accounts are not affected by the defaults.
SELECT quota.set_account('explicit', 1);
SELECT credit_limit, period FROM quota.usage WHERE team = 'explicit';

-- A default limit of zero: fresh accounts are limited, spending is denied, and a denial creates nothing.
SET quota.default_limit = 0;
SELECT quota.is_team_limited('broke');
SELECT granted, used, credit_limit, remaining, retry_after > 0 AS retry_later FROM quota.charge_credit('broke');
SELECT count(*) FROM quota.accounts WHERE team = 'broke';

-- Invalid values are refused when set.
SET quota.default_limit = -1;
SET quota.default_limit = 'lots';
SET quota.default_limit = '99999999999999999999';
SET quota.default_period = '-1 day';
SET quota.default_period = '0';
SET quota.default_period = 'fortnightly';
SET quota.default_limit = '9223372036854775807';
SHOW quota.default_limit;
SET quota.default_period = 'P1M';
SHOW quota.default_period;
-- Unknown settings under the quota. prefix are errors, not silent typos.
SET quota.default_limt = 5;

RESET quota.default_limit;
RESET quota.default_period;
SELECT quota.charge_credit('stranger');
