#!/usr/bin/python3
"""Stress audit of parent budgets and concurrency caps: many connections
spend on a three-level tree (one org > 4 teams > 12 users) with caps, then
the ledger's invariants are checked against what was acknowledged.

    test/stress/tree.py [--workers 16] [--seconds 20] [--crash]

Connects with the PG* environment variables (test/run.sh sets them); with
--crash, the server is restarted in immediate mode half way through (needs
QUOTA_PGDATA and QUOTA_PGCTL, as test/stress/audit.py), and calls in flight
then are "uncertain" on every account of their chain.

Every account may become slotted automatically (the org always does: every
call touches it).  What is checked (any failure exits 1):
  * every grant: the named account's used + held <= its credit_limit, and
    remaining (the least over the chain) within every account's own
  * per account: used = the sum of acknowledged charges and commits made on
    it or on any of its descendants (plus at most the uncertain ones after
    a crash), and used + held <= credit_limit
  * stored held (the row's plus its slots') = the sum of its open holds, and
    every hold made through parents has one part per account of its chain,
    all in one state
  * caps, at every instant: a trigger on quota.holds counts, as each hold is
    inserted, the account's unexpired open holds (committed ones and this
    transaction's own); a count over the cap is recorded, and any recorded
    one that committed fails the audit
  * transactions of several calls on one user: no deadlock (40P01 is a
    failure), only committed ones count; 55P03 (a commit or capped reserve
    that would wait for a transaction waiting for this one) is rolled back
  * each reservation settled at most once, as the client saw it
  * no error at all other than the crash's lost connections and 55P03
and then, apart: 50 reserves at the same instant on a key capped at 3
under a team grant exactly 3 (the others are denied with a retry_after).
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

ORG = ("org", 50000)
TEAMS = [("team-%d" % t, 15000 if t else 400) for t in range(4)]
USERS = [("user-%d-%d" % (t, u), "team-%d" % t, 6000 if u else 150) for t in range(4) for u in range(3)]
PARENT = {name: "org" for name, _ in TEAMS}
PARENT.update({name: team for name, team, _ in USERS})
LIMITS = dict([ORG] + TEAMS + [(n, lim) for n, _, lim in USERS])
# Concurrency caps: two users and one team.
CAPS = {"user-0-1": 2, "user-1-2": 3, "team-2": 4}
ACCOUNTS = list(LIMITS)
GRANT_COLS = "granted, reservation, used, held, credit_limit, remaining, resets_at, retry_after"


def chain(account):
    out = [account]
    while out[-1] in PARENT:
        out.append(PARENT[out[-1]])
    return out


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.grants = []                   # (account, grant)
        self.used = defaultdict(int)       # account -> acknowledged credits on it (its chain's)
        self.uncertain = defaultdict(int)
        self.committed = {}                # reservation -> amount
        self.released = set()
        self.open = {}                     # reservation -> (account, amount)
        self.unsure = set()
        self.calls = defaultdict(int)
        self.errors = []

    def spent(self, account, amount, uncertain=False):
        with self.lock:
            for a in chain(account):
                (self.uncertain if uncertain else self.used)[a] += amount


def connect():
    conn = psycopg2.connect("")
    conn.autocommit = True
    return conn


def reconnect(deadline):
    while time.time() < deadline + 60:
        try:
            return connect()
        except psycopg2.OperationalError:
            time.sleep(0.2)
    return None


def pick(rnd):
    r = rnd.random()
    if r < 0.75:
        return rnd.choice(USERS)[0]
    if r < 0.95:
        return rnd.choice(TEAMS)[0]
    return ORG[0]


def worker(n, deadline, ledger, crash_window):
    rnd = random.Random(n)
    conn = connect()
    cur = conn.cursor()
    mine = []       # (reservation, account, amount)
    pending = None  # (account, credits that may have been spent, reservations being settled)

    def call(sql, args):
        cur.execute(sql, args)
        return cur.fetchone()

    while time.time() < deadline:
        account = pick(rnd)
        op = rnd.random()
        try:
            if op < 0.32:
                amount = rnd.randint(1, 3)
                short = rnd.random() < 0.25
                hold_for = "300 milliseconds" if short else rnd.choice(["15 minutes", None])
                key = "w%d-%d" % (n, rnd.getrandbits(40)) if rnd.random() < 0.3 else None
                pending = (account, 0, [])
                g = call("SELECT %s FROM quota.reserve_credit(%%s, %%s, 'credits', %%s::interval, %%s)" % GRANT_COLS,
                         (account, amount, hold_for, key))
                ledger.grants.append((account, g))
                ledger.calls["reserve"] += 1
                if key is not None and rnd.random() < 0.5:
                    g2 = call("SELECT %s FROM quota.reserve_credit(%%s, %%s, 'credits', %%s::interval, %%s)"
                              % GRANT_COLS, (account, amount, hold_for, key))
                    ledger.calls["reserve retry"] += 1
                    if g[0] and (not g2[0] or g2[1] != g[1]):
                        ledger.errors.append("retry with key %s answered %r after %r" % (key, g2, g))
                if g[0] and not short:
                    with ledger.lock:
                        ledger.open[g[1]] = (account, amount)
                    mine.append((g[1], account, amount))
            elif op < 0.52 and mine:
                rid, acc, held = mine.pop(rnd.randrange(len(mine)))
                amount = rnd.choice([None, held, held - 1, 0])
                settled = held if amount is None else amount
                pending = (acc, settled, [rid])
                g = call("SELECT %s FROM quota.commit_credit(%%s, %%s)" % GRANT_COLS, (rid, amount))
                ledger.calls["commit"] += 1
                if not g[0]:
                    ledger.errors.append("commit of %d not granted: %r" % (rid, g))
                with ledger.lock:
                    ledger.open.pop(rid, None)
                    ledger.committed[rid] = settled
                ledger.spent(acc, settled)
                ledger.grants.append((acc, g))
            elif op < 0.62 and mine:
                rid, acc, _ = mine.pop(rnd.randrange(len(mine)))
                pending = (acc, 0, [rid])
                (ok,) = call("SELECT quota.release_credit(%s)", (rid,))
                ledger.calls["release"] += 1
                if not ok:
                    ledger.errors.append("release of open reservation %d answered false" % rid)
                with ledger.lock:
                    ledger.open.pop(rid, None)
                    ledger.released.add(rid)
            elif op < 0.82:
                amount = rnd.randint(1, 3)
                pending = (account, amount, [])
                g = call("SELECT %s FROM quota.charge_credit(%%s, %%s)" % GRANT_COLS, (account, amount))
                ledger.calls["charge"] += 1
                if g[0]:
                    ledger.spent(account, amount)
                ledger.grants.append((account, g))
            elif op < 0.94:
                # Several calls on one user in one transaction; committed or rolled back.
                user = rnd.choice(USERS)[0]
                writes, reserved, settled_here, grants = 0, [], [], []
                cur.execute("BEGIN")
                try:
                    for _ in range(rnd.randint(2, 3)):
                        own = [m for m in mine if m[1] == user]
                        kind = rnd.random()
                        if kind < 0.3 and own:
                            m = own[rnd.randrange(len(own))]
                            mine.remove(m)
                            settled_here.append(m)
                            g = call("SELECT %s FROM quota.commit_credit(%%s)" % GRANT_COLS, (m[0],))
                            writes += m[2]
                        elif kind < 0.6:
                            amount = rnd.randint(1, 3)
                            g = call("SELECT %s FROM quota.reserve_credit(%%s, %%s)" % GRANT_COLS, (user, amount))
                            if g[0]:
                                reserved.append((g[1], user, amount))
                        else:
                            amount = rnd.randint(1, 3)
                            g = call("SELECT %s FROM quota.charge_credit(%%s, %%s)" % GRANT_COLS, (user, amount))
                            if g[0]:
                                writes += amount
                        grants.append((user, g))
                        ledger.calls["in a transaction"] += 1
                except psycopg2.Error as e:
                    if e.pgcode != "55P03":
                        raise
                    cur.execute("ROLLBACK")
                    mine.extend(settled_here)
                    ledger.calls["transactions refused (55P03)"] += 1
                    continue
                commit = rnd.random() < 0.8
                pending = (user, writes, [m[0] for m in settled_here]) if commit else None
                cur.execute("COMMIT" if commit else "ROLLBACK")
                pending = None
                if commit:
                    ledger.spent(user, writes)
                    with ledger.lock:
                        ledger.grants.extend(grants)
                        for rid, acc, amount in reserved:
                            ledger.open[rid] = (acc, amount)
                        for rid, acc, amount in settled_here:
                            ledger.open.pop(rid, None)
                            ledger.committed[rid] = amount
                    mine.extend(reserved)
                    ledger.calls["transactions committed"] += 1
                else:
                    mine.extend(settled_here)
                    ledger.calls["transactions rolled back"] += 1
            elif op < 0.96:
                pending = None
                call("SELECT quota.expire_holds()", ())
                ledger.calls["expire_holds"] += 1
            else:
                pending = None
                call("SELECT quota.is_team_limited(%s)", (account,))
                ledger.calls["is_team_limited"] += 1
            pending = None
        except psycopg2.Error as e:
            if e.pgcode == "55P03" and not conn.closed:
                # A settle or capped reserve that would wait for a transaction waiting for this one.
                pending = None
                ledger.calls["refused (55P03)"] += 1
                continue
            lost = conn.closed or e.pgcode is None or e.pgcode.startswith("57")
            if not (crash_window.is_set() and lost):
                ledger.errors.append("worker %d: %s %s" % (n, e.pgcode, str(e).strip()))
                return
            if pending is not None:
                acc, amount, rids = pending
                ledger.spent(acc, amount, uncertain=True)
                with ledger.lock:
                    for r in rids:
                        ledger.open.pop(r, None)
                        ledger.unsure.add(r)
                ledger.calls["lost in crash"] += 1
            pending = None
            conn = reconnect(deadline)
            if conn is None:
                ledger.errors.append("worker %d could not reconnect" % n)
                return
            cur = conn.cursor()


def audit(ledger):
    failures = list(ledger.errors)
    conn = connect()
    cur = conn.cursor()
    for account, g in ledger.grants:
        granted, rid, used, held, limit, remaining, _, _ = g
        if limit != LIMITS[account]:
            failures.append("%s: limit %r in %r" % (account, limit, g))
        if granted and rid is not None and used + held > limit:
            failures.append("%s: reserve granted past the limit: %r" % (account, g))
        if remaining is not None and (remaining < 0 or remaining > max(limit - used - held, 0)):
            failures.append("%s: remaining %r beyond its own in %r" % (account, remaining, g))

    cur.execute("SELECT quota.expire_holds()")
    cur.execute("SELECT a.team, a.used + COALESCE(s.used, 0), a.held + COALESCE(s.held, 0), a.credit_limit"
                " FROM quota.accounts a LEFT JOIN (SELECT team, sum(used) AS used, sum(held) AS held"
                "  FROM quota.slots GROUP BY team) s USING (team)")
    for team, used, held, limit in cur.fetchall():
        acked, unsure = ledger.used[team], ledger.uncertain[team]
        if not acked <= used <= acked + unsure:
            failures.append("%s: used %d, acknowledged %d (+%d uncertain)" % (team, used, acked, unsure))
        if used + held > limit:
            # Only a commit of an expired hold may go past the limit here, and this run commits none late.
            failures.append("%s: used %d + held %d over the limit %d" % (team, used, held, limit))
    cur.execute("SELECT a.team, a.held + COALESCE((SELECT sum(s.held) FROM quota.slots s WHERE s.team = a.team), 0),"
                " COALESCE((SELECT sum(h.amount) FROM quota.holds h WHERE h.team = a.team AND h.state = 'open'), 0)"
                " FROM quota.accounts a")
    for team, stored, open_sum in cur.fetchall():
        if stored != open_sum:
            failures.append("%s: stored held %d, open holds %d" % (team, stored, open_sum))
    # Every hold made through parents: one part per account of its chain, all in one state.
    cur.execute("SELECT c.id, c.team, array_agg(p.team ORDER BY p.id), array_agg(DISTINCT p.state), c.state"
                " FROM quota.holds c JOIN quota.holds p ON p.origin = c.id AND p.id <> c.id"
                " WHERE c.origin = c.id GROUP BY c.id, c.team, c.state")
    chains = 0
    for rid, team, parts, states, state in cur.fetchall():
        chains += 1
        if parts != chain(team)[:0:-1]:     # made root first
            failures.append("hold %d of %s: parts on %r" % (rid, team, parts))
        if states != [state]:
            failures.append("hold %d: %s, its parts %r" % (rid, state, states))
    cur.execute("SELECT id, state, committed FROM quota.holds WHERE origin IS NULL OR origin = id")
    holds = {rid: (state, committed) for rid, state, committed in cur.fetchall()}
    for rid, amount in ledger.committed.items():
        if rid in ledger.unsure:
            continue
        if holds.get(rid, (None,))[0] != "committed" or holds[rid][1] != amount:
            failures.append("reservation %d: committed %d, stored %r" % (rid, amount, holds.get(rid)))
    for rid in ledger.released:
        if rid not in ledger.unsure and holds.get(rid, (None,))[0] != "released":
            failures.append("reservation %d: released, stored %r" % (rid, holds.get(rid)))
    for rid, (acc, amount) in ledger.open.items():
        if holds.get(rid, (None,))[0] not in ("open", "expired"):
            failures.append("reservation %d of %s: open for the client, stored %r" % (rid, acc, holds.get(rid)))
    cur.execute("SELECT team, open_holds, cap FROM public.cap_seen WHERE open_holds > cap")
    for team, seen, cap in cur.fetchall():
        failures.append("%s: a hold was granted with %d unexpired open holds, cap %d" % (team, seen, cap))
    cur.execute("SELECT count(*) FROM public.cap_seen")
    capped = cur.fetchone()[0]
    conn.close()
    return failures, chains, capped


def burst(clients=50, cap=3):
    """A cap of `cap` on a key under a team, `clients` reserves at the same instant (each its own
    connection and transaction): exactly `cap` granted, the rest denied with a retry_after, and the
    key and its team each hold exactly `cap` credits.  Returns failures."""
    conn = connect()
    cur = conn.cursor()
    cur.execute("SELECT quota.set_account('burst-team', 1000), quota.set_account('burst-key', 100)")
    cur.execute("SELECT quota.set_parent('burst-key', 'burst-team'), quota.set_concurrency('burst-key', %s)", (cap,))
    start = threading.Barrier(clients)
    replies = []
    lock = threading.Lock()

    def one():
        c = connect()
        k = c.cursor()
        start.wait()
        k.execute("SELECT granted, retry_after FROM quota.reserve_credit('burst-key', 1, hold_for => '1 minute')")
        row = k.fetchone()
        with lock:
            replies.append(row)
        c.close()

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failures = []
    granted = sum(1 for g, _ in replies if g)
    if len(replies) != clients or granted != cap:
        failures.append("burst: %d of %d replies, %d granted on a cap of %d" % (len(replies), clients, granted, cap))
    if any(not g and r is None for g, r in replies):
        failures.append("burst: a reserve denied by the cap without retry_after")
    cur.execute("SELECT team, held FROM quota.usage WHERE team IN ('burst-key', 'burst-team') ORDER BY team")
    for team, held in cur.fetchall():
        if held != cap:
            failures.append("burst: %s holds %d, expected %d" % (team, held, cap))
    print("burst: %d concurrent reserves on a key capped at %d under a team: %d granted" % (clients, cap, granted))
    cur.execute("DELETE FROM quota.links WHERE team LIKE 'burst-%'; DELETE FROM quota.holds WHERE team LIKE 'burst-%';"
                " DELETE FROM quota.slots WHERE team LIKE 'burst-%'; DELETE FROM quota.accounts WHERE team LIKE 'burst-%'")
    conn.close()
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--crash", action="store_true")
    args = parser.parse_args()

    conn = connect()
    cur = conn.cursor()
    cur.execute("DELETE FROM quota.links; DELETE FROM quota.holds; DELETE FROM quota.slots; DELETE FROM quota.accounts")
    for name, limit in LIMITS.items():
        cur.execute("SELECT quota.set_account(%s, %s)", (name, limit))
    for name, parent in PARENT.items():
        cur.execute("SELECT quota.set_parent(%s, %s)", (name, parent))
    for name, cap in CAPS.items():
        cur.execute("SELECT quota.set_concurrency(%s, %s)", (name, cap))
    # Caps at every instant: each hold inserted on a capped account counts the account's
    # unexpired open holds (committed and its own transaction's) right then.
    cur.execute("""
        CREATE TABLE IF NOT EXISTS public.cap_seen (team text, open_holds bigint, cap integer);
        TRUNCATE public.cap_seen;
        CREATE OR REPLACE FUNCTION public.count_capped() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            the_cap integer;
        BEGIN
            SELECT l.max_open_holds INTO the_cap FROM quota.links l
             WHERE l.team = NEW.team AND l.resource = NEW.resource;
            IF the_cap IS NOT NULL THEN
                INSERT INTO public.cap_seen
                SELECT NEW.team, count(*), the_cap FROM quota.holds h
                 WHERE h.team = NEW.team AND h.resource = NEW.resource AND h.state = 'open'
                   AND (h.expires_at IS NULL OR h.expires_at > now());
            END IF;
            RETURN NEW;
        END $$;
        DROP TRIGGER IF EXISTS count_capped ON quota.holds;
        CREATE TRIGGER count_capped AFTER INSERT ON quota.holds
            FOR EACH ROW EXECUTE FUNCTION public.count_capped();
    """)
    conn.close()

    ledger = Ledger()
    crash_window = threading.Event()
    start = time.time()
    deadline = start + args.seconds
    threads = [threading.Thread(target=worker, args=(n, deadline, ledger, crash_window)) for n in range(args.workers)]
    for t in threads:
        t.start()
    if args.crash:
        time.sleep(args.seconds / 2)
        crash_window.set()
        print("crash: pg_ctl restart -m immediate at %.1fs" % (time.time() - start), flush=True)
        subprocess.run(os.environ["QUOTA_PGCTL"].split() + ["-D", os.environ["QUOTA_PGDATA"], "-m", "immediate",
                        "-w", "restart"], check=True, stdout=subprocess.DEVNULL)
    for t in threads:
        t.join()
    elapsed = time.time() - start

    failures, chains, capped = audit(ledger)
    total = sum(ledger.calls.values())
    print("%d workers, %.1fs, %d calls (%s), %d grants audited, %d holds made through parents, %d capped holds"
          % (args.workers, elapsed, total, ", ".join("%s %d" % kv for kv in sorted(ledger.calls.items())),
             len(ledger.grants), chains, capped))
    conn = connect()
    cur = conn.cursor()
    cur.execute("SELECT string_agg(team || ':' || slots, ', ' ORDER BY team) FROM quota.accounts WHERE slots > 0")
    print("denied grants: %d; slotted at the end: %s" % (sum(1 for _, g in ledger.grants if not g[0]),
                                                      cur.fetchone()[0]))
    cur.execute("DROP TRIGGER IF EXISTS count_capped ON quota.holds")
    failures += burst()
    if failures:
        for f in failures[:40]:
            print("AUDIT FAILURE:", f)
        print("audit: %d failures" % len(failures))
        return 1
    print("audit: all invariants hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
