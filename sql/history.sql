-- 1.2: usage history, retention and alerts (README, "History, retention
-- and alerts").  Single-session behaviour; the races are in
-- test/specs/alerts_*.spec, history_*.spec, purge_*.spec and the stress audit.
SET TimeZone = 'UTC';
-- An ended window, without waiting for it: move the account's stored window (its slots', its events') one period back.
CREATE FUNCTION age_window(t text, by_ interval DEFAULT '1 day') RETURNS void LANGUAGE sql AS $$
    UPDATE quota.accounts SET window_start = window_start - by_, resets_at = resets_at - by_,
                              anchor = anchor - by_ WHERE team = t;
    UPDATE quota.slots SET window_start = window_start - by_, resets_at = resets_at - by_ WHERE team = t;
    UPDATE quota.events SET window_start = window_start - by_, resets_at = resets_at - by_ WHERE team = t;
$$;

-- History: a closed window is in quota.usage_history before any call rolls it over, and after.
SELECT quota.set_account('hist', 100, period => '1 day', anchor => date_trunc('day', now()));
SELECT used FROM quota.charge_credit('hist', 7);
SELECT count(*) FROM quota.usage_history WHERE team = 'hist';
SELECT age_window('hist');
SELECT window_end - window_start AS length, credit_limit, unlimited, used FROM quota.usage_history WHERE team = 'hist';
SELECT count(*) AS stored FROM quota.history WHERE team = 'hist';
-- The next call rolls it over: stored now, with the same used; the new window starts from zero.
SELECT used FROM quota.charge_credit('hist', 2);
SELECT part, used FROM quota.history WHERE team = 'hist';
SELECT window_end - window_start AS length, used FROM quota.usage_history WHERE team = 'hist';
-- A slotted account: the row and each slot are parts of one window.
SELECT quota.set_account('hist-s', 1000, period => '1 day', anchor => date_trunc('day', now()));
SELECT quota.set_slots('hist-s', 4);
SELECT count(*) FROM (SELECT quota.charge_credit('hist-s', 3) FROM generate_series(1, 5)) c;
SELECT used FROM quota.usage WHERE team = 'hist-s';
SELECT age_window('hist-s');
SELECT used FROM quota.usage_history WHERE team = 'hist-s';
SELECT used FROM quota.charge_credit('hist-s', 1);
SELECT used FROM quota.usage_history WHERE team = 'hist-s';
SELECT sum(used) AS stored FROM quota.history WHERE team = 'hist-s';
-- Budgets that never reset have no history.
SELECT quota.set_account('forever', 10);
SELECT used FROM quota.charge_credit('forever', 1);
SELECT count(*) FROM quota.usage_history WHERE team = 'forever';

-- purge_history: windows that ended before the instant (and their events).
SELECT quota.purge_history(now() - interval '1 day' + interval '1 minute');
SELECT team, used FROM quota.usage_history WHERE team LIKE 'hist%' ORDER BY team;
SELECT try($$SELECT quota.purge_history(NULL)$$);
-- A purged window that was never rolled over is hidden too, and its later rollover stores nothing.
SELECT quota.set_account('hist-late', 100, period => '1 day', anchor => date_trunc('day', now()));
SELECT used FROM quota.charge_credit('hist-late', 5);
SELECT age_window('hist-late');
SELECT used FROM quota.usage_history WHERE team = 'hist-late';
SELECT quota.purge_history(now()) > 0 AS purged;
SELECT count(*) FROM quota.usage_history WHERE team = 'hist-late';
SELECT used FROM quota.charge_credit('hist-late', 1);
SELECT count(*) AS stored FROM quota.history WHERE team = 'hist-late';

-- Retention of holds: settled ones go, open ones stay; a purged reservation is unknown (P0002).
SELECT quota.set_account('purge', 100);
SELECT reservation AS open_r FROM quota.reserve_credit('purge', 1, idempotency_key => 'open') \gset
SELECT reservation AS done_r FROM quota.reserve_credit('purge', 1, idempotency_key => 'done') \gset
SELECT used FROM quota.commit_credit(:done_r);
SELECT reservation AS gone_r FROM quota.reserve_credit('purge', 1, idempotency_key => 'gone') \gset
SELECT quota.release_credit(:gone_r);
SELECT quota.purge_holds();
SELECT quota.purge_holds(now() + interval '1 second') >= 3 AS purged;
SELECT state FROM quota.holds WHERE team = 'purge' ORDER BY id;
SELECT regexp_replace(try(format('SELECT quota.commit_credit(%s)', :done_r)), '[0-9]+ does', 'N does');
SELECT regexp_replace(try(format('SELECT quota.release_credit(%s)', :gone_r)), '[0-9]+ does', 'N does');
-- Its idempotency key is forgotten: the same key makes a new hold.
SELECT reservation <> :done_r AS new_hold FROM quota.reserve_credit('purge', 1, idempotency_key => 'done');
SELECT used, held FROM quota.usage WHERE team = 'purge';
SELECT try($$SELECT quota.purge_holds(NULL)$$);
-- Writing calls both, also with nothing to purge: 25006 in a read-only transaction.
BEGIN READ ONLY;
SELECT try($$SELECT quota.purge_holds(now() - interval '100 years')$$);
SELECT try($$SELECT quota.purge_history(now() - interval '100 years')$$);
ROLLBACK;

-- Alerts: once per threshold per window, in the caller's transaction.
SELECT quota.set_account('alert', 10, period => '1 day', anchor => date_trunc('day', now()));
SELECT quota.set_alerts('alert', '{100, 50, 80, 80}');
SELECT thresholds FROM quota.alert_settings WHERE team = 'alert';
SELECT granted, used FROM quota.charge_credit('alert', 4);
SELECT count(*) FROM quota.events WHERE team = 'alert';
SELECT granted, used FROM quota.charge_credit('alert', 1);
SELECT threshold, used, held, credit_limit, resets_at = window_start + interval '1 day' AS ends FROM quota.events WHERE team = 'alert' ORDER BY id;
-- A reservation counts (used + held); a commit larger than its hold crosses too.
SELECT reservation AS r FROM quota.reserve_credit('alert', 2) \gset
SELECT threshold, used, held FROM quota.events WHERE team = 'alert' ORDER BY id;
SELECT used, held FROM quota.commit_credit(:r, 5);
SELECT threshold, used, held FROM quota.events WHERE team = 'alert' ORDER BY id;
-- Denied calls, releases and set_account raise none; crossing again in the window raises none.
SELECT granted FROM quota.charge_credit('alert', 1);
SELECT quota.set_account('alert', 20, period => '1 day');
SELECT quota.set_account('alert', 10, period => '1 day');
SELECT count(*) FROM quota.events WHERE team = 'alert';
-- Crossing again in the same window (a release, then a new reserve): still one event.
SELECT quota.set_account('alert-again', 10);
SELECT quota.set_alerts('alert-again', '{50}');
SELECT reservation AS r1 FROM quota.reserve_credit('alert-again', 5) \gset
SELECT quota.release_credit(:r1);
SELECT granted, held FROM quota.reserve_credit('alert-again', 6);
SELECT threshold, used, held FROM quota.events WHERE team = 'alert-again';
-- Credits held across a rollover count in the new window from its start: the call that starts it raises them.
SELECT quota.set_account('alert-carry', 100, period => '1 day', anchor => date_trunc('day', now()));
SELECT quota.set_alerts('alert-carry', '{50,90,100}');
SELECT reservation AS rc FROM quota.reserve_credit('alert-carry', 95, hold_for => NULL) \gset
SELECT threshold FROM quota.events WHERE team = 'alert-carry' ORDER BY id;
SELECT age_window('alert-carry');
SELECT used, held FROM quota.commit_credit(:rc, 100);
SELECT threshold, used, held, window_start = date_trunc('day', now()) AS this_window
  FROM quota.events WHERE team = 'alert-carry' ORDER BY id;
-- purge_history() with an instant still to come: only windows that have ended (this window's events stay).
SELECT count(*) AS before FROM quota.events WHERE team = 'alert-carry';
SELECT quota.purge_history('infinity') >= 0 AS purged;
SELECT count(*) AS after FROM quota.events WHERE team = 'alert-carry';
SELECT ended_before <= now() AS not_in_the_future FROM quota.history_purged;
-- Rolled back: no event.
SELECT quota.set_account('alert-rb', 10);
SELECT quota.set_alerts('alert-rb', '{50}');
BEGIN;
SELECT granted FROM quota.charge_credit('alert-rb', 6);
SELECT count(*) FROM quota.events WHERE team = 'alert-rb';
ROLLBACK;
SELECT count(*) FROM quota.events WHERE team = 'alert-rb';
-- A new window raises them again.
SELECT age_window('alert');
SELECT granted, used FROM quota.charge_credit('alert', 9);
SELECT threshold, used FROM quota.events WHERE team = 'alert' ORDER BY id;
-- An overdraft crosses the thresholds above 100 %.
SELECT quota.set_alerts('alert', '{100, 150}');
SELECT granted, used FROM quota.charge_credit('alert', 7, allow_overdraft => true);
SELECT threshold, used FROM quota.events WHERE team = 'alert' ORDER BY id;
-- quota.notify_events = off: stored, not notified (two-phase commit refuses a transaction that ran NOTIFY).
SET quota.notify_events = off;
SELECT quota.set_account('alert-2pc', 10);
SELECT quota.set_alerts('alert-2pc', '{50}');
BEGIN;
SELECT granted FROM quota.charge_credit('alert-2pc', 5);
PREPARE TRANSACTION 'quota-alert';
COMMIT PREPARED 'quota-alert';
SELECT threshold, used FROM quota.events WHERE team = 'alert-2pc';
RESET quota.notify_events;
-- Unlimited accounts raise none.
SELECT quota.set_account('alert-u', 10, unlimited => true);
SELECT quota.set_alerts('alert-u', '{50}');
SELECT granted FROM quota.charge_credit('alert-u', 100);
SELECT count(*) FROM quota.events WHERE team = 'alert-u';
-- A slotted account: its slots stop short of the next threshold, so the call that crosses it takes the whole account.
SELECT quota.set_account('alert-s', 1000);
SELECT quota.set_slots('alert-s', 4);
SELECT quota.set_alerts('alert-s', '{10, 25}');
SELECT sum(share) AS dealt FROM quota.slots WHERE team = 'alert-s';
SELECT count(*) FROM (SELECT quota.charge_credit('alert-s', 3) FROM generate_series(1, 40)) c;
SELECT threshold, used + held >= threshold * 10 AS reached, used + held < threshold * 10 + 3 AS by_that_call
  FROM quota.events WHERE team = 'alert-s' ORDER BY id;
SELECT sum(share) AS dealt FROM quota.slots WHERE team = 'alert-s';
-- quota.alert_settings not as installed (an index added): thresholds are read with SQL, and still apply.
CREATE INDEX alert_settings_by_hand ON quota.alert_settings (resource);
SELECT quota.set_account('alert-sql', 10);
SELECT quota.set_alerts('alert-sql', '{30}');
SELECT granted FROM quota.charge_credit('alert-sql', 3);
SELECT threshold, used FROM quota.events WHERE team = 'alert-sql';
DROP INDEX quota.alert_settings_by_hand;
-- quota.default_alerts: for accounts with none of their own; set_alerts(NULL) removes an account's own.
SET quota.default_alerts = '90';
SELECT quota.set_account('alert-d', 10);
SELECT granted FROM quota.charge_credit('alert-d', 9);
SELECT threshold FROM quota.events WHERE team = 'alert-d';
SELECT quota.set_alerts('alert-rb', NULL);
SELECT count(*) FROM quota.alert_settings WHERE team = 'alert-rb';
-- quota.purge_pause is in milliseconds, also set before the library is loaded (purge_holds loads it first).
\c
SET quota.purge_pause = 1;
SELECT quota.purge_holds(now() - interval '100 years');
SHOW quota.purge_pause;
SET TimeZone = 'UTC';
SET quota.default_alerts = '80, 100,';
SET quota.default_alerts = '0';
SET quota.default_alerts = '80;100';
RESET quota.default_alerts;
-- Bad input.
SELECT try($$SELECT quota.set_alerts(NULL, '{50}')$$);
SELECT try($$SELECT quota.set_alerts('alert', '{50}', NULL)$$);
SELECT try($$SELECT quota.set_alerts('', '{50}')$$);
SELECT try($$SELECT quota.set_alerts('alert', '{0}')$$);
SELECT try($$SELECT quota.set_alerts('alert', '{1001}')$$);
SELECT try($$SELECT quota.set_alerts('alert', '{50,NULL}')$$);
SELECT try($$SELECT quota.set_alerts('nobody', '{50}')$$);
SELECT try($$SELECT quota.set_alerts('alert', (SELECT array_agg(i) FROM generate_series(1, 65) i))$$);
SELECT thresholds FROM quota.alert_settings WHERE team = 'alert';

-- Privileges: an application role reads history and events, never writes them, and cannot set alerts or purge.
CREATE ROLE history_app;
GRANT USAGE ON SCHEMA quota TO history_app;
SET ROLE history_app;
SELECT count(*) >= 0 AS readable FROM quota.usage_history;
SELECT count(*) >= 0 AS readable FROM quota.events;
SELECT try($$SELECT quota.set_alerts('alert', '{50}')$$);
SELECT try($$SELECT quota.purge_holds()$$);
SELECT try($$SELECT quota.purge_history(now())$$);
SELECT try($$DELETE FROM quota.events$$);
SELECT try($$SELECT count(*) FROM quota.history$$);
RESET ROLE;
DROP OWNED BY history_app;
DROP ROLE history_app;
