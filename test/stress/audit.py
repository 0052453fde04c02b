#!/usr/bin/python3
"""Stress audit: many concurrent connections spend on a few hot accounts,
then the ledger's invariants are checked against what was acknowledged.

    test/stress/audit.py [--workers 16] [--seconds 20] [--crash] [--citus]

Connects with the PG* environment variables (test/run.sh sets them).  With
--crash, the server is restarted in immediate mode half way through (a
crash: needs QUOTA_PGDATA and the pg_ctl command in QUOTA_PGCTL); calls in
flight then are "uncertain", and the audit checks that nothing acknowledged
was lost.

What is checked (any failure exits 1):
  * every grant: used + held <= credit_limit, remaining = limit - used - held
  * per account and window: the highest `used` any grant reported equals the
    sum of acknowledged commits and charges in that window (plus at most the
    uncertain ones after a crash); the final `used` likewise.  Any account
    may be slotted (automatic slotting, no set_slots at the start), and a
    slotted account reports from a snapshot (concurrent calls on other slots
    may not be in it yet): so no grant may report more than was
    acknowledged, and the final `used` must equal it
  * stored held (the account row's plus its slots') = sum of open holds;
    quota.usage held = sum of unexpired ones
  * slotted accounts: no share below zero (but -1, frozen while the account
    is over its limit), and the account row's used + held plus every slot's
    used + held + share within the limit; an admin thread pins slot counts
    (set_slots n, 0 forbids) and hands accounts back to automatic slotting
    (set_slots NULL) all along
  * transactions of several calls on one account (charges, reserves, commits
    of the worker's own holds), committed or rolled back: no deadlock, and
    only committed ones count (a commit that would have to wait for a
    transaction waiting for this one is refused with 55P03: rolled back)
  * each reservation settled at most once, as the client saw it: committed
    with the amount of its first commit, released when release said true
  * no error at all other than the crash's lost connections
  * amcheck: every index of the two tables has an entry for every row
  * alerts (quota.default_alerts '25,50,75,100' for all, set_alerts on one):
    at most one event per (account, window, threshold); one for every
    threshold that a reported or final used reached in a window (used only
    grows within a window); none claiming more used than was acknowledged in
    its window, and each event's used + held at least its threshold
  * history: every closed window of the one-second accounts is in
    quota.usage_history with exactly the acknowledged used of that window
  * retention: quota.purge_holds(now() - 1 s) runs all along; a trigger keeps
    a copy of every hold it deletes, and only settled ones may go, so every
    acknowledged commit and release above is checked on the kept or the
    purged row
A background loop runs ANALYZE on both tables all along, as autovacuum
would: plans and cached relation data are invalidated under load.

--citus: connected to the coordinator of a Citus cluster whose quota is
distributed (test/citus.sh).  The same calls and invariants, except what
Citus has not: slots (no admin thread changing them), the retention copy
(no purge loop: a trigger on a distributed table cannot keep the copy),
and amcheck (the coordinator's tables are empty shells).
"""
import argparse
import os
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict

import psycopg2

# (team, resource, limit): one account at its limit all run long, others
# reached during the run, and two whose one-second windows fill and roll over.
HOT = [("edge", "credits", 40), ("edge-s", "credits", 40), ("hot-1", "credits", 3000),
       ("hot-2", "credits", 12000), ("hot-3", "credits", 40000)]
TICK = [("tick-%d" % i, "ai", 150) for i in range(2)]
ACCOUNTS = HOT + TICK
LIMITS = {(t, r): lim for t, r, lim in ACCOUNTS}
# Every account is slotted automatically when contended; the admin thread
# pins RESLOTTED ones' counts now and then (0 forbids slots) and hands them
# back to automatic slotting (NULL).
RESLOTTED = [("hot-3", "credits"), ("tick-1", "ai"), ("edge-s", "credits")]
# Alert thresholds (percent of the limit): the default for every account, and one account's own.
DEFAULT_ALERTS = [25, 50, 75, 100]
OWN_ALERTS = {("hot-2", "credits"): [10, 90]}


class Ledger:
    """What the clients were told, shared by all workers."""

    def __init__(self):
        self.lock = threading.Lock()
        self.grants = []                       # (account, grant tuple)
        self.writes = defaultdict(int)         # (account, resets_at) -> acknowledged credits
        self.uncertain = defaultdict(int)      # account -> credits of calls lost in a crash
        self.committed = {}                    # reservation -> amount of its first commit
        self.released = set()                  # reservations release_credit answered true for
        self.open = {}                         # reservation -> (account, amount) the client holds
        self.abandoned = set()                 # short holds left to expire
        self.unsure = set()                    # reservations being settled when the server crashed
        self.calls = defaultdict(int)
        self.errors = []
        self.inside = []                       # (account, grant) made inside a multi-call transaction

    def grant(self, account, g):
        with self.lock:
            self.grants.append((account, g))


def connect():
    conn = psycopg2.connect("")
    conn.autocommit = True
    return conn


GRANT_COLS = "granted, reservation, used, held, credit_limit, remaining, resets_at, retry_after"
CITUS = False  # --citus


def worker(n, deadline, ledger, crash_window):
    rnd = random.Random(n)
    conn = connect()
    cur = conn.cursor()
    mine = []          # reservations this worker may settle: (id, account, amount)
    pending = None     # (kind, account, amount) of the call in flight

    def call(sql, args):
        cur.execute(sql, args)
        return cur.fetchone()

    while time.time() < deadline:
        team, resource, _ = rnd.choice(ACCOUNTS)
        account = (team, resource)
        op = rnd.random()
        try:
            if op < 0.30:
                amount = rnd.randint(1, 3)
                short = rnd.random() < 0.2
                hold_for = "300 milliseconds" if short else rnd.choice(["15 minutes", None])
                key = "w%d-%d" % (n, rnd.getrandbits(40)) if rnd.random() < 0.4 else None
                pending = ("reserve", account, amount, None)
                g = call("SELECT %s FROM quota.reserve_credit(%%s, %%s, %%s, %%s::interval, %%s)" % GRANT_COLS,
                         (team, amount, resource, hold_for, key))
                ledger.grant(account, g)
                ledger.calls["reserve"] += 1
                if key is not None and rnd.random() < 0.5:      # an immediate retry
                    g2 = call("SELECT %s FROM quota.reserve_credit(%%s, %%s, %%s, %%s::interval, %%s)" % GRANT_COLS,
                              (team, amount, resource, hold_for, key))
                    ledger.grant(account, g2)
                    ledger.calls["reserve retry"] += 1
                    if g[0] and (not g2[0] or g2[1] != g[1]):
                        ledger.errors.append("retry with key %s answered %r after %r" % (key, g2, g))
                if g[0]:
                    with ledger.lock:
                        if short:
                            ledger.abandoned.add(g[1])
                        else:
                            ledger.open[g[1]] = (account, amount)
                    if not short:
                        mine.append((g[1], account, amount))
            elif op < 0.50 and mine:
                rid, acc, held_amount = mine.pop(rnd.randrange(len(mine)))
                amount = rnd.choice([None, held_amount, max(0, held_amount - 1), 0])
                settled = held_amount if amount is None else amount
                pending = ("commit", acc, settled, rid)
                g = call("SELECT %s FROM quota.commit_credit(%%s, %%s)" % GRANT_COLS, (rid, amount))
                ledger.calls["commit"] += 1
                if not g[0]:
                    ledger.errors.append("commit of %d not granted: %r" % (rid, g))
                with ledger.lock:
                    ledger.open.pop(rid, None)
                    ledger.committed[rid] = settled
                    ledger.writes[(acc, g[6])] += settled
                ledger.grant(acc, g)
                if rnd.random() < 0.2:                          # a retried commit changes nothing
                    pending = None
                    g2 = call("SELECT %s FROM quota.commit_credit(%%s, %%s)" % GRANT_COLS, (rid, None))
                    ledger.grant(acc, g2)
                    ledger.calls["commit again"] += 1
            elif op < 0.62 and mine:
                rid, acc, held_amount = mine.pop(rnd.randrange(len(mine)))
                pending = ("release", acc, 0, rid)
                (ok,) = call("SELECT quota.release_credit(%s)", (rid,))
                ledger.calls["release"] += 1
                if not ok:
                    ledger.errors.append("release of open reservation %d answered false" % rid)
                with ledger.lock:
                    ledger.open.pop(rid, None)
                    ledger.released.add(rid)
                if rnd.random() < 0.3:
                    (again,) = call("SELECT quota.release_credit(%s)", (rid,))
                    ledger.calls["release again"] += 1
                    if again:
                        ledger.errors.append("second release of %d answered true" % rid)
            elif op < 0.78:
                amount = rnd.randint(1, 3)
                pending = ("charge", account, amount, None)
                g = call("SELECT %s FROM quota.charge_credit(%%s, %%s, %%s)" % GRANT_COLS, (team, amount, resource))
                ledger.calls["charge"] += 1
                if g[0]:
                    with ledger.lock:
                        ledger.writes[(account, g[6])] += amount
                ledger.grant(account, g)
            elif op < 0.90:
                # Several calls on one account in one transaction: charges, reserves, and commits of
                # this worker's own holds there; committed or rolled back.  Never a deadlock.
                writes, reserved, settled_here = 0, [], []
                cur.execute("BEGIN")
                try:
                    for _ in range(rnd.randint(2, 4)):
                        kind = rnd.random()
                        own = [m for m in mine if m[1] == account]
                        if kind < 0.3 and own:
                            m = own[rnd.randrange(len(own))]
                            mine.remove(m)
                            settled_here.append(m)
                            g = call("SELECT %s FROM quota.commit_credit(%%s)" % GRANT_COLS, (m[0],))
                            writes += m[2]
                        elif kind < 0.6:
                            amount = rnd.randint(1, 3)
                            g = call("SELECT %s FROM quota.reserve_credit(%%s, %%s, %%s)" % GRANT_COLS,
                                     (team, amount, resource))
                            if g[0]:
                                reserved.append((g[1], account, amount))
                        else:
                            amount = rnd.randint(1, 3)
                            g = call("SELECT %s FROM quota.charge_credit(%%s, %%s, %%s)" % GRANT_COLS,
                                     (team, amount, resource))
                            if g[0]:
                                writes += amount
                        with ledger.lock:
                            ledger.inside.append((account, g))
                        window = g[6]     # one transaction, one now(): every call in it has the same window
                        ledger.calls["in a transaction"] += 1
                except psycopg2.Error as e:
                    if e.pgcode != "55P03":
                        raise
                    # A commit of this worker's hold whose slot is held by a transaction taking the whole
                    # account, which waits for a slot this one holds: refused (55P03), not a deadlock.
                    cur.execute("ROLLBACK")
                    mine.extend(settled_here)
                    ledger.calls["transactions refused (55P03)"] += 1
                    continue
                commit = rnd.random() < 0.8
                # In flight from here on: a crash may or may not have committed it.
                pending = ("block", account, writes, [m[0] for m in settled_here]) if commit else None
                cur.execute("COMMIT" if commit else "ROLLBACK")
                pending = None
                if commit:
                    with ledger.lock:
                        ledger.writes[(account, window)] += writes
                        for rid, acc, amount in reserved:
                            ledger.open[rid] = (acc, amount)
                        for rid, acc, amount in settled_here:
                            ledger.open.pop(rid, None)
                            ledger.committed[rid] = amount
                    mine.extend(reserved)
                    ledger.calls["transactions committed"] += 1
                else:
                    mine.extend(settled_here)      # rolled back: still open, still this worker's
                    ledger.calls["transactions rolled back"] += 1
            elif op < 0.92:
                pending = None
                call("SELECT quota.expire_holds()", ())
                ledger.calls["expire_holds"] += 1
            else:
                pending = None
                call("SELECT quota.is_team_limited(%s, %s)", (team, resource))
                ledger.calls["is_team_limited"] += 1
            pending = None
        except psycopg2.Error as e:
            lost = conn.closed or e.pgcode is None or e.pgcode.startswith("57")
            if not (crash_window.is_set() and lost):
                ledger.errors.append("worker %d: %s %s" % (n, e.pgcode, str(e).strip()))
                return
            # The crash: the call in flight may or may not have committed.
            if pending is not None:
                kind, acc, amount, rid = pending
                with ledger.lock:
                    if kind in ("charge", "commit", "block"):
                        ledger.uncertain[acc] += amount
                    for r in (rid if kind == "block" else [rid] if rid is not None else []):
                        ledger.open.pop(r, None)    # settled or not: either is right
                        ledger.unsure.add(r)
                    ledger.calls["lost in crash"] += 1
            pending = None
            conn = reconnect(deadline)
            if conn is None:
                ledger.errors.append("worker %d could not reconnect" % n)
                return
            cur = conn.cursor()


def repeat(name, pause, next_call, deadline, ledger, crash_window):
    """A background loop: next_call() gives (sql, args); counted as `name`; any error but the crash's fails."""
    conn = connect()
    while time.time() < deadline:
        sql, args = next_call()
        try:
            conn.cursor().execute(sql, args)
            ledger.calls[name] += 1
        except psycopg2.Error as e:
            if not crash_window.is_set():
                ledger.errors.append("%s: %s %s" % (name, e.pgcode, str(e).strip()))
                return
            conn = reconnect(deadline)
            if conn is None:
                return
        time.sleep(pause)


def analyze_loop(deadline, ledger, crash_window):
    """What autovacuum does, often: ANALYZE invalidates cached plans and relcache entries."""
    repeat("analyze", 0.001, lambda: ("ANALYZE quota.accounts; ANALYZE quota.holds; ANALYZE quota.slots", ()),
           deadline, ledger, crash_window)


def reslot_loop(deadline, ledger, crash_window):
    """An administrator changing slot counts under load."""
    rnd = random.Random(-1)

    def next_call():
        team, resource = rnd.choice(RESLOTTED)
        count = rnd.choice([None, None, None, 0, rnd.randint(1, 12)])
        return "SELECT quota.set_slots(%s, %s, %s)", (team, count, resource)

    repeat("set_slots", 0.05, next_call, deadline, ledger, crash_window)


def purge_loop(deadline, ledger, crash_window):
    """The retention job, as pg_cron would run it (much more often): settled holds go after a second."""
    repeat("purge_holds", 0.3, lambda: ("SELECT quota.purge_holds(now() - interval '1 second')", ()),
           deadline, ledger, crash_window)


def credits_at(limit, percent):
    return -(-limit * percent // 100)


def audit_alerts_and_history(ledger, cur, windows, failures):
    """Events once per (account, window, threshold), for every threshold reached; history exact."""
    final = {}
    cur.execute("SELECT team, resource, used, resets_at FROM quota.usage")
    for team, resource, used, resets_at in cur.fetchall():
        final[((team, resource), resets_at)] = used
    history = {}
    cur.execute("SELECT team, resource, window_end, used, now() FROM quota.usage_history")
    for team, resource, window_end, used, now in cur.fetchall():
        history[((team, resource), window_end)] = used
    cur.execute("SELECT team, resource, resets_at, threshold, used, held, count(*) OVER"
                " (PARTITION BY team, resource, window_start, threshold) FROM quota.events")
    events = defaultdict(list)
    for team, resource, resets_at, threshold, used, held, copies in cur.fetchall():
        key = ((team, resource), resets_at)
        events[key].append(threshold)
        if copies != 1:
            failures.append("%r: %d events for threshold %d in one window" % (key, copies, threshold))
        limit = LIMITS[(team, resource)]
        if used + held < credits_at(limit, threshold):
            failures.append("%r: event for %d%% with used %d + held %d below it" % (key, threshold, used, held))
        acked = ledger.writes.get(key, 0) + ledger.uncertain.get((team, resource), 0)
        if used > acked:
            failures.append("%r: event for %d%% reports used %d, more than acknowledged (%d)"
                            % (key, threshold, used, acked))
    # Reached: a used any grant reported (used only grows within a window), the final used, a closed window's.
    reached = defaultdict(int)
    for key, used in list(windows.items()) + list(final.items()) + list(history.items()):
        reached[key] = max(reached[key], used)
    for key, used in reached.items():
        account = key[0]
        for percent in OWN_ALERTS.get(account, DEFAULT_ALERTS):
            if used >= credits_at(LIMITS[account], percent) and percent not in events.get(key, []):
                failures.append("%r: used reached %d (%d%% of %d) but no event was raised"
                                % (key, used, percent, LIMITS[account]))
    # History: every closed window of a periodic account, with exactly what was acknowledged in it.
    cur.execute("SELECT now()")
    (now,) = cur.fetchone()
    tick = {(t, r) for t, r, _ in TICK}
    for key, acked in ledger.writes.items():
        account, resets_at = key
        if account in tick and resets_at is not None and resets_at <= now and acked > 0 and key not in history:
            failures.append("%r: a closed window with %d acknowledged credits is not in quota.usage_history"
                            % (key, acked))
    for key, used in history.items():
        acked = ledger.writes.get(key, 0)
        slack = ledger.uncertain.get(key[0], 0)
        if not acked <= used <= acked + slack:
            failures.append("%r: quota.usage_history used %d, acknowledged %d (uncertain %d)"
                            % (key, used, acked, slack))
    return sum(len(t) for t in events.values()), len(history)


def reconnect(deadline):
    while time.time() < deadline + 60:
        try:
            return connect()
        except psycopg2.OperationalError:
            time.sleep(0.2)
    return None


def audit(ledger):
    failures = list(ledger.errors)
    if CITUS:
        time.sleep(0.5)  # every short hold (300 ms) expired: none expires between two reads below
    conn = connect()
    cur = conn.cursor()

    # Every grant of a limited account stays within the limit.
    windows = defaultdict(int)   # (account, resets_at) -> highest used reported
    for account, g in ledger.grants:
        granted, rid, used, held, limit, remaining, resets_at, retry_after = g
        if limit != LIMITS[account]:
            failures.append("grant reports limit %r for %r" % (limit, account))
        if used + held > limit:
            failures.append("overspend in a grant: %r %r" % (account, g))
        if remaining != max(limit - used - held, 0):
            failures.append("remaining wrong in %r" % (g,))
        if granted and retry_after is not None:
            failures.append("granted with retry_after: %r" % (g,))
        if not granted and (account in [(t, r) for t, r, _ in TICK]) != (retry_after is not None):
            failures.append("retry_after mismatch: %r %r" % (account, g))
        windows[(account, resets_at)] = max(windows[(account, resets_at)], used)
    # Inside multi-call transactions (maybe rolled back later): within the limit, at every grant.
    for account, g in ledger.inside:
        granted, rid, used, held, limit, remaining, resets_at, retry_after = g
        if used + held > limit or remaining != max(limit - used - held, 0):
            failures.append("grant inside a transaction: %r %r" % (account, g))

    # Per window: the highest used reported is exactly what was acknowledged there
    # (any account may be slotted: never more; the final used is checked exactly below).
    for key in set(windows) | set(ledger.writes):
        account = key[0]
        acked = ledger.writes.get(key, 0)
        seen = windows.get(key, 0)
        slack = ledger.uncertain.get(account, 0)
        if not seen <= acked + slack:
            failures.append("window %r: grants reported used %d, acknowledged %d (uncertain %d)"
                            % (key, seen, acked, slack))

    # Final state.
    cur.execute("SELECT team, resource, used, held, resets_at, credit_limit FROM quota.accounts")
    for team, resource, used, held, resets_at, limit in cur.fetchall():
        account = (team, resource)
        # Stored held, the account row's and its slots' together, is its open holds.  (Which of them
        # counts a hold may differ: a transaction holding one slot settles in it holds of others.)
        cur.execute("SELECT coalesce(sum(amount), 0) FROM quota.holds WHERE team = %s AND resource = %s"
                    " AND state = 'open'", account)
        (open_sum,) = cur.fetchone()
        cur.execute("SELECT coalesce(sum(s.held), 0) FROM quota.slots s WHERE s.team = %s AND s.resource = %s",
                    account)
        (slots_held,) = cur.fetchone()
        if held + slots_held != open_sum:
            failures.append("%r: stored held %d (+ slots %d) != sum of its open holds %d"
                            % (account, held, slots_held, open_sum))
        cur.execute("SELECT s.slot, s.share FROM quota.slots s WHERE s.team = %s AND s.resource = %s", account)
        for slot, share in cur.fetchall():
            if share is not None and share < -1:  # -1: frozen, dealt while the account was over its limit
                failures.append("%r slot %d: share %d below zero" % (account, slot, share))
        cur.execute("SELECT count(*) FROM quota.holds h WHERE h.team = %s AND h.resource = %s AND h.slot IS NOT NULL"
                    " AND h.state = 'open' AND NOT EXISTS (SELECT FROM quota.slots s WHERE s.team = h.team"
                    "   AND s.resource = h.resource AND s.slot = h.slot)", account)
        (orphans,) = cur.fetchone()
        if orphans:
            failures.append("%r: %d open holds name a slot that does not exist" % (account, orphans))
        cur.execute("SELECT CASE WHEN a.resets_at IS NULL OR a.resets_at > now() THEN a.used ELSE 0 END + a.held"
                    " + coalesce((SELECT sum(s.held + CASE WHEN s.resets_at IS NULL OR s.resets_at > now()"
                    "     THEN s.used + greatest(coalesce(s.share, 0), 0) ELSE 0 END)"
                    "   FROM quota.slots s WHERE s.team = a.team AND s.resource = a.resource), 0)"
                    " FROM quota.accounts a WHERE a.team = %s AND a.resource = %s", account)
        (committed_credits,) = cur.fetchone()
        if committed_credits > limit:
            failures.append("%r: used + held + shares = %d > limit %d" % (account, committed_credits, limit))
        # One statement, one now(): holds keep expiring while the audit reads.
        if not CITUS:
            cur.execute("SELECT u.used, u.held, u.resets_at, u.limited,"
                        " (SELECT coalesce(sum(h.amount), 0) FROM quota.holds h WHERE h.team = u.team"
                        "   AND h.resource = u.resource AND h.state = 'open'"
                        "   AND (h.expires_at IS NULL OR h.expires_at > now()))"
                        " FROM quota.usage u WHERE u.team = %s AND u.resource = %s", account)
            vused, vheld, vresets, limited, live_sum = cur.fetchone()
        else:  # Citus plans no correlated subquery here; the short holds have all expired (audit() waited)
            cur.execute("SELECT u.used, u.held, u.resets_at, u.limited FROM quota.usage u"
                        " WHERE u.team = %s AND u.resource = %s", account)
            vused, vheld, vresets, limited = cur.fetchone()
            cur.execute("SELECT coalesce(sum(h.amount), 0) FROM quota.holds h WHERE h.team = %s AND h.resource = %s"
                        " AND h.state = 'open' AND (h.expires_at IS NULL OR h.expires_at > now())", account)
            (live_sum,) = cur.fetchone()
        if vheld != live_sum:
            failures.append("%r: quota.usage held %d != unexpired open holds %d" % (account, vheld, live_sum))
        if vused + vheld > limit:
            failures.append("%r: final overspend used %d + held %d > %d" % (account, vused, vheld, limit))
        acked = ledger.writes.get((account, vresets), 0)
        slack = ledger.uncertain.get(account, 0)
        if not (acked <= vused <= acked + slack):
            failures.append("%r: final used %d, acknowledged %d in this window (uncertain %d)"
                            % (account, vused, acked, slack))

    # Each reservation settled at most once, as the client saw it.
    cur.execute("SELECT id, state, committed, settled_at IS NOT NULL FROM quota.holds")
    holds = {rid: (state, committed, settled) for rid, state, committed, settled in cur.fetchall()}
    # Purged ones: only settled holds may have gone, and what was acknowledged about them is kept in the copy
    # (none on Citus: no purges there).
    purged_rows = []
    if not CITUS:
        cur.execute("SELECT id, state, committed, settled_at IS NOT NULL FROM public.purged_holds")
        purged_rows = cur.fetchall()
    purged = 0
    for rid, state, committed, settled in purged_rows:
        purged += 1
        if state == "open" or not settled:
            failures.append("purge_holds deleted hold %d in state %s" % (rid, state))
        if rid in holds:
            failures.append("hold %d both purged and still there" % rid)
        holds[rid] = (state, committed, settled)
    ledger.calls["holds purged"] = purged
    for rid, amount in ledger.committed.items():
        if holds.get(rid, (None,))[:2] != ("committed", amount):
            failures.append("reservation %d committed with %d, stored %r" % (rid, amount, holds.get(rid)))
    for rid in ledger.released:
        if holds.get(rid, (None,))[0] != "released":
            failures.append("reservation %d released, stored %r" % (rid, holds.get(rid)))
    for rid in ledger.open:
        if holds.get(rid, (None,))[0] != "open":
            failures.append("reservation %d still held by a client, stored %r" % (rid, holds.get(rid)))
    for rid in ledger.unsure:       # reserved and acknowledged, whatever became of the settling
        if rid not in holds:
            failures.append("reservation %d, being settled at the crash, is lost" % rid)
    for rid in ledger.abandoned:
        if holds.get(rid, (None,))[0] not in ("open", "expired"):
            failures.append("abandoned reservation %d stored %r" % (rid, holds.get(rid)))
    for rid, (state, committed, settled) in holds.items():
        if (state == "open") == settled:
            failures.append("hold %d: state %s but settled=%s" % (rid, state, settled))

    counts = audit_alerts_and_history(ledger, cur, windows, failures)
    ledger.calls["events audited"], ledger.calls["history windows audited"] = counts

    if CITUS:
        return failures
    # The indexes hold an entry for every row version (the extension writes some rows directly).
    cur.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
    cur.execute("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid IN ('quota.accounts'::regclass, 'quota.holds'::regclass, 'quota.slots'::regclass)")
    for (index,) in cur.fetchall():
        try:
            cur.execute("SELECT bt_index_check(%s::regclass, heapallindexed => true)", ("quota." + index,))
        except psycopg2.Error as e:
            failures.append("index %s: %s" % (index, str(e).strip()))
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--crash", action="store_true")
    parser.add_argument("--citus", action="store_true")
    args = parser.parse_args()
    global CITUS
    CITUS = args.citus

    conn = connect()
    cur = conn.cursor()
    cur.execute("DELETE FROM quota.holds; DELETE FROM quota.slots; DELETE FROM quota.accounts;")
    for team, resource, limit in HOT:
        cur.execute("SELECT quota.set_account(%s, %s, %s)", (team, limit, resource))
    for team, resource, limit in TICK:
        cur.execute("SELECT quota.set_account(%s, %s, %s, '1 second')", (team, limit, resource))
    # Alerts for every account (new sessions get the database's setting), one account's own.
    cur.execute("DELETE FROM quota.events; DELETE FROM quota.history; DELETE FROM quota.alert_settings")
    cur.execute("SELECT format('ALTER DATABASE %%I SET quota.default_alerts = %%L', current_database(), %s)",
                (",".join(map(str, DEFAULT_ALERTS)),))
    cur.execute(cur.fetchone()[0])
    for (team, resource), thresholds in OWN_ALERTS.items():
        cur.execute("SELECT quota.set_alerts(%s, %s, %s)", (team, thresholds, resource))
    # A copy of every hold purge_holds deletes, for the audit (not on Citus: no purges there).
    if not CITUS:
        cur.execute("""
        CREATE TABLE IF NOT EXISTS public.purged_holds (LIKE quota.holds);
        TRUNCATE public.purged_holds;
        CREATE OR REPLACE FUNCTION public.keep_purged_hold() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO public.purged_holds SELECT OLD.*;
            RETURN OLD;
        END $$;
        DROP TRIGGER IF EXISTS keep_purged_hold ON quota.holds;
        CREATE TRIGGER keep_purged_hold AFTER DELETE ON quota.holds
            FOR EACH ROW EXECUTE FUNCTION public.keep_purged_hold();
    """)
    conn.close()

    ledger = Ledger()
    crash_window = threading.Event()
    start = time.time()
    deadline = start + args.seconds
    threads = [threading.Thread(target=worker, args=(n, deadline, ledger, crash_window)) for n in range(args.workers)]
    for t in threads:
        t.start()
    # What autovacuum does, often: ANALYZE invalidates cached plans and
    # relcache entries while the calls run.
    analyzer = threading.Thread(target=analyze_loop, args=(deadline, ledger, crash_window))
    analyzer.start()
    threads.append(analyzer)
    if not CITUS:
        reslotter = threading.Thread(target=reslot_loop, args=(deadline, ledger, crash_window))
        reslotter.start()
        threads.append(reslotter)
        purger = threading.Thread(target=purge_loop, args=(deadline, ledger, crash_window))
        purger.start()
        threads.append(purger)
    if args.crash:
        time.sleep(args.seconds / 2)
        crash_window.set()
        print("crash: pg_ctl restart -m immediate at %.1fs" % (time.time() - start), flush=True)
        subprocess.run(os.environ["QUOTA_PGCTL"].split() + ["-D", os.environ["QUOTA_PGDATA"], "-m", "immediate",
                        "-w", "restart"], check=True, stdout=subprocess.DEVNULL)
    for t in threads:
        t.join()
    elapsed = time.time() - start

    failures = audit(ledger)
    total = sum(ledger.calls.values())
    print("%d workers, %.1fs, %d calls (%s), %d grants audited"
          % (args.workers, elapsed, total, ", ".join("%s %d" % kv for kv in sorted(ledger.calls.items())),
             len(ledger.grants)))
    denied = sum(1 for _, g in ledger.grants if not g[0])
    conn = connect()
    cur = conn.cursor()
    cur.execute("SELECT string_agg(team || ':' || slots || CASE WHEN slots_pinned THEN ' (pinned)' ELSE '' END,"
                " ', ' ORDER BY team) FROM quota.accounts")
    print("denied grants: %d; slots at the end: %s" % (denied, cur.fetchone()[0]))
    if failures:
        for f in failures[:40]:
            print("AUDIT FAILURE:", f)
        print("audit: %d failures" % len(failures))
        return 1
    print("audit: all invariants hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
