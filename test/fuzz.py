#!/usr/bin/python3
"""Randomized bad-input test of every SQL function of the quota extension.

    test/fuzz.py [--seed N] [--calls N]

Connects with the PG* environment variables (as a superuser), recreates the
database quota_fuzz with CREATE EXTENSION quota, and makes --calls (default
3000) random calls of quota.set_account, set_slots, reserve_credit,
commit_credit, release_credit, charge_credit, is_team_limited, expire_holds,
window_at, set_alerts, purge_holds, purge_history, set_parent, set_concurrency and reads of quota.usage
and quota.usage_history.  Valid calls (accounts, open, committed
and released holds, slotted accounts) are mixed with bad and extreme
arguments: NULLs, 0, -1, bigint extremes, interval extremes (zero, negative,
mixed-sign, a million years ...), timestamps at the ends of the range and
infinity, and text that is empty, 256/257 bytes, 1 MB, non-ASCII (a 257-byte
name whose 256th byte is inside a character), or full of quotes, backslashes,
control and printf characters.  Every value is a server-side SQL expression
that was checked once to be constructible, so no error can come from casting
the fuzzer's own literals; text is written as ASCII (U&'...'), so it reaches
the server whatever the client encoding.  The session varies: TimeZone,
client_encoding UTF8/LATIN1, and SET quota.default_limit / default_period.
A call runs in autocommit, under a SAVEPOINT in an explicit transaction, in
a transaction that is rolled back, or in a READ ONLY transaction.

A call misbehaves (it is printed with the seed, session and SQL to rerun it) if:
  * it raises a SQLSTATE outside the contract's bad-input table (22004 22023
    22003 P0002 55000 22008 25006); a SET of quota.default_* may raise 22023 only
  * the connection is lost (a crash) or statement_timeout cancels it (a hang)
  * quota.accounts, holds, slots, alert_settings, events or history differ after a call that raised
    an error (also after ROLLBACK TO SAVEPOINT), after a rolled-back
    transaction, or after a read-only transaction
  * an error message or a result is not valid in the client encoding
  * it accepts an argument the contract's table rejects (NULL, empty or
    over-long names, over-long keys, amount <= 0, credit_limit < 0, period or
    hold_for <= 0 or out of timestamptz range, slots outside 0..256, an
    infinite anchor with a period), or rejects it with a SQLSTATE the table
    does not give for it; a SET of quota.default_limit/default_period that
    accepts an invalid value (negative, zero, absurd) or rejects a valid one
  * a writing function succeeds inside a READ ONLY transaction
  * an invariant breaks after a call: used >= 0 and held >= 0 (accounts,
    slots and quota.usage); stored held (account row plus its slots) = sum of
    the account's open holds; quota.usage held = sum of its unexpired open
    holds, remaining and limited as defined, the window containing now();
    a reply's remaining = greatest(limit - used - held, 0), a grant within
    the limit, a denial without reservation and with retry_after >= 1 when
    the budget resets; window_at's window contains `at`, and is not NULL for
    non-NULL arguments; expire_holds() returns a count >= 0
  * a denied grant changed anything (accounts, their usage, or holds)
  * reading quota.usage or calling expire_holds() raises any error at all
  * an error's primary message is capitalised (PostgreSQL's style guide).
At the end the server must not have restarted or crashed (postmaster start
time and shared-statistics reset time unchanged) and a fresh connection must
work.  The last line is `fuzz: N passed, M failed` (calls that behaved /
misbehaved); the exit status is 1 when M > 0.  Accounts or holds that a
misbehaving build let in (names over 256 bytes, ...) are removed again, so
one bug does not drown the rest of the run.
"""
import argparse
import random
import sys
import time

import psycopg2

DATABASE = "quota_fuzz"
ALLOWED = {"22004", "22023", "22003", "P0002", "55000", "22008", "25006"}
ALLOWED_FOR_SET = {"22023"}
BIGINT_MAX = 2 ** 63 - 1
BIGINT_MIN = -2 ** 63
RANGE_CODES = {"22008", "22023"}
STATEMENT_TIMEOUT = "3s"
# The server's identity: a restart changes the start time; a crash restart
# keeps it but resets the shared statistics.
SERVER_EPOCH = "SELECT format('started %s, shared stats reset %s', pg_postmaster_start_time(), stats_reset)" \
               " FROM pg_stat_bgwriter"


# ---------------------------------------------------------------- values

def sql_string(s):
    """A SQL string literal for s made of printable ASCII only (U&'' when needed)."""
    if all(32 <= ord(c) < 127 and c != "\\" for c in s):
        return "'" + s.replace("'", "''") + "'"
    out = []
    for c in s:
        o = ord(c)
        if c == "\\":
            out.append("\\\\")
        elif c == "'":
            out.append("''")
        elif 32 <= o < 127:
            out.append(c)
        elif o <= 0xFFFF:
            out.append("\\%04X" % o)
        else:
            out.append("\\+%06X" % o)
    return "U&'" + "".join(out) + "'"


class Text:
    """A text value built from (unit, count) segments, written with repeat()."""

    def __init__(self, *segments):
        self.segments = [(s, 1) if isinstance(s, str) else s for s in segments]
        self.value = "".join(unit * n for unit, n in self.segments)
        self.nbytes = len(self.value.encode())

    def sql(self):
        parts = [sql_string(u) if n == 1 else "repeat(%s, %d)" % (sql_string(u), n)
                 for u, n in self.segments]
        return " || ".join(parts)

    def __eq__(self, other):
        return isinstance(other, Text) and self.value == other.value

    def __hash__(self):
        return hash(self.value)


class Value:
    """One argument: typed SQL, and the contract's verdict on it (fault)."""

    def __init__(self, sql, fault=None, data=None, tolerates=()):
        self.sql = sql
        self.fault = fault          # None, or (what is wrong, SQLSTATEs the table gives)
        self.data = data            # the Python value or pool entry it came from
        self.tolerates = set(tolerates)   # SQLSTATEs that are also a fair answer to it

    def is_null(self):
        return self.sql.startswith("NULL")


def null(sqltype, role=None):
    """A NULL; when role is given, a NULL the contract rejects with 22004."""
    return Value("NULL::%s" % sqltype, ("%s is NULL" % role, {"22004"}) if role else None)


def meaningless_null(sqltype):
    """A NULL the contract gives no meaning to: an error 22004 or an answer are both fair."""
    return Value("NULL::%s" % sqltype, None, None, {"22004"})


OK_TEAMS = [Text("acme"), Text("beta"), Text("ü"), Text("日本語"), Text("😀 team"),
            Text("o'neil\\x"), Text(("x", 256)), Text(("ü", 128)), Text("a", ("日", 85)),
            Text(("a", 252), "😀")]
CREDITS = Text("credits")
OK_RESOURCES = [CREDITS] * 4 + [Text("ai"), Text("ü-res")]
EDGE_NAMES = [Text(""), Text(("x", 257)), Text(("ü", 128), "a"), Text("a", ("ü", 128)),
              Text("ab", ("日", 85)), Text(("a", 254), "😀"), Text(("😀", 65)),
              Text("ü"), Text("日本語"), Text("😀🎉"), Text("O'Brien"), Text("back\\slash"),
              Text("a\\0b"), Text('"quoted"'), Text("%s%n%x%d%%"), Text("x'); DROP TABLE quota.accounts; --"),
              Text("\x01\x7f"), Text("tab\tnew\nline"), Text("\u200b"), Text("\ufffd"), Text(" "),
              Text("\u00a0"), Text("credits")]
HUGE_NAMES = [Text(("x", 1 << 20)), Text(("日", 349526)), Text(("ü", 300000), "x")]
EDGE_KEYS = [Text(""), Text(("k", 512)), Text(("k", 513)), Text(("k", 6400)), Text(("ü", 256)),
             Text(("ü", 256), "a"), Text("a", ("ü", 256)), Text(("a", 510), "😀"), Text("%s%n"),
             Text("日本語"), Text("O'Brien\\")]
HUGE_KEYS = [Text(("k", 1 << 20)), Text(("日", 349526))]
EDGE_BIGINTS = [0, -1, 1, 2, BIGINT_MAX, BIGINT_MAX - 1, BIGINT_MAX - 2, BIGINT_MIN, BIGINT_MIN + 1,
                2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53 + 1, 2 ** 62, -2 ** 62]
EDGE_SLOTS = [0, -1, 1, 256, 257, 2 ** 31 - 1, -2 ** 31, 1000]

# Interval and timestamp pools: SQL expressions, checked once against the server (Pools).
OK_PERIODS = ["interval '1 day'", "interval '1 month'", "interval '7 days'", "interval '1 hour'"]
OK_HOLDS = ["interval '15 minutes'", "interval '1 hour'", "interval '1 day'"]
EDGE_INTERVALS = [
    "interval '0'", "interval '-1 day'", "interval '1 month -40 days'", "interval '1 day -1 second'",
    "interval '1000000 years'", "interval '178000000 years'", "interval '-178000000 years'",
    "make_interval(years => 1000000, hours => 1482371152) + interval '219.103232 seconds'",
    "interval '1 microsecond'", "interval '-1 microsecond'", "interval '2147483647 days'",
    "interval '2147483647 months'", "interval '-2147483648 days'", "interval '2147483647 hours'",
    "interval '300000 years'", "interval '1 year 1 microsecond'", "interval '1 month'",
]
OK_STAMPS = ["timestamptz '2024-01-31 00:00:00+00'", "timestamptz '2000-02-29 23:30:00+05:45'",
             "timestamptz '2023-03-12 02:30:00-05'", "now() - interval '36 hours'"]
EDGE_STAMPS = [
    "timestamptz '4714-11-24 00:00:00+00 BC'", "timestamptz '294276-12-31 23:59:59+00'",
    "timestamptz '294276-12-31 23:59:59.999999+00'", "timestamptz '294276-12-30+00'",
    "timestamptz 'infinity'", "timestamptz '-infinity'", "timestamptz '2100-01-01 00:00:00+00'",
    "timestamptz '4714-11-24 00:00:00.000001+00 BC'", "timestamptz '1970-01-01 00:00:00+00'",
]
TIMEZONES = ["UTC", "America/New_York", "Asia/Kathmandu", "Pacific/Chatham", "EST5EDT", "+14", "-12:30",
             "Australia/Lord_Howe"]
# SET quota.default_*: (value, True = must be accepted / False = must be refused / None = either).
LIMIT_SETTINGS = [("0", True), ("5", True), ("100", True), ("9223372036854775807", True),
                  ("-1", False), ("lots", False), ("99999999999999999999", False), ("1.5", False),
                  ("-9223372036854775808", False), ("", None), ("RESET", True)]
PERIOD_SETTINGS = [("1 day", True), ("1 month", True), ("P1M", True), ("1 hour", True),
                   ("0", False), ("-1 day", False), ("1 month -40 days", False), ("fortnightly", False),
                   ("1000000 years", False), ("178000000 years", False), ("2147483647 days", False),
                   ("2147483647 months", False), ("RESET", True)]


class Interval:
    """A pool interval and what it means as a period or a hold_for."""

    def __init__(self, sql, nonpositive, beyond_range, hold_overflows):
        self.sql = sql
        self.nonpositive = nonpositive        # <= '0' by PostgreSQL's own comparison
        self.beyond_range = beyond_range      # no window of this length fits in timestamptz's range
        self.hold_overflows = hold_overflows  # now() + it leaves timestamptz's range


class Stamp:
    def __init__(self, sql, finite):
        self.sql = sql
        self.finite = finite


class Pools:
    """Interval and timestamp expressions that the server can build."""

    def __init__(self, session):
        self.skipped = []
        self.ok_periods = self.intervals(session, OK_PERIODS)
        self.ok_holds = self.intervals(session, OK_HOLDS)
        self.edge_intervals = self.intervals(session, EDGE_INTERVALS)
        self.microsecond = self.intervals(session, ["interval '1 microsecond'"])[0]
        self.ok_stamps = self.stamps(session, OK_STAMPS)
        self.edge_stamps = self.stamps(session, EDGE_STAMPS)

    def intervals(self, session, exprs):
        out = []
        for sql in exprs:
            row = session.probe("SELECT (%s)::interval <= interval '0'" % sql)
            if row is None:
                self.skipped.append(sql)
                continue
            beyond = session.probe("SELECT isfinite(timestamptz '4714-11-24 00:00:00+00 BC' + (%s)::interval)"
                                   % sql) is None
            overflows = session.probe("SELECT isfinite(now() + (%s)::interval)" % sql) is None
            out.append(Interval(sql, row[0], beyond and not row[0], overflows))
        return out

    def stamps(self, session, exprs):
        out = []
        for sql in exprs:
            row = session.probe("SELECT isfinite((%s)::timestamptz)" % sql)
            if row is None:
                self.skipped.append(sql)
            else:
                out.append(Stamp(sql, row[0]))
        return out


# ---------------------------------------------------------------- the session

class ConnectionLost(Exception):
    pass


class CallError:
    """An error a call raised, and whether its text was valid in the client encoding."""

    def __init__(self, code, message, encoding_problem=None):
        self.code = code
        self.message = message
        self.encoding_problem = encoding_problem


def error_encoding_problem(e, sql):
    """psycopg2 raises UnicodeDecodeError, returns bytes, or puts U+FFFD in place of bytes it cannot decode."""
    if isinstance(e.pgerror, bytes):
        return "error message is not valid in the client encoding: %r" % e.pgerror[:200]
    for field in ("message_primary", "message_detail", "message_hint"):
        try:
            text = getattr(e.diag, field) or ""
        except UnicodeDecodeError as u:
            return "%s is not valid in the client encoding: %s" % (field, u)
        if "\ufffd" in text and "FFFD" not in sql.upper():
            return "%s is not valid in the client encoding (decoded with U+FFFD): %r" % (field, text[:200])
    return None


class Session:
    """One connection in autocommit mode, and the settings it was given."""

    def __init__(self, dbname):
        self.conn = psycopg2.connect(dbname=dbname)
        self.conn.autocommit = True
        self.cur = self.conn.cursor()
        self.settings = {}
        self.run("LOAD 'quota'")
        self.run("SET statement_timeout = '%s'" % STATEMENT_TIMEOUT)
        self.run("SET jit = off")       # JIT compiling the fuzzer's own state queries costs more than they do

    def close(self):
        try:
            self.conn.close()
        except psycopg2.Error:
            pass

    def run(self, sql):
        """Execute; rows (or None); psycopg2 errors propagate, a lost connection is ConnectionLost."""
        try:
            self.cur.execute(sql)
            return self.cur.fetchall() if self.cur.description else None
        except psycopg2.Error as e:
            if self.conn.closed or e.pgcode is None or e.pgcode.startswith("57P"):
                raise ConnectionLost(str(e).strip()) from e
            raise

    def attempt(self, sql):
        """Execute a fuzzed statement: (rows, None) or (None, CallError)."""
        try:
            return self.run(sql), None
        except psycopg2.Error as e:
            problem = error_encoding_problem(e, sql)
            primary = None
            if problem is None:
                primary = e.diag.message_primary
            return None, CallError(e.pgcode, primary, problem)
        except UnicodeDecodeError as u:
            return None, CallError(None, None, "reply not valid in the client encoding: %s" % u)

    def probe(self, sql):
        """First row of sql, or None when it raises an error."""
        try:
            rows = self.run(sql)
            return rows[0] if rows else None
        except psycopg2.Error:
            return None

    def set(self, name, value):
        if name == "client_encoding":
            self.conn.set_client_encoding(value)
        elif value == "RESET":
            self.run("RESET %s" % name)
        else:
            self.run("SET %s = %s" % (name, sql_string(value)))
        if value == "RESET":
            self.settings.pop(name, None)
        else:
            self.settings[name] = value

    def describe(self):
        return " ".join("SET %s = %s;" % (k, sql_string(v)) for k, v in sorted(self.settings.items())) \
            or "(defaults)"


# ---------------------------------------------------------------- helpers in the database

HELPERS = r"""
CREATE SCHEMA fuzz;

-- Every row of the extension's tables: its table, a digest, and (only
-- fetched to show a difference) its beginning.  Rows are rendered in the
-- session's TimeZone, which no call changes.
CREATE VIEW fuzz.raw_state AS
    SELECT 1 AS t, 'accounts' AS tab, md5(a::text) AS digest, convert_to(left(a::text, 160), 'UTF8') AS preview,
           row_number() OVER (ORDER BY a.team, a.resource) AS n
      FROM quota.accounts a
    UNION ALL
    SELECT 2, 'holds', md5(h::text), convert_to(left(h::text, 160), 'UTF8'), row_number() OVER (ORDER BY h.id)
      FROM quota.holds h
    UNION ALL
    SELECT 3, 'slots', md5(s::text), convert_to(left(s::text, 160), 'UTF8'),
           row_number() OVER (ORDER BY s.team, s.resource, s.slot)
      FROM quota.slots s
    UNION ALL
    SELECT 4, 'alert_settings', md5(x::text), convert_to(left(x::text, 160), 'UTF8'),
           row_number() OVER (ORDER BY x.team, x.resource)
      FROM quota.alert_settings x
    UNION ALL
    SELECT 5, 'events', md5(e::text), convert_to(left(e::text, 160), 'UTF8'), row_number() OVER (ORDER BY e.id)
      FROM quota.events e
    UNION ALL
    SELECT 7, 'links', md5(l::text), convert_to(left(l::text, 160), 'UTF8'),
           row_number() OVER (ORDER BY l.team, l.resource)
      FROM quota.links l
    UNION ALL
    SELECT 6, 'history', md5(h::text), convert_to(left(h::text, 160), 'UTF8'),
           row_number() OVER (ORDER BY h.team, h.resource, h.window_start, h.part)
      FROM quota.history h;

-- What a denied grant must not change: accounts (their settings and
-- quota.usage's used and held) and holds, with lazy expiry and the rollover
-- of short windows counted as no change.
CREATE FUNCTION fuzz.logical_state() RETURNS SETOF bytea
LANGUAGE sql STABLE AS $$
    SELECT convert_to(x, 'UTF8') FROM (
        SELECT format('account %s/%s limit=%s unlimited=%s period=%s anchor=%s slots=%s used=%s held=%s',
                      left(a.team, 30), left(a.resource, 30), a.credit_limit, a.unlimited, a.period,
                      a.anchor, a.slots,
                      CASE WHEN a.period IS NULL OR a.period >= interval '1 hour' THEN u.used END, u.held) AS x
          FROM quota.accounts a
          LEFT JOIN quota.usage u ON u.team = a.team AND u.resource = a.resource
        UNION ALL
        SELECT format('hold %s %s/%s amount=%s committed=%s key=%s state=%s', h.id, left(h.team, 30),
                      left(h.resource, 30), h.amount, h.committed, md5(h.idempotency_key),
                      CASE WHEN h.state = 'open' AND h.expires_at <= now() THEN 'expired' ELSE h.state END)
          FROM quota.holds h) s
     ORDER BY x
$$;

-- The positive invariants: one row per (account, broken rule).
CREATE FUNCTION fuzz.invariants(OUT account bytea, OUT rule text, OUT detail text) RETURNS SETOF record
LANGUAGE sql STABLE AS $$
    WITH open AS (
        SELECT team, resource, sum(amount) AS open_sum,
               coalesce(sum(amount) FILTER (WHERE expires_at IS NULL OR expires_at > now()), 0) AS live_sum
          FROM quota.holds WHERE state = 'open' GROUP BY team, resource),
    sl AS (
        SELECT team, resource, sum(held) AS held, min(used) AS min_used, min(held) AS min_held
          FROM quota.slots GROUP BY team, resource),
    r AS (
        SELECT a.team, a.resource, a.used, a.held, a.anchor, a.period, sl.min_used, sl.min_held,
               a.held + coalesce(sl.held, 0) AS stored_held, coalesce(o.open_sum, 0) AS open_sum,
               coalesce(o.live_sum, 0) AS live_sum, u.team IS NOT NULL AS in_usage,
               u.used AS u_used, u.held AS u_held, u.credit_limit, u.remaining, u.unlimited, u.limited,
               u.window_start, u.resets_at
          FROM quota.accounts a
          LEFT JOIN sl ON sl.team = a.team AND sl.resource = a.resource
          LEFT JOIN open o ON o.team = a.team AND o.resource = a.resource
          LEFT JOIN quota.usage u ON u.team = a.team AND u.resource = a.resource)
    SELECT convert_to(left(r.team, 40) || '/' || left(r.resource, 40), 'UTF8'), c.rule, c.detail
      FROM r, LATERAL (VALUES
        ('stored used < 0', r.used < 0, format('used %s', r.used)),
        ('stored held < 0', r.held < 0, format('held %s', r.held)),
        ('slot used or held < 0', r.min_used < 0 OR r.min_held < 0,
         format('min used %s, min held %s', r.min_used, r.min_held)),
        ('stored held <> sum of open holds', r.stored_held <> r.open_sum,
         format('account row + slots held %s, open holds %s', r.stored_held, r.open_sum)),
        ('account missing from quota.usage', NOT r.in_usage, ''),
        ('quota.usage used or held < 0 or NULL',
         r.in_usage AND (r.u_used IS NULL OR r.u_held IS NULL OR r.u_used < 0 OR r.u_held < 0),
         format('used %s, held %s', r.u_used, r.u_held)),
        ('quota.usage held <> unexpired open holds', r.in_usage AND r.u_held IS DISTINCT FROM r.live_sum,
         format('usage held %s, unexpired open holds %s', r.u_held, r.live_sum)),
        ('quota.usage remaining wrong', r.in_usage AND NOT r.unlimited
             AND r.remaining IS DISTINCT FROM greatest(r.credit_limit::numeric - r.u_used - r.u_held, 0),
         format('limit %s used %s held %s remaining %s', r.credit_limit, r.u_used, r.u_held, r.remaining)),
        ('quota.usage limited wrong', r.in_usage
             AND r.limited IS DISTINCT FROM (NOT r.unlimited AND r.u_used::numeric + r.u_held >= r.credit_limit),
         format('limit %s used %s held %s limited %s', r.credit_limit, r.u_used, r.u_held, r.limited)),
        ('quota.usage window does not contain now()', r.in_usage AND r.period IS NOT NULL AND r.anchor <= now()
             AND NOT coalesce(r.window_start <= now() AND now() < r.resets_at, false),
         format('window %s .. %s, now %s', r.window_start, r.resets_at, now()))
      ) AS c(rule, bad, detail)
     WHERE c.bad
    UNION ALL
    SELECT convert_to(left(h.team, 40) || '/' || left(h.resource, 40), 'UTF8'), 'open hold of no account',
           format('hold %s', h.id)
      FROM quota.holds h
     WHERE h.state = 'open'
       AND NOT EXISTS (SELECT FROM quota.accounts a WHERE a.team = h.team AND a.resource = h.resource)
$$;
"""

# Rows a misbehaving build let in, removed so that they do not break every later call.
QUARANTINE = """
UPDATE quota.holds SET idempotency_key = md5(idempotency_key) WHERE octet_length(idempotency_key) > 512;
DELETE FROM quota.links WHERE {bad} OR octet_length(parent) NOT BETWEEN 1 AND 256;
DELETE FROM quota.holds WHERE {bad};
DELETE FROM quota.slots WHERE {bad};
DELETE FROM quota.accounts WHERE {bad};
""".format(bad="octet_length(team) NOT BETWEEN 1 AND 256 OR octet_length(resource) NOT BETWEEN 1 AND 256")


# ---------------------------------------------------------------- calls

class Call:
    """One fuzzed call: its SQL, the faults of its arguments, how to read its reply."""

    def __init__(self, func, sql, args, writes, reply, account=None, overdraft=False, reservation=None):
        self.func = func
        self.sql = sql
        self.args = args
        self.faults = [v.fault for _, v in args if v.fault]          # [(what, {SQLSTATE})]
        self.tolerated = set().union(*(v.tolerates for _, v in args))
        self.null_args = any(v.is_null() for _, v in args)
        self.keyed = any(name == "idempotency_key" and not v.is_null() for name, v in args)
        self.writes = writes
        self.reply = reply              # 'grant', 'bool', 'void', 'count', 'window', 'usage'
        self.account = account          # (team Text, resource Text) when both were valid names
        self.overdraft = overdraft
        self.reservation = reservation  # the reservation id commit/release named


GRANT_COLUMNS = ("g.granted, g.reservation, g.used, g.held, g.credit_limit, g.remaining,"
                 " extract(epoch FROM g.resets_at), g.retry_after")


class Generator:
    """Draws calls: valid ones that build up state, and ones with edge values."""

    def __init__(self, rng, pools):
        self.rng = rng
        self.pools = pools
        self.accounts = []          # (team, resource) known to exist
        self.holds = {}             # reservation -> 'open' | 'committed' | 'released' | 'gone'
        self.edge = set()           # the arguments of the call being built that get edge values

    # -- argument values

    def name(self, role, valid):
        if role not in self.edge:
            return Value("(%s)::text" % valid.sql(), None, valid)
        r = self.rng.random()
        if r < 0.12:
            return null("text", role)
        pick = self.rng.choice(HUGE_NAMES) if r < 0.16 else self.rng.choice(EDGE_NAMES + OK_TEAMS)
        return Value("(%s)::text" % pick.sql(), self.name_fault(role, pick), pick)

    @staticmethod
    def name_fault(role, text):
        if text.nbytes == 0:
            return ("%s is empty" % role, {"22023"})
        if text.nbytes > 256:
            return ("%s is longer than 256 bytes" % role, {"22023"})
        return None

    def key(self):
        if "key" not in self.edge:
            if self.rng.random() < 0.7:
                return null("text")
            text = Text("key-%d" % self.rng.randrange(40))
            return Value("(%s)::text" % text.sql(), None, text)
        pick = self.rng.choice(HUGE_KEYS) if self.rng.random() < 0.05 else self.rng.choice(EDGE_KEYS)
        fault = ("idempotency_key is longer than 512 bytes", {"22023"}) if pick.nbytes > 512 else None
        return Value("(%s)::text" % pick.sql(), fault, pick)

    def bigint(self, role, valid, null_ok=False, bad=None):
        """valid(): a valid value; bad(n): the fault of n, or None."""
        if role in self.edge:
            if self.rng.random() < 0.1:
                return null("bigint", None if null_ok else role)
            n = self.rng.choice(EDGE_BIGINTS)
        else:
            n = valid()
        return Value("'%d'::bigint" % n, bad(n) if bad else None, n)

    def amount(self):
        return self.bigint("amount", lambda: self.rng.choice([1, 1, 1, 2, 3, 5, 10, 50]),
                           bad=lambda n: ("amount <= 0", {"22023"}) if n <= 0 else None)

    def interval(self, role, valid_pool, null_share=0.3, null_value=None):
        null_value = null_value or null("interval")
        if role not in self.edge:
            if self.rng.random() < null_share:
                return null_value
            if self.rng.random() < 0.03:
                entry = self.pools.microsecond     # windows and holds that are over at once
            else:
                entry = self.rng.choice(valid_pool)
        else:
            if self.rng.random() < 0.1:
                return null_value
            entry = self.rng.choice(self.pools.edge_intervals)
        return Value("(%s)::interval" % entry.sql, self.interval_fault(role, entry), entry)

    @staticmethod
    def interval_fault(role, entry):
        if entry.nonpositive:
            return ("%s <= 0" % role, {"22023"})
        if entry.beyond_range or (role == "hold_for" and entry.hold_overflows):
            return ("%s leaves the timestamptz range" % role, RANGE_CODES)
        return None

    def stamp(self, role, null_share=0.5, null_value=None):
        null_value = null_value or null("timestamptz")
        if role not in self.edge:
            if self.rng.random() < null_share:
                return null_value
            entry = self.rng.choice(self.pools.ok_stamps)
        else:
            if self.rng.random() < 0.1:
                return null_value
            entry = self.rng.choice(self.pools.edge_stamps)
        return Value("(%s)::timestamptz" % entry.sql, None, entry)

    def boolean(self, role, valid_true=0.2):
        if role in self.edge:
            return self.rng.choice([meaningless_null("boolean"), Value("true"), Value("false")])
        return Value("true" if self.rng.random() < valid_true else "false")

    def reservation(self):
        if "reservation" in self.edge:
            r = self.rng.random()
            if r < 0.15:
                return null("bigint", "reservation")
            n = self.rng.choice(EDGE_BIGINTS + [10 ** 12, max(self.holds, default=0) + 1])
            return Value("'%d'::bigint" % n, None, n)
        by_state = {}
        for rid, state in self.holds.items():
            by_state.setdefault(state, []).append(rid)
        weights = {"open": 6, "committed": 2, "released": 1, "gone": 1}
        states = [s for s in weights if by_state.get(s)]
        if not states:
            return Value("'%d'::bigint" % 424242, None, 424242)
        state = self.rng.choices(states, [weights[s] for s in states])[0]
        rid = self.rng.choice(by_state[state][-200:])
        return Value("'%d'::bigint" % rid, None, rid)

    # -- whole calls

    def choose_edges(self, roles):
        """Which arguments get edge values: none (half the calls), one, or several."""
        r = self.rng.random()
        if r < 0.5 or not roles:
            self.edge = set()
        elif r < 0.85:
            self.edge = {self.rng.choice(roles)}
        else:
            self.edge = {role for role in roles if self.rng.random() < 0.4}

    def pick_account(self, known=0.8):
        if self.accounts and self.rng.random() < known:
            return self.rng.choice(self.accounts)
        return self.rng.choice(OK_TEAMS), self.rng.choice(OK_RESOURCES)

    def team_resource(self, known=0.8):
        team, resource = self.pick_account(known)
        tv, rv = self.name("team", team), self.name("resource", resource)
        account = (team, resource) if not self.edge & {"team", "resource"} else None
        return tv, rv, account

    def args(self, given, optional=()):
        """name => value list; optional arguments that are not edge values are sometimes left out
        (resource only when it is the default 'credits')."""
        out = []
        for name, value in given:
            omissible = name in optional and name not in self.edge
            if name == "resource" and value.data != CREDITS:
                omissible = False
            if omissible and self.rng.random() < (0.5 if value.is_null() else 0.25):
                continue
            out.append((name, value))
        return out

    @staticmethod
    def sql_args(args):
        return ", ".join("%s => %s" % (name, value.sql) for name, value in args)

    def set_account(self):
        self.choose_edges(["team", "credit_limit", "resource", "period", "anchor", "unlimited"])
        team, resource, account = self.team_resource(known=0.5)
        limit = self.bigint("credit_limit", lambda: self.rng.choice([0, 1, 3, 10, 10, 100, 1000, BIGINT_MAX]),
                            bad=lambda n: ("credit_limit < 0", {"22023"}) if n < 0 else None)
        period = self.interval("period", self.pools.ok_periods)
        anchor = self.stamp("anchor")
        args = self.args([("team", team), ("credit_limit", limit), ("resource", resource), ("period", period),
                          ("anchor", anchor), ("unlimited", self.boolean("unlimited", 0.15))],
                         optional=("resource", "period", "anchor", "unlimited"))
        given = dict(args)
        if "anchor" in given and "period" in given and anchor.data is not None and not anchor.data.finite \
                and period.data is not None:
            anchor.fault = ("infinite anchor with a period", RANGE_CODES)
        sql = "SELECT quota.set_account(%s)" % self.sql_args(args)
        return Call("set_account", sql, args, True, "void", account)

    def set_slots(self):
        self.choose_edges(["team", "slots", "resource"])
        team, resource, account = self.team_resource(known=0.9)
        if "slots" in self.edge:
            n = self.rng.choice(EDGE_SLOTS + [None])
        else:
            n = self.rng.choice([0, 0, 1, 2, 4, 8, 16])
        if n is None:
            slots = Value("NULL::integer", None)    # back to automatic slotting
        else:
            slots = Value("'%d'::integer" % n, ("slots outside 0..256", {"22023"}) if not 0 <= n <= 256 else None)
        args = self.args([("team", team), ("slots", slots), ("resource", resource)], optional=("resource",))
        return Call("set_slots", "SELECT quota.set_slots(%s)" % self.sql_args(args), args, True,
                    "void", account)

    def reserve_credit(self):
        self.choose_edges(["team", "amount", "resource", "hold_for", "key"])
        team, resource, account = self.team_resource()
        args = self.args([("team", team), ("amount", self.amount()), ("resource", resource),
                          ("hold_for", self.interval("hold_for", self.pools.ok_holds)),
                          ("idempotency_key", self.key())],
                         optional=("amount", "resource", "hold_for", "idempotency_key"))
        sql = "SELECT %s FROM quota.reserve_credit(%s) AS g" % (GRANT_COLUMNS, self.sql_args(args))
        return Call("reserve_credit", sql, args, True, "grant", account)

    def charge_credit(self):
        self.choose_edges(["team", "amount", "resource", "allow_overdraft"])
        team, resource, account = self.team_resource()
        overdraft = self.boolean("allow_overdraft", 0.1)
        args = self.args([("team", team), ("amount", self.amount()), ("resource", resource),
                          ("allow_overdraft", overdraft)], optional=("amount", "resource", "allow_overdraft"))
        sql = "SELECT %s FROM quota.charge_credit(%s) AS g" % (GRANT_COLUMNS, self.sql_args(args))
        return Call("charge_credit", sql, args, True, "grant", account,
                    overdraft=dict(args).get("allow_overdraft", Value("false")).sql != "false")

    def commit_credit(self):
        self.choose_edges(["reservation", "amount"])
        reservation = self.reservation()
        amount = self.bigint("amount", lambda: self.rng.choice([0, 1, 1, 2, 5]), null_ok=True,
                             bad=lambda n: ("commit amount < 0", {"22023"}) if n < 0 else None)
        if "amount" not in self.edge and self.rng.random() < 0.5:
            amount = null("bigint")
        args = self.args([("reservation", reservation), ("amount", amount)], optional=("amount",))
        sql = "SELECT %s FROM quota.commit_credit(%s) AS g" % (GRANT_COLUMNS, self.sql_args(args))
        return Call("commit_credit", sql, args, True, "grant", reservation=reservation.data)

    def release_credit(self):
        self.choose_edges(["reservation"])
        reservation = self.reservation()
        args = [("reservation", reservation)]
        return Call("release_credit", "SELECT quota.release_credit(%s)" % self.sql_args(args),
                    args, True, "bool", reservation=reservation.data)

    def is_team_limited(self):
        self.choose_edges(["team", "resource"])
        team, resource, account = self.team_resource()
        args = self.args([("team", team), ("resource", resource)], optional=("resource",))
        return Call("is_team_limited", "SELECT quota.is_team_limited(%s)" % self.sql_args(args),
                    args, False, "bool", account)

    def window_at(self):
        self.edge = {"anchor", "period", "at"} if self.rng.random() < 0.7 else set()
        anchor = self.stamp("anchor", null_share=0, null_value=meaningless_null("timestamptz"))
        period = self.interval("period", self.pools.ok_periods, null_share=0,
                               null_value=meaningless_null("interval"))
        at = self.stamp("at", null_share=0, null_value=meaningless_null("timestamptz"))
        for value, role in ((anchor, "anchor"), (at, "at")):
            if value.data is not None and not value.data.finite:
                value.fault = ("infinite %s" % role, RANGE_CODES)
        args = self.args([("anchor", anchor), ("period", period), ("at", at)], optional=("at",))
        at_sql = dict(args).get("at", Value("now()")).sql
        sql = ("SELECT extract(epoch FROM w.window_start), extract(epoch FROM w.resets_at),"
               " w.window_start <= %s AND %s < w.resets_at FROM quota.window_at(%s) AS w"
               % (at_sql, at_sql, self.sql_args(args)))
        return Call("window_at", sql, args, False, "window")

    def expire_holds(self):
        return Call("expire_holds", "SELECT quota.expire_holds()", [], True, "count")

    def set_alerts(self):
        self.choose_edges(["team", "thresholds", "resource"])
        team, resource, account = self.team_resource(known=0.9)
        bad_value = ("threshold outside 1..1000", {"22023"})
        if "thresholds" in self.edge:
            thresholds = self.rng.choice([
                Value("NULL::integer[]"), Value("'{}'::integer[]"), Value("'{1,1000}'::integer[]"),
                Value("'{0}'::integer[]", bad_value), Value("'{-1}'::integer[]", bad_value),
                Value("'{1001}'::integer[]", bad_value), Value("'{2147483647}'::integer[]", bad_value),
                Value("'{-2147483648,50}'::integer[]", bad_value),
                Value("'{50,NULL}'::integer[]", ("NULL threshold", {"22004"})),
                Value("'{NULL}'::integer[]", ("NULL threshold", {"22004"})),
                Value("'{{50,80},{90,100}}'::integer[]"), Value("'[5:6]={10,20}'::integer[]"),
                Value("(SELECT array_agg(i) FROM generate_series(1, 65) i)", ("more than 64 thresholds", {"22023"})),
                Value("(SELECT array_agg(i) FROM generate_series(1, 64) i)")])
        else:
            thresholds = Value(self.rng.choice(["'{80,100}'::integer[]", "'{50}'::integer[]", "'{1,1000}'::integer[]",
                                                "NULL::integer[]", "'{100,80,80}'::integer[]"]))
        args = self.args([("team", team), ("thresholds", thresholds), ("resource", resource)], optional=("resource",))
        return Call("set_alerts", "SELECT quota.set_alerts(%s)" % self.sql_args(args), args, True, "void", account)

    def set_parent(self):
        self.choose_edges(["team", "parent", "resource"])
        team, resource, account = self.team_resource(known=0.9)
        if self.rng.random() < 0.25 and "parent" not in self.edge:
            parent = Value("NULL::text")                  # detaches
        else:
            other, _ = self.pick_account(0.9)
            parent = self.name("parent", other)
            if parent.is_null():
                parent = Value("NULL::text")              # NULL is valid here: it detaches
        args = self.args([("team", team), ("parent", parent), ("resource", resource)], optional=("resource",))
        # A cycle or a chain over 4 accounts is 22023, a missing parent P0002: they depend on the tree.
        return Call("set_parent", "SELECT quota.set_parent(%s)" % self.sql_args(args), args, True, "void", account)

    def set_concurrency(self):
        self.choose_edges(["team", "max_open_holds", "resource"])
        team, resource, account = self.team_resource(known=0.9)
        if "max_open_holds" in self.edge:
            n = self.rng.choice([None, 0, -1, 2147483647, -2147483648])
        else:
            n = self.rng.choice([None, 0, 1, 2, 3, 10])
        cap = Value("NULL::integer") if n is None else \
            Value("'%d'::integer" % n, ("max_open_holds < 0", {"22023"}) if n < 0 else None)
        args = self.args([("team", team), ("max_open_holds", cap), ("resource", resource)], optional=("resource",))
        return Call("set_concurrency", "SELECT quota.set_concurrency(%s)" % self.sql_args(args), args, True, "void",
                    account)

    def purge_holds(self):
        self.choose_edges(["settled_before"])
        before = self.stamp("settled_before", null_share=0.1, null_value=null("timestamptz", "settled_before"))
        args = self.args([("settled_before", before)], optional=("settled_before",))
        return Call("purge_holds", "SELECT quota.purge_holds(%s)" % self.sql_args(args), args, True, "purged")

    def purge_history(self):
        self.choose_edges(["ended_before"])
        before = self.stamp("ended_before", null_share=0.1, null_value=null("timestamptz", "ended_before"))
        args = [("ended_before", before)]
        return Call("purge_history", "SELECT quota.purge_history(%s)" % self.sql_args(args), args, True, "purged")

    def usage_history(self, latin1):
        names = "convert_to(team, 'UTF8'), convert_to(resource, 'UTF8')" if latin1 else "team, resource"
        sql = ("SELECT %s, window_start::text, window_end::text, credit_limit, unlimited, used"
               " FROM quota.usage_history" % names)
        return Call("usage_history", sql, [], False, "usage")

    def usage(self, latin1):
        """Read quota.usage as an application would (names as bytes when they may not fit LATIN1)."""
        names = "convert_to(team, 'UTF8'), convert_to(resource, 'UTF8')" if latin1 else "team, resource"
        sql = ("SELECT %s, credit_limit, used, held, remaining, unlimited, period::text, window_start::text,"
               " resets_at::text, limited FROM quota.usage" % names)
        return Call("usage", sql, [], False, "usage")


CALLS = {  # function: weight
    "reserve_credit": 20, "charge_credit": 15, "commit_credit": 12, "release_credit": 7,
    "set_account": 12, "set_slots": 5, "is_team_limited": 8, "window_at": 8, "expire_holds": 2, "usage": 3,
    "set_alerts": 5, "purge_holds": 1, "purge_history": 1, "usage_history": 2, "set_parent": 5,
    "set_concurrency": 3,
}
MODES = {"autocommit": 64, "savepoint": 16, "rollback": 10, "readonly": 10}


# ---------------------------------------------------------------- failures

class Failures:
    """Every misbehaving call, grouped by class; the first of each class is printed as it happens."""

    def __init__(self, seed):
        self.seed = seed
        self.classes = {}       # key -> [count, shortest example]

    def record(self, key, example):
        entry = self.classes.get(key)
        if entry is None:
            self.classes[key] = [1, example]
            print("FAIL %s\n%s" % (" | ".join(key), example), flush=True)
        else:
            entry[0] += 1
            if len(example) < len(entry[1]):
                entry[1] = example

    def summary(self):
        if not self.classes:
            return
        print("\n%d distinct failure(s) (seed %d); shortest example of each:" % (len(self.classes), self.seed))
        for key, (count, example) in sorted(self.classes.items()):
            print("\n* %s  (%d call(s))\n%s" % (" | ".join(key), count, example))


def example(seed, number, session, mode, sql, detail):
    wrapped = {
        "autocommit": "%s;",
        "savepoint": "BEGIN; SAVEPOINT fuzz; %s; ROLLBACK TO SAVEPOINT fuzz; COMMIT;",
        "rollback": "BEGIN; %s; ROLLBACK;",
        "readonly": "BEGIN READ ONLY; %s; COMMIT;",
    }[mode] % sql
    return ("    seed %d, call %d (rerun: test/fuzz.py --seed %d --calls %d)\n    session: %s\n    sql: %s\n    %s"
            % (seed, number, seed, number, session, wrapped, " ".join(detail.split())))


# ---------------------------------------------------------------- the fuzzer

class Fuzzer:
    """Draws calls, runs them, judges them, and keeps the tally."""

    def __init__(self, seed, dbname):
        self.seed = seed
        self.dbname = dbname
        self.rng = random.Random(seed)
        self.session = Session(dbname)
        self.pools = Pools(self.session)
        self.gen = Generator(self.rng, self.pools)
        self.failures = Failures(seed)
        self.passed = 0
        self.failed = 0
        self.number = 0
        self.known_violations = set()
        self.usage_broken = False

    # -- state snapshots

    def raw_state(self):
        return self.session.run("SELECT tab, digest FROM fuzz.raw_state ORDER BY t, n")

    def logical_state(self):
        try:
            return [bytes(x) for (x,) in self.session.run("SELECT * FROM fuzz.logical_state()")]
        except psycopg2.Error:
            return None         # quota.usage is broken: reported by the invariant check

    @staticmethod
    def logical_diff(before, after):
        gone = [row for row in before if row not in set(after)][:3]
        new = [row for row in after if row not in set(before)][:3]
        show = lambda row: bytes(row).decode("utf-8", "replace")
        return "; ".join(["before: " + show(r) for r in gone] + ["after: " + show(r) for r in new])

    def unchanged(self, before, when):
        after = self.raw_state()
        if after == before:
            return []
        old = set(before)
        rows = self.session.run("SELECT tab, digest, preview FROM fuzz.raw_state ORDER BY t, n")
        changed = ["%s row now %s" % (tab, bytes(preview).decode("utf-8", "replace"))
                   for tab, digest, preview in rows if (tab, digest) not in old]
        gone = len(old - {(tab, digest) for tab, digest, _ in rows})
        return [(("tables changed " + when,), "%d row(s) gone or changed; %s" % (gone, "; ".join(changed[:3])))]

    # -- one call

    def step(self):
        self.number += 1
        if self.rng.random() < 0.05:
            change = self.change_session()
            if change is None:
                return
            problems, session, sql, mode = change
        else:
            func = self.rng.choices(list(CALLS), list(CALLS.values()))[0]
            if func in ("usage", "usage_history"):
                call = getattr(self.gen, func)(self.session.settings.get("client_encoding") == "LATIN1")
            else:
                call = getattr(self.gen, func)()
            mode = self.rng.choices(list(MODES), list(MODES.values()))[0]
            if call.reply == "usage":
                mode = "autocommit"
            session, sql = self.session.describe(), call.sql
            try:
                problems = self.run_call(call, mode)
            except ConnectionLost as e:
                problems = [(("connection lost (crash?)", call.func), str(e))]
                self.recover()
        for key, detail in problems:
            self.failures.record(key, example(self.seed, self.number, session, mode, sql, detail))
        if problems:
            self.failed += 1
        else:
            self.passed += 1

    def run_call(self, call, mode):
        """Run the call in its mode; the problems with what it did."""
        before = self.raw_state()
        denial_check = mode == "autocommit" and call.func in ("reserve_credit", "charge_credit")
        logical = self.logical_state() if denial_check else None
        rows, err, problems = getattr(self, "in_" + mode)(call, before)
        if err:
            if mode in ("autocommit", "savepoint"):
                problems += self.unchanged(before, "by a failed call")
            return problems + self.judge_error(call, mode, err)
        return problems + self.judge_success(call, mode, rows, logical)

    # Each mode: (rows, error, problems so far).

    def in_autocommit(self, call, before):
        rows, err = self.session.attempt(call.sql)
        return rows, err, []

    def in_savepoint(self, call, before):
        """In an explicit transaction: a failed call rolled back to its savepoint leaves no trace."""
        self.session.run("BEGIN")
        self.session.run("SAVEPOINT fuzz")
        rows, err = self.session.attempt(call.sql)
        if not err:
            return rows, self.end_transaction("RELEASE SAVEPOINT fuzz; COMMIT"), []
        self.session.run("ROLLBACK TO SAVEPOINT fuzz")
        problems = self.unchanged(before, "by a failed call, after ROLLBACK TO SAVEPOINT")
        self.session.run("COMMIT")
        return rows, err, problems

    def in_rollback(self, call, before):
        """Whatever the call did, ROLLBACK undoes it."""
        self.session.run("BEGIN")
        rows, err = self.session.attempt(call.sql)
        self.session.run("ROLLBACK")
        return rows, err, self.unchanged(before, "by a rolled-back transaction")

    def in_readonly(self, call, before):
        """A READ ONLY transaction changes nothing, committed or not."""
        self.session.run("BEGIN READ ONLY")
        rows, err = self.session.attempt(call.sql)
        if err:
            self.session.run("ROLLBACK")
        else:
            err = self.end_transaction("COMMIT")
        return rows, err, self.unchanged(before, "by a read-only transaction")

    def end_transaction(self, sql):
        """COMMIT after a call that succeeded; an error here (a deferred check) is the call's."""
        _, err = self.session.attempt(sql)
        if err:
            self.session.run("ROLLBACK")
        return err

    def judge_error(self, call, mode, err):
        problems = []
        if err.encoding_problem:
            problems.append((("message not valid in the client encoding", call.func), err.encoding_problem))
        if err.code is None:
            return problems
        got = "got %s: %s" % (err.code, err.message)
        if mode == "readonly" and call.writes and err.code == "25006":
            return problems
        if call.reply in ("usage", "count"):
            return problems + [(("%s raised an error" % call.func, err.code), got)]
        if err.code == "57014":
            return problems + [(("statement timeout (hang)", call.func), got)]
        if err.code not in ALLOWED:
            return problems + [(("SQLSTATE outside the contract", call.func, err.code), got)]
        if call.faults:
            expected = set().union(call.tolerated, *(codes for _, codes in call.faults))
            if err.code not in expected:
                what = ", ".join(w for w, _ in call.faults)
                problems.append((("wrong SQLSTATE for bad input", call.func, what, err.code),
                                 "%s; the contract gives %s" % (got, "/".join(sorted(expected)))))
        if err.message and err.message[:1].isupper() and err.message[1:2].islower():
            problems.append((("message not in PostgreSQL style (capitalised)", call.func), got))
        return problems

    def judge_success(self, call, mode, rows, logical):
        problems = []
        if call.faults:
            what = ", ".join(w for w, _ in call.faults)
            problems.append((("accepted bad input", call.func, what), ("the call succeeded: %r" % (rows,))[:300]))
            self.quarantine()
        if mode == "readonly" and call.writes:
            problems.append((("writing call succeeded in a READ ONLY transaction", call.func),
                             ("reply %r (the contract: 25006)" % (rows,))[:300]))
        problems += self.check_reply(call, rows)
        if mode in ("autocommit", "savepoint"):
            self.remember(call, rows)
            if logical is not None and rows and rows[0][0] is False:
                after = self.logical_state()
                if after is not None and after != logical:
                    problems.append((("a denied grant changed something", call.func),
                                     self.logical_diff(logical, after)))
            problems += self.check_invariants(call.func)
        return problems

    # -- replies

    def check_reply(self, call, rows):
        row = rows[0] if rows else None
        if call.reply == "grant":
            found = self.grant_problems(call, row)
            if found:
                found = self.relax_for_links(call, row, found)
            return [(("reply breaks the contract", call.func, p), "reply %r" % (row,)) for p in found]
        if call.reply == "window" and row is not None and row[2] is False:
            return [(("window_at's window does not contain at", "window_at"), "window (epoch) %s .. %s" % row[:2])]
        if call.reply == "window" and row is not None and None in row and not call.null_args:
            return [(("window_at returned NULL for non-NULL arguments", "window_at"), "reply %r" % (row,))]
        if call.reply in ("count", "purged") and (row is None or row[0] is None or row[0] < 0):
            return [(("%s returned a bad count" % call.func, call.func), "reply %r" % (row,))]
        return []

    # What the contract says differently of an account with a parent or a cap (1.2).
    CHAIN_RELAXED = {"remaining <> greatest(credit_limit - used - held, 0)",   # the least over the chain
                     "remaining not NULL for an unlimited account",           # a limited ancestor's
                     "denial's retry_after wrong for its resets_at"}          # the denying ancestor's
    CAP_RELAXED = {"denial's retry_after wrong for its resets_at"}            # until the earliest hold expires

    def relax_for_links(self, call, row, problems):
        """Drop the reply checks that parent budgets and caps change, for a call whose account has them."""
        args = dict(call.args)
        if call.func == "commit_credit":
            rid = args.get("reservation")
            got = self.session.probe("SELECT origin IS NOT NULL FROM quota.holds WHERE id = %s" % rid.sql) \
                if rid is not None else None
            chained, capped = bool(got and got[0]), False
        else:
            team = args.get("team")
            resource = args.get("resource", Value("'credits'::text"))
            got = self.session.probe(
                "SELECT coalesce(bool_or(parent IS NOT NULL), false) OR coalesce(bool_or(origin_chain), false),"
                " coalesce(bool_or(max_open_holds IS NOT NULL), false)"
                " FROM (SELECT parent, max_open_holds, false AS origin_chain FROM quota.links"
                "        WHERE team = %s AND resource = %s"
                "       UNION ALL SELECT NULL, NULL, true FROM quota.holds"
                "        WHERE team = %s AND resource = %s AND origin IS NOT NULL AND state = 'open' LIMIT 1) l"
                % (team.sql, resource.sql, team.sql, resource.sql)) if team is not None else None
            chained, capped = (bool(got[0]), bool(got[1])) if got else (False, False)
        relaxed = (self.CHAIN_RELAXED if chained else set()) | (self.CAP_RELAXED if capped else set())
        return [p for p in problems if p not in relaxed]

    @staticmethod
    def grant_problems(call, row):
        if row is None:
            return ["no row"]
        granted, reservation, used, held, limit, remaining, resets, retry = row
        problems = []
        if granted is None:
            problems.append("granted is NULL")
        if used is None or held is None or used < 0 or held < 0:
            return problems + ["used or held negative or NULL"]
        if limit is None and remaining is not None:
            problems.append("remaining not NULL for an unlimited account")
        if limit is not None and remaining != max(limit - used - held, 0):
            problems.append("remaining <> greatest(credit_limit - used - held, 0)")
        if granted and retry is not None:
            problems.append("retry_after on a grant")
        if granted and call.func == "reserve_credit" and reservation is None:
            problems.append("granted reserve without reservation")
        if granted and limit is not None and not call.overdraft and not call.keyed \
                and call.func in ("reserve_credit", "charge_credit") and used + held > limit:
            problems.append("granted past the limit")
        if granted is False:
            if reservation is not None:
                problems.append("denial with a reservation")
            if (resets is None) != (retry is None) or (retry is not None and retry < 1):
                problems.append("denial's retry_after wrong for its resets_at")
        return problems

    def remember(self, call, rows):
        """Follow what exists: accounts, and reservations by state."""
        row = rows[0] if rows else None
        if call.func == "set_account" and call.account and call.account not in self.gen.accounts:
            self.gen.accounts.append(call.account)
        elif call.func == "reserve_credit" and row and row[0] and row[1] is not None:
            self.gen.holds.setdefault(row[1], "open")
        elif call.func == "commit_credit" and row and row[0]:
            self.gen.holds[call.reservation] = "committed"
        elif call.func == "release_credit" and row:
            self.gen.holds[call.reservation] = "released" if row[0] else "gone"
        elif call.func == "purge_holds" and row and row[0]:
            for rid, state in self.gen.holds.items():   # settled ones may be gone now
                if state != "open":
                    self.gen.holds[rid] = "gone"

    # -- invariants

    def check_invariants(self, func):
        try:
            rows = self.session.run("SELECT * FROM fuzz.invariants()")
        except psycopg2.Error as e:
            if self.usage_broken:
                return []
            self.usage_broken = True
            self.quarantine_unreadable()
            return [(("reading quota.usage raised an error", e.pgcode), "after %s: %s" % (func, str(e).strip()))]
        self.usage_broken = False
        seen = {(bytes(acc), rule) for acc, rule, _ in rows}
        problems = [(("invariant broken", rule),
                     "after %s: %s: %s" % (func, bytes(acc).decode("utf-8", "replace"), detail))
                    for acc, rule, detail in rows if (bytes(acc), rule) not in self.known_violations]
        self.known_violations = seen
        return problems

    def quarantine(self):
        self.session.run(QUARANTINE)
        self.forget_missing_accounts()

    def account_names(self):
        rows = self.session.run("SELECT convert_to(team, 'UTF8'), convert_to(resource, 'UTF8') FROM quota.accounts")
        return [(bytes(team).decode(), bytes(resource).decode()) for team, resource in rows]

    def quarantine_unreadable(self):
        """Delete the accounts quota.usage cannot read (a broken build let them in)."""
        for team, resource in self.account_names():
            cond = "team = %s AND resource = %s" % (sql_string(team), sql_string(resource))
            if self.session.probe("SELECT count(*) FROM quota.usage WHERE %s" % cond) is None:
                for table in ("holds", "slots", "accounts"):
                    self.session.run("DELETE FROM quota.%s WHERE %s" % (table, cond))
        self.forget_missing_accounts()

    def forget_missing_accounts(self):
        present = set(self.account_names())
        self.gen.accounts = [a for a in self.gen.accounts if (a[0].value, a[1].value) in present]

    # -- the session

    def change_session(self):
        """Change the session; a SET of quota.default_* is a call, judged (else None)."""
        r = self.rng.random()
        if r < 0.3:
            self.session.set("TimeZone", self.rng.choice(TIMEZONES))
        elif r < 0.45:
            self.session.set("client_encoding", self.rng.choice(["UTF8", "LATIN1"]))
        elif r < 0.95:
            if r < 0.7:
                return self.set_setting("quota.default_limit", *self.rng.choice(LIMIT_SETTINGS))
            return self.set_setting("quota.default_period", *self.rng.choice(PERIOD_SETTINGS))
        else:
            self.reconnect()
        return None

    def set_setting(self, name, value, valid):
        session = self.session.describe()
        sql = "RESET %s" % name if value == "RESET" else "SET %s = %s" % (name, sql_string(value))
        try:
            self.session.set(name, value)
            problems = []
            if valid is False:
                problems = [(("SET accepted an invalid value", name), "value %r" % value)]
                self.session.set(name, "RESET")
        except ConnectionLost as e:
            self.recover()
            return [(("connection lost (crash?)", name), str(e))], session, sql, "autocommit"
        except psycopg2.Error as e:
            got = "got %s: %s" % (e.pgcode, e.diag.message_primary)
            if e.pgcode not in ALLOWED_FOR_SET:
                problems = [(("SET raised a SQLSTATE other than 22023", name, e.pgcode), got)]
            elif valid:
                problems = [(("SET refused a valid value", name), got)]
            else:
                problems = []
        return problems, session, sql, "autocommit"

    def reconnect(self):
        self.session.close()
        self.session = Session(self.dbname)

    def recover(self):
        """After a lost connection: wait for the server to accept connections again."""
        self.session.close()
        deadline = time.time() + 60
        while True:
            try:
                self.session = Session(self.dbname)
                return
            except psycopg2.Error:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)


# ---------------------------------------------------------------- main

def admin_connection():
    """A connection to the PG* database (or postgres when that is quota_fuzz itself)."""
    try:
        conn = psycopg2.connect("")
    except psycopg2.OperationalError:
        conn = psycopg2.connect(dbname="postgres")
    if conn.get_dsn_parameters().get("dbname") == DATABASE:
        conn.close()
        conn = psycopg2.connect(dbname="postgres")
    conn.autocommit = True
    return conn


def create_database():
    conn = admin_connection()
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % DATABASE)
        cur.execute("CREATE DATABASE %s" % DATABASE)
    conn.close()
    conn = psycopg2.connect(dbname=DATABASE)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION quota")
        cur.execute(HELPERS)
        cur.execute(SERVER_EPOCH)
        started = cur.fetchone()[0]
    conn.close()
    return started


def final_checks(started):
    """The server neither restarted nor crashed, and a fresh connection works."""
    try:
        conn = psycopg2.connect(dbname=DATABASE)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM quota.usage")
            cur.execute(SERVER_EPOCH)
            now = cur.fetchone()[0]
        conn.close()
    except psycopg2.Error as e:
        return ["a fresh connection failed: %s" % str(e).strip()]
    if now != started:
        return ["the server restarted or crashed: it was %s, now %s" % (started, now)]
    return []


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=random.randrange(2 ** 31))
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    print("fuzz: seed %d, %d calls (rerun: test/fuzz.py --seed %d)" % (args.seed, args.calls, args.seed),
          flush=True)

    started = create_database()
    fuzzer = Fuzzer(args.seed, DATABASE)
    for sql in fuzzer.pools.skipped:
        print("fuzz: skipped %s (the server cannot build it)" % sql)
    t0 = time.time()
    try:
        while fuzzer.number < args.calls:
            fuzzer.step()
        fuzzer.session.close()
    except psycopg2.OperationalError as e:
        print("FAIL the server did not come back after call %d: %s" % (fuzzer.number, str(e).strip()))
        fuzzer.failed += 1
    for problem in final_checks(started):
        print("FAIL %s" % problem)
        fuzzer.failed += 1
    fuzzer.failures.summary()
    print("fuzz: %d steps (calls and session changes) in %.1f s" % (fuzzer.number, time.time() - t0))
    print("fuzz: %d passed, %d failed" % (fuzzer.passed, fuzzer.failed))
    return 1 if fuzzer.failed else 0


if __name__ == "__main__":
    sys.exit(main())
