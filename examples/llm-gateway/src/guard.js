'use strict';
// What the gateway does while the database cannot be reached.
//
// A quota check that cannot reach its database must not take the whole
// gateway down with it, nor hand out free credits forever.  So, as
// production gateways do:
//
//   * from the first failure, requests are admitted (fail open) for
//     failOpenMs, unmetered;
//   * after that they are refused with 503 (fail closed) until the database
//     answers again;
//   * meanwhile one probe (SELECT 1) at a time tries to reconnect, with
//     exponential backoff: backoffBaseMs, twice that, ... capped at
//     backoffMaxMs.  Requests never wait for the database while it is down:
//     they are decided at once, and each decision is logged as one line.
//
// Only "cannot reach" counts: a connection refused or reset, a missing
// socket, a server shutting down or starting up, a connect or read timeout.
// Any other database error (and every denial) is an answer, not an outage.

const NODE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH',
  'ENETUNREACH', 'EHOSTDOWN', 'EAI_AGAIN', 'ENOTFOUND', 'EADDRNOTAVAIL',
]);
// admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections
// (class 08, connection_exception, is matched by its prefix).
const SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);
// node-postgres raises these without a code.
const DRIVER_MESSAGES = /Connection terminated|connection timeout|timeout exceeded when trying to connect|Query read timeout|not queryable|connection error/i;

function isUnreachable(err) {
  if (!err || typeof err !== 'object') return false;
  const code = typeof err.code === 'string' ? err.code : '';
  if (NODE_CODES.has(code) || SQLSTATES.has(code) || code.startsWith('08')) return true;
  if (Array.isArray(err.errors) && err.errors.some(isUnreachable)) return true; // AggregateError (several addresses)
  if (err.severity) return false; // any other error the server sent: it answered
  return DRIVER_MESSAGES.test(String(err.message));
}

function describe(err) {
  const code = typeof err?.code === 'string' ? `${err.code}: ` : '';
  return `${code}${err?.message ?? String(err)}`.slice(0, 300);
}

class DbGuard {
  // probe: async () => anything, throws while the database is unreachable.
  constructor({ probe, failOpenMs, backoffBaseMs, backoffMaxMs, log, now = Date.now }) {
    for (const [name, value] of Object.entries({ failOpenMs, backoffBaseMs, backoffMaxMs })) {
      if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a finite number >= 0, not ${value}`);
    }
    if (backoffMaxMs < backoffBaseMs) throw new RangeError('backoffMaxMs must be >= backoffBaseMs');
    Object.assign(this, { probe, failOpenMs, backoffBaseMs, backoffMaxMs, log, now });
    this.downSince = null; // when the first failure of this outage was seen
    this.reason = null;
    this.attempt = 0;
    this.nextProbeAt = null;
    this.timer = null;
    this.closed = false;
  }

  get down() {
    return this.downSince !== null;
  }

  // A database call could not reach the database.
  failed(err, context = {}) {
    if (this.down || this.closed) return;
    this.downSince = this.now();
    this.reason = describe(err);
    this.attempt = 0;
    this.log({ level: 'error', event: 'quota_db_down', reason: this.reason, failOpenMs: this.failOpenMs, ...context });
    this.schedule();
  }

  delay(attempt) {
    return Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** attempt);
  }

  schedule() {
    const wait = this.delay(this.attempt);
    this.nextProbeAt = this.now() + wait;
    this.timer = setTimeout(() => this.reconnect(), wait);
    this.timer.unref();
    return wait;
  }

  async reconnect() {
    this.timer = null;
    if (this.closed) return;
    this.attempt += 1;
    try {
      await this.probe();
    } catch (err) {
      if (this.closed) return;
      const wait = this.schedule();
      this.log({
        level: 'warn', event: 'quota_db_reconnect_failed', attempt: this.attempt, reason: describe(err),
        downForMs: this.now() - this.downSince, nextAttemptInMs: wait,
      });
      return;
    }
    if (this.closed) return;
    this.log({ level: 'info', event: 'quota_db_reconnected', attempt: this.attempt, downForMs: this.now() - this.downSince });
    this.downSince = null;
    this.reason = null;
    this.nextProbeAt = null;
  }

  // Admit or refuse one request while the database is down; logs the decision.
  decide(fields = {}) {
    const now = this.now();
    const downForMs = now - this.downSince;
    const admit = downForMs < this.failOpenMs;
    this.log({
      level: 'warn',
      event: admit ? 'quota_fail_open' : 'quota_fail_closed',
      decision: admit ? 'admit' : 'refuse',
      reason: `database unreachable: ${this.reason}`,
      downForMs,
      failOpenMs: this.failOpenMs,
      ...(admit ? { metered: false } : {}),
      ...fields,
    });
    // A refused client may come back once the next reconnect attempt is due.
    const retryAfter = Math.max(1, Math.ceil(((this.nextProbeAt ?? now) - now) / 1000));
    return { admit, retryAfter };
  }

  close() {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

module.exports = { DbGuard, isUnreachable, describe };
