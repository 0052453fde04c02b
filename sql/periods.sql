-- Budget windows: anchor + k * period in UTC, whatever the session TimeZone.

-- Monthly from the 31st: clamped to short months, never drifting.
SELECT at AT TIME ZONE 'UTC' AS at, w.window_start AT TIME ZONE 'UTC' AS window_start, w.resets_at AT TIME ZONE 'UTC' AS resets_at
  FROM unnest(ARRAY['2024-01-31 00:00+00', '2024-02-15 12:00+00', '2024-02-29 00:00+00', '2024-03-30 23:59:59+00',
                    '2024-03-31 00:00+00', '2024-04-30 00:00+00', '2025-02-28 00:00+00', '2024-12-31 00:00+00',
                    '2023-12-31 00:00+00']::timestamptz[]) AS at,
       quota.window_at('2024-01-31 00:00+00', '1 month', at) w;

-- The same instants under other session time zones: the same windows (shown in UTC).
SET TimeZone = 'America/New_York';
SELECT w.window_start AT TIME ZONE 'UTC' AS window_start, w.resets_at AT TIME ZONE 'UTC' AS resets_at
  FROM quota.window_at('2024-01-31 00:00+00', '1 month', '2024-03-10 12:00+00') w;
SET TimeZone = 'Asia/Kolkata';
SELECT w.window_start AT TIME ZONE 'UTC' AS window_start, w.resets_at AT TIME ZONE 'UTC' AS resets_at
  FROM quota.window_at('2024-01-31 00:00+00', '1 month', '2024-03-10 12:00+00') w;
SET TimeZone = 'Pacific/Chatham';
SELECT w.window_start AT TIME ZONE 'UTC' AS window_start, w.resets_at AT TIME ZONE 'UTC' AS resets_at
  FROM quota.window_at('2024-01-31 00:00+00', '1 month', '2024-03-10 12:00+00') w;

-- Daily windows at 09:30 UTC across the US spring-forward night: always 24 hours long in UTC.
SET TimeZone = 'America/Los_Angeles';
SELECT at AT TIME ZONE 'UTC' AS at, w.window_start AT TIME ZONE 'UTC' AS window_start,
       w.resets_at AT TIME ZONE 'UTC' AS resets_at, w.resets_at - w.window_start AS length
  FROM unnest(ARRAY['2024-03-09 09:29:59+00', '2024-03-10 09:30:00+00', '2024-03-10 20:00:00+00',
                    '2024-03-11 09:30:00+00']::timestamptz[]) AS at,
       quota.window_at('2024-01-01 09:30+00', '1 day', at) w;
RESET TimeZone;

-- Other periods: weeks, hours, mixed fields, and the anchor's own instant.
SELECT p AS period, w.window_start AT TIME ZONE 'UTC' AS window_start, w.resets_at AT TIME ZONE 'UTC' AS resets_at
  FROM unnest(ARRAY['7 days', '1 hour', '90 minutes', '1 mon 1 day', '1 year']::interval[]) AS p,
       quota.window_at('2024-01-31 00:00+00', p, '2024-05-01 10:00+00') w;
SELECT * FROM quota.window_at('2024-01-31 00:00+00', '1 month', '2024-01-31 00:00+00');

-- An account's window is the one containing now(); resets_at is its end.
SELECT quota.set_account('monthly', 100, period => '1 month', anchor => '2020-01-31 00:00+00');
SELECT u.window_start = w.window_start AND u.resets_at = w.resets_at AS current_window,
       u.window_start <= now() AND now() < u.resets_at AS contains_now,
       extract(day FROM u.resets_at AT TIME ZONE 'UTC') =
         least(31, extract(day FROM (date_trunc('month', u.resets_at AT TIME ZONE 'UTC') + interval '1 month - 1 day'))) AS day_31_or_last
  FROM quota.usage u, quota.window_at('2020-01-31 00:00+00', '1 month', now()) w
 WHERE u.team = 'monthly';

-- Denied: retry_after is the whole seconds until resets_at (at least 1).
SELECT granted, used FROM quota.charge_credit('monthly', 100);
SELECT granted, resets_at = (SELECT resets_at FROM quota.usage WHERE team = 'monthly') AS resets_at_ok,
       retry_after = greatest(1, ceil(extract(epoch FROM resets_at - now())))::int AS retry_after_ok
  FROM quota.charge_credit('monthly', 1);
-- Granted calls carry no retry_after.
SELECT quota.set_account('monthly-spare', 100, period => '1 month');
SELECT granted, retry_after, resets_at IS NOT NULL AS has_reset FROM quota.reserve_credit('monthly-spare', 1);

-- Lazy rollover: wind the stored window back one period, as if a month passed with no call.
UPDATE quota.accounts SET window_start = window_start - interval '1 month', resets_at = window_start
 WHERE team = 'monthly';
SELECT u.used, u.held, u.limited, u.resets_at = w.resets_at AS current_window
  FROM quota.usage u, quota.window_at('2020-01-31 00:00+00', '1 month', now()) w WHERE u.team = 'monthly';
SELECT quota.is_team_limited('monthly');
SELECT used FROM quota.accounts WHERE team = 'monthly';
SELECT granted, used, remaining FROM quota.charge_credit('monthly', 5);
SELECT used, resets_at > now() AS stored_window_current FROM quota.accounts WHERE team = 'monthly';

-- Real time: one-second windows roll over between calls; holds survive and count in the new window.
SELECT quota.set_account('tick', 5, period => '1 second');
SELECT granted, used FROM quota.charge_credit('tick', 2);
SELECT reservation AS tick_hold FROM quota.reserve_credit('tick', 3, hold_for => NULL) \gset
SELECT granted, retry_after FROM quota.charge_credit('tick', 1);
SELECT pg_sleep(1.1);
SELECT used, held, remaining FROM quota.usage WHERE team = 'tick';
SELECT granted, used, held, remaining FROM quota.commit_credit(:tick_hold);

-- Changing the period keeps used and held; removing it makes the budget never reset.
SELECT quota.set_account('monthly', 100, period => '1 day', anchor => '2020-01-01 00:00+00');
SELECT used, period, resets_at - window_start AS length FROM quota.usage WHERE team = 'monthly';
SELECT quota.set_account('monthly', 100);
SELECT used, period, resets_at FROM quota.usage WHERE team = 'monthly';
SELECT granted, resets_at, retry_after FROM quota.charge_credit('monthly', 1000);

-- An anchor in the future: the grid extends backwards from it.
SELECT w.window_start AT TIME ZONE 'UTC' AS window_start, w.resets_at AT TIME ZONE 'UTC' AS resets_at
  FROM quota.window_at('2030-01-01 00:00+00', '1 day', '2029-12-30 12:00+00') w;
